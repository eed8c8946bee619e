"""Reference interpreters of the IR.

``run_float`` executes a float graph in NumPy (float32, batched).  ``run_int`` executes a quantized
graph with exactly its profile's integer arithmetic (``egru_deploy.profiles`` states the rules):
it is the specification that hwsim, Lava and the SpiNNaker2 PE program must equal bit for bit.
``run`` dispatches on the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy.ir import EGRU, Embedding, Graph, IRError, Linear, LinearQuant, QType
from egru_deploy.profiles import Profile, get_profile, rshift_round, saturate

TRACE_DECAY = np.float32(0.9)


@dataclass
class RunResult:
    """Outputs plus per-layer event statistics (``events[i]``: count of non-zero y per step)."""

    output: np.ndarray  # float32: (B, T, O) sequence, (B, O) last/mean
    events: list[np.ndarray] = field(default_factory=list)  # per EGRU layer: (B, T) counts
    hidden: list[int] = field(default_factory=list)  # per EGRU layer: H
    saturations: dict[str, int] = field(default_factory=dict)  # integer runs: "layer<i>.<where>" -> count
    sequence: np.ndarray | None = None  # (B, T, O) before the output mode is applied
    int_sequence: np.ndarray | None = None  # integer runs: (B, T, O) raw integers of the last layer
    layer_events: list[np.ndarray] = field(default_factory=list)  # per EGRU layer (B, T, H): y (float) or payloads (int)
    hardware: dict = field(default_factory=dict)  # emulator runs: per-step chip counts and estimates

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


class InputError(IRError):
    """Input data that does not fit the graph; ``detail`` is the message without the input's name,
    so a caller that knows the file can name it instead."""

    def __init__(self, name: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.detail = detail


def check_input(graph: Graph, x: np.ndarray, name: str = "input") -> np.ndarray:
    """Validate ``x`` against the graph and return it shaped (B, T[, I]); raises InputError."""
    x = np.asarray(x)
    if graph.input.tokens:
        if not np.issubdtype(x.dtype, np.integer):
            raise InputError(name, f"token model expects integer tokens (B,T) or (T,), got dtype {x.dtype}")
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise InputError(name, f"token model expects shape (B,T) or (T,), got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= graph.input.size):
            raise InputError(name, f"tokens must lie in [0, {graph.input.size}), got [{x.min()}, {x.max()}]")
    else:
        if not np.issubdtype(x.dtype, np.floating):
            raise InputError(name, f"expected float32 features (B,T,{graph.input.size}) or (T,{graph.input.size}), "
                                   f"got dtype {x.dtype}")
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[2] != graph.input.size:
            raise InputError(name, f"expected shape (B,T,{graph.input.size}) or (T,{graph.input.size}), "
                                   f"got {x.shape}")
    if x.shape[0] == 0:
        raise InputError(name, f"holds 0 samples (shape {x.shape})")
    if x.shape[1] == 0:
        raise InputError(name, f"sequence length is 0 (shape {x.shape})")
    if graph.input.tokens:
        return x.astype(np.int64)
    if not np.all(np.isfinite(x)):
        raise InputError(name, "contains NaN or inf")
    return x.astype(np.float32)


def apply_output_mode(seq: np.ndarray, mode: str) -> np.ndarray:
    if mode == "last":
        return seq[:, -1]
    if mode == "mean":
        return seq.mean(axis=1, dtype=np.float64).astype(np.float32)
    return seq


def _sigmoid(x):
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: 1/(1+inf) = 0 is exact
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
            result.layer_events.append(y)
            x = trace if layer.use_trace else y
        elif isinstance(layer, Linear):
            x = (x @ layer.weight.T + layer.bias).astype(np.float32)
            if layer.relu:
                x = np.maximum(x, 0)
    result.sequence = x
    result.output = apply_output_mode(x, graph.output_mode)
    return result


# --------------------------------------------------------------------------- integer specification


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Host side: float features -> input events (B, T, I) int64, or token embedding lookup."""
    profile = get_profile(graph.profile)
    x = check_input(graph, x)
    first = graph.layers[0]
    if isinstance(first, Embedding):
        return first.weight.astype(np.int64)[x]
    q = first.quant.input
    return saturate(np.round(x.astype(np.float64) * 2.0 ** q.frac), profile.event_bits)


def int_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact integer x @ w (see ``ExactSums``)."""
    return ExactSums(w)(x)


SPARSE_ROWS_FRACTION = 0.5  # below this fraction of active inputs, gather their weight rows


class ExactSums:
    """Exact integer sums ``x @ weights``, as fast as exactness allows.

    Every partial sum is an integer no larger than max|x| * (largest column sum of |weights|):
    below 2**24 each one is exact in float32 BLAS, below 2**53 in float64 (``quantize`` checks that
    bound for the widest inputs a format allows).  The weights are converted once.
    """

    def __init__(self, weights: np.ndarray):
        self.f64 = weights.astype(np.float64)
        self.f32 = self.f64.astype(np.float32)
        self.column_l1 = float(np.abs(self.f64).sum(axis=0).max()) if weights.size else 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        peak = float(max(x.max(), -x.min())) if x.size else 0.0  # max |x| without a temporary
        weights = self.f32 if peak * self.column_l1 < 2.0 ** 24 else self.f64
        if x.ndim == 2:
            # Event-driven, as on the chips: only rows of inputs that are non-zero somewhere in the
            # batch are read.  With sparse events this skips most of the weight memory traffic.
            active = np.flatnonzero(x.any(axis=0))
            if len(active) < SPARSE_ROWS_FRACTION * x.shape[1]:
                return (x[:, active].astype(weights.dtype) @ weights[active]).astype(np.int64)
        return (x.astype(weights.dtype) @ weights).astype(np.int64)


@dataclass
class EGRUIntState:
    c: np.ndarray  # cell state, format F
    events: np.ndarray  # last events (payload format E)
    trace: np.ndarray  # trace, format E


def egru_int_state(batch: int, hidden: int) -> EGRUIntState:
    zeros = np.zeros((batch, hidden), np.int64)
    return EGRUIntState(zeros, zeros.copy(), zeros.copy())


def input_preactivation(profile: Profile, layer: EGRU, acc_x: np.ndarray, sat: dict) -> np.ndarray:
    """Input half of the gate pre-activations, format F: saturate the exact sum, rescale, add the bias."""
    acc_x = saturate(acc_x, profile.acc_bits, sat, "accumulator")
    return rshift_round(acc_x, layer.quant.input.frac + layer.quant.kernel.frac - profile.state_frac) + layer.bias


def egru_neuron_update(profile: Profile, layer: EGRU, acc_x: np.ndarray, acc_h: np.ndarray,
                       state: EGRUIntState, sat: dict) -> np.ndarray:
    """One step of the EGRU neurons given the raw input and recurrent sums; updates ``state``.

    ``acc_x = x_events @ kernel`` and ``acc_h = previous_events @ recurrent_kernel`` (exact sums).
    Returns the boolean spike mask; the new events and trace are left in ``state``.
    """
    return egru_gate_update(profile, layer, input_preactivation(profile, layer, acc_x, sat), acc_h, state, sat)


def egru_gate_update(profile: Profile, layer: EGRU, gx: np.ndarray, acc_h: np.ndarray,
                     state: EGRUIntState, sat: dict) -> np.ndarray:
    """``egru_neuron_update`` given the input pre-activations ``gx`` (see ``input_preactivation``)."""
    f = profile.state_frac
    h = layer.hidden
    one = np.int64(1) << np.int64(f)
    act = profile.activation
    acc_h = saturate(acc_h, profile.acc_bits, sat, "accumulator")
    gh = rshift_round(acc_h, profile.event_frac + layer.quant.recurrent_kernel.frac - f) + layer.recurrent_bias
    a_zr = gx[:, :2 * h] + gh[:, :2 * h]
    zr = act.sigmoid(saturate(a_zr, profile.state_bits, sat, "state"), f)
    z, r = zr[:, :h], zr[:, h:]
    a_g = rshift_round(r * gh[:, 2 * h:], f)
    a_g += gx[:, 2 * h:]
    g = act.tanh(saturate(a_g, profile.state_bits, sat, "state"), f)
    # c' = z*c + (1-z)*g written with one multiply: c + (1-z)*(g-c)
    g -= state.c
    g *= one - z
    c_new = rshift_round(g, f)
    c_new += state.c
    c_new = saturate(c_new, profile.state_bits, sat, "state")
    fired = c_new > layer.thr
    state.c = c_new - fired * layer.thr
    y = c_new * fired
    state.events = saturate(rshift_round(y, f - profile.event_frac), profile.event_bits, sat, "event")
    if layer.use_trace:  # only a consumed trace is computed (chips skip it too)
        state.trace = state.trace + rshift_round(profile.trace_gain * (state.events - state.trace), f)
    return fired


def egru_layer_int(profile: Profile, layer: EGRU, x: np.ndarray, sat: dict):
    """Run one quantized EGRU layer on input events x (B, T, I) int64.

    Returns events and traces (B, T, H) int64 and spike counts (B, T).
    """
    b, t_steps, _ = x.shape
    h = layer.hidden
    gx_all = input_preactivation(profile, layer, int_matmul(x, layer.kernel), sat)  # all steps at once
    recurrent_sums = ExactSums(layer.recurrent_kernel)
    state = egru_int_state(b, h)
    events = np.empty((b, t_steps, h), np.int64)
    traces = np.empty((b, t_steps, h), np.int64)
    counts = np.empty((b, t_steps), np.int64)
    for t in range(t_steps):
        acc_h = recurrent_sums(state.events)
        fired = egru_gate_update(profile, layer, gx_all[:, t], acc_h, state, sat)
        events[:, t], traces[:, t] = state.events, state.trace
        counts[:, t] = fired.sum(axis=1)
    return events, traces, counts


def linear_output(profile: Profile, quant: LinearQuant, bias: np.ndarray, relu: bool, acc: np.ndarray,
                  sat: dict) -> np.ndarray:
    """Quantized readout after its exact sum: saturate to the accumulator, rescale, add bias, ReLU, saturate."""
    acc = saturate(acc, profile.acc_bits, sat, "accumulator")
    out = rshift_round(acc, quant.input.frac + quant.weight.frac - quant.output.frac) + bias
    if relu:
        out = np.maximum(out, 0)
    return saturate(out, quant.output.bits, sat, "output")


def linear_int(profile: Profile, layer: Linear, x: np.ndarray, sat: dict) -> np.ndarray:
    """Quantized readout of input values x (..., I)."""
    return linear_output(profile, layer.quant, layer.bias, layer.relu, int_matmul(x, layer.weight.T), sat)


def run_int(graph: Graph, x: np.ndarray) -> RunResult:
    """The integer specification: run a quantized graph with its profile's exact arithmetic."""
    if not graph.quantized:
        raise IRError("run_int: graph is not quantized; compile it for a target first")
    profile = get_profile(graph.profile)
    values = quantize_input(graph, x)
    out_q = None
    result = RunResult(output=np.empty(0, np.float32))
    per_layer: dict[str, dict[str, int]] = {}
    for i, layer in enumerate(graph.layers):
        sat = per_layer.setdefault(f"layer{i}", {})
        if isinstance(layer, EGRU):
            events, traces, counts = egru_layer_int(profile, layer, values, sat)
            result.events.append(counts)
            result.hidden.append(layer.hidden)
            result.layer_events.append(events)
            values = traces if layer.use_trace else events
            out_q = QType(profile.event_bits, profile.event_frac)
        elif isinstance(layer, Linear):
            values = linear_int(profile, layer, values, sat)
            out_q = layer.quant.output
    result.saturations = {f"{name}.{kind}": n for name, counts in per_layer.items() for kind, n in counts.items()}
    result.int_sequence = values
    result.sequence = out_q.to_float(values)
    result.output = apply_output_mode(result.sequence, graph.output_mode)
    return result


def run(graph: Graph, x: np.ndarray) -> RunResult:
    """Run any graph: the float interpreter, or the integer interpreter of its profile."""
    return run_int(graph, x) if graph.quantized else run_float(graph, x)
