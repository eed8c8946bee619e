"""Magnitude pruning, per matrix: a pure ``Graph -> Graph`` pass on a float graph.

Pruned weights become exact zeros; mappings (SpiNNaker2) store such matrices as CSR.
Biases, thresholds and embeddings are never pruned.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph, Linear

PRUNED_FIELDS = {EGRU: ("kernel", "recurrent_kernel"), Linear: ("weight",)}


def prune_matrix(w: np.ndarray, amount: float) -> np.ndarray:
    """Zero the ``amount`` fraction of entries with the smallest magnitude."""
    n_zero = int(round(amount * w.size))
    if n_zero == 0:
        return w
    smallest = np.argpartition(np.abs(w).reshape(-1), n_zero - 1)[:n_zero]  # O(n), not a full sort
    flat = w.copy().reshape(-1)
    flat[smallest] = 0
    return flat.reshape(w.shape)


def prune(graph: Graph, amount: float) -> Graph:
    if not 0.0 <= amount < 1.0:
        raise UserError(f"--prune: expected a fraction in [0, 1), got {amount}")
    if graph.quantized:
        raise UserError("--prune: prune the float model before quantization")
    layers = []
    for layer in graph.layers:
        names = PRUNED_FIELDS.get(type(layer), ())
        layers.append(replace(layer, **{n: prune_matrix(getattr(layer, n), amount) for n in names}))
    return graph.with_layers(layers, metadata={**graph.metadata, "prune": amount})


def density(graph: Graph) -> dict[str, float]:
    """Fraction of non-zero entries of each prunable matrix, keyed ``layer<i>.<field>``."""
    out = {}
    for i, layer in enumerate(graph.layers):
        for n in PRUNED_FIELDS.get(type(layer), ()):
            w = getattr(layer, n)
            out[f"layer{i}.{n}"] = float(np.count_nonzero(w)) / max(w.size, 1)
    return out
