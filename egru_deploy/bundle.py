"""Bundle directories: a graph (``graph.json`` + ``weights.npz``), ``bundle.json`` naming the target
and profile, and whatever artefacts the target writes.  Written atomically: everything goes into a
temporary sibling directory that is renamed into place only when complete; an existing folder is
replaced only when it is a bundle and the user asked for it (``--force``).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from egru_deploy import __version__, files, ir
from egru_deploy.errors import UserError

BUNDLE_JSON = "bundle.json"
BUNDLE_SCHEMA_VERSION = 1


class BundleError(UserError):
    """A bundle is missing, malformed or for something else. The message is one line."""


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path, BUNDLE_JSON).is_file()


@contextlib.contextmanager
def writing(out_dir: str | os.PathLike, inputs: tuple = (), force: bool = False):
    """Yield a temporary directory; on success it replaces ``out_dir`` whole, on error it vanishes.

    An existing ``out_dir`` is replaced only if it is itself a bundle and ``force`` is set; a folder
    holding one of ``inputs`` (or the working folder) is never replaced.
    """
    out = Path(out_dir)
    files.check_output_folder(out, inputs, force, is_bundle)
    with files.atomic_folder(out) as tmp:
        yield tmp


def write_manifest(directory: Path, target: str | None, profile: str | None, extra: dict | None = None) -> None:
    doc = {
        "format": "egru-deploy-bundle",
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "egru_deploy_version": __version__,
        "target": target,
        "profile": profile,
        **(extra or {}),
    }
    (directory / BUNDLE_JSON).write_text(json.dumps(doc, indent=1))


def read_manifest(directory: str | os.PathLike, expect_target: str | None = None) -> dict:
    path = Path(directory, BUNDLE_JSON)
    if not path.is_file():
        raise BundleError(f"{directory}: not a bundle (no {BUNDLE_JSON})")
    if not path.resolve().is_relative_to(Path(directory).resolve()):
        raise BundleError(f"{path}: symbolic link to {path.resolve()}, outside the bundle")
    doc = ir.read_json(path, BundleError)
    ir.check_versioned(doc, "egru-deploy-bundle", BUNDLE_SCHEMA_VERSION, str(path), BundleError,
                       "upgrade egru-deploy or recompile the bundle")
    if expect_target is not None and doc.get("target") != expect_target:
        raise BundleError(f"{directory}: bundle was compiled for target {doc.get('target')!r}, "
                          f"not {expect_target!r}; recompile with --target {expect_target}")
    return doc


def load_graph(directory: str | os.PathLike) -> ir.Graph:
    read_manifest(directory)
    return ir.load(directory)


FLOAT_DIR = "float"


def load_float_graph(directory: str | os.PathLike) -> ir.Graph:
    """The float graph a bundle was compiled from (kept in ``float/``)."""
    read_manifest(directory)
    path = Path(directory, FLOAT_DIR)
    if not path.is_dir():
        raise BundleError(f"{directory}: bundle holds no float graph ({FLOAT_DIR}/ missing)")
    return ir.load(path, inside=directory)
