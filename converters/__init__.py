"""Source formats <-> IR, one module per format.

``load_model`` tells a file's format by its content, not by its name: a zip archive (``PK\\x03\\x04``,
what ``torch.save`` writes) or a pickle (``\\x80`` + protocol, legacy ``torch.save``) is a PyTorch
checkpoint (``converters.evnn``: ``.pt``, ``.pth``, ``.cpt``, ``.ckpt`` or any other name); an HDF5
file (``\\x89HDF\\r\\n\\x1a\\n``) is NIR; anything else is read as ONNX (protobuf has no signature), except
that a name ending in a checkpoint or NIR suffix gets that reader's error. A folder is a bundle
or a graph directory.
"""
from __future__ import annotations

import os
from pathlib import Path

from egru_deploy.errors import ConversionError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".cpt", ".tar", ".bin")
NIR_SUFFIXES = (".nir", ".h5", ".hdf5")


def _load_checkpoint(path: Path, layout=None):
    from egru_deploy.converters import evnn

    return evnn.load(path, layout=layout)


def _load_nir(path: Path, layout=None):
    from egru_deploy.converters import nir

    return nir.load(path)


def _load_onnx(path: Path, layout=None):
    from egru_deploy.converters import onnx

    return onnx.load(path)


LOADERS = {"checkpoint": _load_checkpoint, "nir": _load_nir, "onnx": _load_onnx}
CONTENT_KINDS = {"zip": "checkpoint", "pickle": "checkpoint", "hdf5": "nir"}


def file_kind(path: str | os.PathLike) -> str:
    """``checkpoint``, ``nir`` or ``onnx``: the reader for ``path``, by its first bytes (then its suffix)."""
    from egru_deploy import safe_io

    path = Path(path)
    kind = CONTENT_KINDS.get(safe_io.sniff(path))
    if kind is not None:
        return kind
    suffix = path.suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"  # its reader says what the bytes are instead
    if suffix in NIR_SUFFIXES:
        return "nir"
    return "onnx"


def _export_nir(graph, path: Path) -> None:
    from egru_deploy.converters import nir

    nir.export(graph, path)


def _export_onnx(graph, path: Path) -> None:
    from egru_deploy.converters import onnx

    onnx.export(graph, path)


def _export_evnn(graph, path: Path, **options) -> dict:
    from egru_deploy.converters import evnn

    return evnn.export(graph, path, **options)


EXPORTERS = {"nir": _export_nir, "onnx": _export_onnx, "evnn": _export_evnn}


def load_model(path: str | os.PathLike, layout: dict | None = None):
    """Load a checkpoint, NIR/ONNX file, graph directory or bundle directory as an IR graph."""
    from egru_deploy import bundle, ir, safe_io

    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file or directory")
    if path.is_dir():
        if bundle.is_bundle(path):
            return bundle.load_graph(path)
        return ir.load(path)
    safe_io.regular_file(path, ConversionError)
    if safe_io.sniff(path) == "npy":
        raise ConversionError(f"{path}: a NumPy .npy array, not a model (expected a PyTorch checkpoint, a NIR or "
                              f"ONNX file, or a bundle or graph directory)")
    kind = file_kind(path)
    if kind != "onnx":
        return LOADERS[kind](path, layout)
    try:
        return _load_onnx(path)
    except ConversionError as e:
        if path.suffix.lower() == ".onnx":
            raise
        raise ConversionError(f"{path}: not a model file egru-deploy reads: neither a PyTorch checkpoint (zip or "
                              f"pickle), NIR (HDF5) nor ONNX ({str(e).removeprefix(f'{path}: ')})") from None
