"""Source formats -> IR, one module per format. ``load_model`` picks the converter by file type."""
from __future__ import annotations

import os
from pathlib import Path

from egru_deploy.errors import ConversionError


def _load_checkpoint(path: Path, layout=None):
    from egru_deploy.converters import evnn

    return evnn.load(path, layout=layout)


def _load_nir(path: Path, layout=None):
    from egru_deploy.converters import nir

    return nir.load(path)


def _load_onnx(path: Path, layout=None):
    from egru_deploy.converters import onnx

    return onnx.load(path)


LOADERS_BY_SUFFIX = {
    ".pt": _load_checkpoint,
    ".pth": _load_checkpoint,
    ".ckpt": _load_checkpoint,
    ".nir": _load_nir,
    ".onnx": _load_onnx,
}


def _export_nir(graph, path: Path) -> None:
    from egru_deploy.converters import nir

    nir.export(graph, path)


def _export_onnx(graph, path: Path) -> None:
    from egru_deploy.converters import onnx

    onnx.export(graph, path)


EXPORTERS = {"nir": _export_nir, "onnx": _export_onnx}


def load_model(path: str | os.PathLike, layout: dict | None = None):
    """Load a checkpoint, NIR/ONNX file, graph directory or bundle directory as an IR graph."""
    from egru_deploy import bundle, ir

    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file or directory")
    if path.is_dir():
        if bundle.is_bundle(path):
            return bundle.load_graph(path)
        return ir.load(path)
    loader = LOADERS_BY_SUFFIX.get(path.suffix.lower())
    if loader is None:
        raise ConversionError(f"{path}: unknown model file type {path.suffix!r} "
                              f"(expected one of {sorted(LOADERS_BY_SUFFIX)} or a bundle directory)")
    return loader(path, layout)
