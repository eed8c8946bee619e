"""The digits task: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 images, offline).

Each image is fed to the network as a sequence: its 8 rows (T=8, I=8, the default) or its 64
pixels (T=64, I=1). Pixel values 0..16 are scaled to [0, 1]. The train/test split is stratified
and seeded (by default the fixed ``SPLIT_SEED``), so every call returns the same arrays. Splits are
stored as ``.npz`` files with keys ``x`` (N, T, I) float32 and ``y`` (N,) int64.

``evaluate`` runs any IR graph (float or quantized) on the task with the readout mode the shipped
model was trained with, so training, the demo and quantization reports all report the same numbers.
"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from egru_deploy import safe_io
from egru_deploy.errors import UserError
from egru_deploy.files import atomic_output
from egru_deploy.ir import Graph
from egru_deploy.reference import run

# Readout at the last step: it trained better than the mean over steps (96.7 % vs 90.2 % test
# accuracy, 64 units, 40 epochs). Checkpoints hold only a state_dict, so converters default to
# "sequence"; ``evaluate`` applies this mode to the graph.
DIGITS_OUTPUT_MODE = "last"
DIGITS_CLASSES = 10
LAYOUTS = {"rows": (8, 8), "pixels": (64, 1)}  # layout -> (steps T, features per step I)
PIXEL_MAX = 16.0
# The held-out split is part of the task, not of a training run: every model is tested on the same
# samples, whatever seed it was trained with.
SPLIT_SEED = 0
TEST_FRACTION = 0.25


class DataError(UserError):
    """A data file (test split, calibration set) is missing or malformed. The message is one line."""


def digits_sequences(layout: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 sequences (N, T, I) in [0, 1] and int64 labels (N,)."""
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    steps, features = LAYOUTS[layout]
    x = (digits.data / PIXEL_MAX).astype(np.float32).reshape(-1, steps, features)
    return x, digits.target.astype(np.int64)


def digits_split(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION, layout: str = "rows"):
    """Stratified, seeded split: ``(x_train, y_train, x_test, y_test)``."""
    from sklearn.model_selection import train_test_split

    x, y = digits_sequences(layout)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return x_train, y_train, x_test, y_test


def save_split(path: str | os.PathLike, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``x`` (N, T, I) float32 and ``y`` (N,) int64 to a compressed ``.npz`` (atomically)."""
    x, y = _checked(np.asarray(x), np.asarray(y), str(path))
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, x=x, y=y)


def load_split(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by :func:`save_split`; raise :class:`DataError` if it is not one."""
    arrays = safe_io.load_npz_or_npy(path, DataError)
    if isinstance(arrays, np.ndarray):
        raise DataError(f"{path}: expected an .npz archive with keys 'x' and 'y', got a single .npy array")
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; expected 'x' (N,T,I) float32 and 'y' (N,) int64, "
                        f"found {sorted(arrays)}")
    return _checked(arrays["x"], arrays["y"], str(path))


def load_inputs(path: str | os.PathLike) -> np.ndarray:
    """Read inputs only (key 'x' of an .npz, or a bare .npy): calibration sets need no labels."""
    arrays = safe_io.load_npz_or_npy(path, DataError)
    if isinstance(arrays, np.ndarray):
        return arrays
    if "x" not in arrays:
        raise DataError(f"{path}: missing key 'x' (inputs); found {sorted(arrays)}")
    return arrays["x"]


def _checked(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where}: 'x' must be floating point (float32), got dtype {x.dtype}")
    if x.ndim not in (3, 5) or 0 in x.shape:  # features, or frames for a CNN front-end
        raise DataError(f"{where}: 'x' must have shape (N,T,I) or frames (N,T,C,H,W), no dimension 0, "
                        f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: 'x' contains NaN or inf")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{where}: 'y' must hold integer labels, got dtype {y.dtype}")
    if y.shape != (x.shape[0],):
        raise DataError(f"{where}: 'y' must have shape ({x.shape[0]},) to match 'x', got {y.shape}")
    if y.min() < 0:
        raise DataError(f"{where}: 'y' holds a negative label ({y.min()})")
    return x.astype(np.float32), y.astype(np.int64)


def evaluate(graph: Graph, x: np.ndarray, y: np.ndarray, output_mode: str = DIGITS_OUTPUT_MODE) -> dict:
    """Accuracy and activity sparsity of a float or quantized graph on (x, y) with ``output_mode``
    (default DIGITS_OUTPUT_MODE; the workloads pass their task's).

    Sparsity is the fraction of zero events over all EGRU units x steps x samples.
    """
    if len(x) != len(y) or len(y) == 0:
        raise DataError(f"evaluate: needs as many labels as samples (at least one), got {len(x)} and {len(y)}")
    if y.max() >= graph.out_size:
        raise DataError(f"evaluate: label {y.max()} needs at least {y.max() + 1} outputs, model has {graph.out_size}")
    result = run(replace(graph, output_mode=output_mode), x)
    return {
        "accuracy": float(np.mean(result.output.argmax(axis=1) == y)),
        "sparsity": result.sparsity(),
        "layer_sparsity": result.layer_sparsity(),
        "samples": int(len(y)),
    }

