"""Reference interpreters of the IR.

``run_float`` executes a float graph in NumPy (float32, batched).  ``run`` dispatches on the
graph: float graphs go to ``run_float``; quantized graphs go to the integer interpreter of
their profile (``egru_deploy.intref``), which is the specification every hardware path must
equal bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy.ir import EGRU, Embedding, Graph, IRError, Linear

TRACE_DECAY = np.float32(0.9)


@dataclass
class RunResult:
    """Outputs plus per-layer event statistics (``events[i]``: count of non-zero y per step)."""

    output: np.ndarray  # float32: (B, T, O) sequence, (B, O) last/mean
    events: list[np.ndarray] = field(default_factory=list)  # per EGRU layer: (B, T) counts
    hidden: list[int] = field(default_factory=list)  # per EGRU layer: H
    saturations: dict[str, int] = field(default_factory=dict)  # integer runs only
    sequence: np.ndarray | None = None  # (B, T, O) before the output mode is applied

    def sparsity(self) -> float:
        """Fraction of zero events over all EGRU units, steps and batch entries."""
        total = sum(e.size * h for e, h in zip(self.events, self.hidden))
        return 1.0 - float(sum(e.sum() for e in self.events)) / max(total, 1)

    def layer_sparsity(self) -> list[float]:
        return [1.0 - float(e.sum()) / max(e.size * h, 1) for e, h in zip(self.events, self.hidden)]

    def event_stats(self) -> dict:
        return {
            "sparsity": self.sparsity(),
            "layers": [{"hidden": h, "events_per_step": float(e.mean()), "sparsity": s}
                       for e, h, s in zip(self.events, self.hidden, self.layer_sparsity())],
        }


def check_input(graph: Graph, x: np.ndarray, name: str = "input") -> np.ndarray:
    """Validate ``x`` against the graph and return it shaped (B, T[, I]); raises IRError."""
    x = np.asarray(x)
    if graph.input.tokens:
        if not np.issubdtype(x.dtype, np.integer):
            raise IRError(f"{name}: token model expects integer tokens (B,T) or (T,), got dtype {x.dtype}")
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise IRError(f"{name}: token model expects shape (B,T) or (T,), got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= graph.input.size):
            raise IRError(f"{name}: tokens must lie in [0, {graph.input.size}), got [{x.min()}, {x.max()}]")
        return x.astype(np.int64)
    if not np.issubdtype(x.dtype, np.floating):
        raise IRError(f"{name}: expected float32 features (B,T,{graph.input.size}) or (T,{graph.input.size}), "
                      f"got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != graph.input.size:
        raise IRError(f"{name}: expected shape (B,T,{graph.input.size}) or (T,{graph.input.size}), got {x.shape}")
    if x.shape[1] == 0:
        raise IRError(f"{name}: sequence length is 0")
    if not np.all(np.isfinite(x)):
        raise IRError(f"{name}: contains NaN or inf")
    return x.astype(np.float32)


def apply_output_mode(seq: np.ndarray, mode: str) -> np.ndarray:
    if mode == "last":
        return seq[:, -1]
    if mode == "mean":
        return seq.mean(axis=1, dtype=np.float64).astype(np.float32)
    return seq


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def egru_layer_float(layer: EGRU, x: np.ndarray):
    """Run one EGRU layer on x (B, T, I) float32; return y, trace (B, T, H) and event counts (B, T)."""
    b, t_steps, _ = x.shape
    h = layer.hidden
    gx_all = (x @ layer.kernel + layer.bias).astype(np.float32)
    c = np.zeros((b, h), np.float32)
    y = np.zeros((b, h), np.float32)
    trace = np.zeros((b, h), np.float32)
    ys = np.empty((b, t_steps, h), np.float32)
    traces = np.empty((b, t_steps, h), np.float32)
    counts = np.empty((b, t_steps), np.int64)
    thr = layer.thr
    for t in range(t_steps):
        gx = gx_all[:, t]
        gh = y @ layer.recurrent_kernel + layer.recurrent_bias
        z = _sigmoid(gx[:, :h] + gh[:, :h])
        r = _sigmoid(gx[:, h:2 * h] + gh[:, h:2 * h])
        g = np.tanh(gx[:, 2 * h:] + r * gh[:, 2 * h:])
        c_new = z * c + (1 - z) * g
        o = c_new - thr > 0
        c = np.where(o, c_new - thr, c_new)
        y = np.where(o, c_new, np.float32(0))
        trace = TRACE_DECAY * trace + (1 - TRACE_DECAY) * y
        ys[:, t], traces[:, t] = y, trace
        counts[:, t] = o.sum(axis=1)
    return ys, traces, counts


def run_float(graph: Graph, x: np.ndarray) -> RunResult:
    if graph.quantized:
        raise IRError(f"run_float: graph is quantized for profile {graph.profile!r}; use run()")
    x = check_input(graph, x)
    result = RunResult(output=np.empty(0, np.float32))
    for layer in graph.layers:
        if isinstance(layer, Embedding):
            x = layer.weight[x]
        elif isinstance(layer, EGRU):
            y, trace, counts = egru_layer_float(layer, x)
            result.events.append(counts)
            result.hidden.append(layer.hidden)
            x = trace if layer.use_trace else y
        elif isinstance(layer, Linear):
            x = (x @ layer.weight.T + layer.bias).astype(np.float32)
            if layer.relu:
                x = np.maximum(x, 0)
    result.sequence = x
    result.output = apply_output_mode(x, graph.output_mode)
    return result


def run(graph: Graph, x: np.ndarray) -> RunResult:
    """Run any graph: the float interpreter, or the integer interpreter of its profile."""
    if not graph.quantized:
        return run_float(graph, x)
    from egru_deploy import intref  # the integer specification; imported lazily to keep float runs light

    return intref.run_int(graph, x)
