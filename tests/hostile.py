"""Shared checks for the hostile-input corpus (``test_hostile_*.py``).

Every hostile case runs one CLI command inside a temporary folder and must end with exit code 2,
exactly one stderr line, no traceback, and nothing created, changed or removed anywhere but the
files the case itself planted. Security cases also plant a secret file outside what the user named
and check that its bytes appear in no output.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from click.testing import CliRunner

from egru_deploy.cli import main

SECRET = b"EGRU-DEPLOY-SECRET-4f1c9a7e-do-not-read"


def plant_secret(folder: Path) -> Path:
    """A file whose bytes no command may read unless the user named it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret.bin"
    # Repeated so it fills whole weight rows or packets whatever the reader's element size.
    path.write_bytes(SECRET * 64)
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content digest (or 'dir' / 'link:<target>') of everything under ``root``."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                state[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def run(args: list[str], cwd: Path | None = None):
    """Invoke the CLI in ``cwd`` (default: the current folder) with separate stderr."""
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, [str(a) for a in args])
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def assert_one_line_error(result, *fragments: str) -> str:
    """Exit 2, one stderr line starting ``error:``, no traceback; the line holds every fragment."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in result.output, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_hostile_case(args: list[str], root: Path, *fragments: str, cwd: Path | None = None) -> str:
    """Run ``args`` and check the error contract, and that nothing under ``root`` changed."""
    before = snapshot(root)
    result = run(args, cwd=cwd)
    line = assert_one_line_error(result, *fragments)
    after = snapshot(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    return line


def assert_no_secret(*paths: Path) -> None:
    """No file under ``paths`` holds the planted secret (in full or a 16-byte piece of it)."""
    piece = SECRET[:16]
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for f in files:
            if f.name == "secret.bin":
                continue
            assert piece not in f.read_bytes(), f"{f} holds bytes of the planted secret"
