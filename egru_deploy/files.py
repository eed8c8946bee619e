"""Output files and folders: checked before anything is written, and written atomically.

A file a command writes either appears whole or not at all; folders created for it are removed
again when the write fails. Where an output may not go is decided here, once, for every command.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from egru_deploy.errors import UserError


class OutputError(UserError):
    """An output path that cannot or must not be written (one line)."""


def _missing_parents(path: Path) -> list[Path]:
    """The ancestors of ``path`` that do not exist yet, outermost first; refuses a file in the way."""
    missing = []
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: creating through it would write elsewhere
            raise OutputError(f"{path}: {parent} is a broken symbolic link")
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot create it, {parent} is a file, not a folder")
    return missing[::-1]


@contextlib.contextmanager
def _parents_made(path: Path) -> Iterator[None]:
    """Create the missing folders above ``path``; remove the ones made here if the block fails."""
    made = []
    try:
        for folder in _missing_parents(path):
            try:
                folder.mkdir()
            except OSError as e:
                raise OutputError(f"{path}: cannot create folder {folder} ({e.strerror or e})") from None
            made.append(folder)
        yield
    except BaseException:
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _temporary(make, path: Path):
    try:
        return make(dir=path.parent, prefix=f".{path.name}.partial-")
    except OSError as e:
        raise OutputError(f"{path}: cannot write in {path.parent} ({e.strerror or e})") from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only when the block succeeds.

    Write to the yielded path (or open it): writers that append suffixes (``np.save``) should be
    given the opened file instead. ``path`` may not be a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    with _parents_made(path):
        fd, tmp = _temporary(tempfile.mkstemp, path)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets what open() would give it
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(out_dir: Path, inputs: tuple[str | os.PathLike, ...], force: bool, is_replaceable) -> None:
    """Refuse an output folder whose replacement could lose user data.

    ``out_dir`` may replace an existing folder only when ``is_replaceable(folder)`` (e.g. it is itself
    a bundle) and ``force`` is set; never the working folder, one of its parents, or a folder that
    holds one of ``inputs``.
    """
    resolved = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if _inside(cwd, resolved):
        raise OutputError(f"{out_dir}: is the working folder or one of its parents; give a new folder name")
    for source in inputs:
        if source is not None and _inside(Path(source).resolve(), resolved):
            raise OutputError(f"{out_dir}: holds the input {source}; writing there would replace it")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if out_dir.exists():
        if not is_replaceable(out_dir):
            raise OutputError(f"{out_dir}: exists and is not a bundle; refusing to replace it (give a new folder)")
        if not force:
            raise OutputError(f"{out_dir}: a bundle already exists there; pass --force to replace it")


@contextlib.contextmanager
def atomic_folder(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out_dir`` whole, on error it vanishes.

    Call :func:`check_output_folder` first: this only does the replacing.
    """
    out = Path(out_dir)
    with _parents_made(out):
        tmp = Path(_temporary(tempfile.mkdtemp, out))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the bundle gets what mkdir would give it
        try:
            yield tmp
            if out.exists():
                old = Path(_temporary(tempfile.mkdtemp, out))
                os.replace(out, old / "d")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
