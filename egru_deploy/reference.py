"""Reference interpreters of the IR.

``run_float`` executes a float graph in NumPy (float32, batched).  ``run_int`` executes a quantized
graph with exactly its profile's integer arithmetic (``egru_deploy.profiles`` states the rules):
it is the specification that hwsim, Lava and the SpiNNaker2 PE program must equal bit for bit.
``run`` dispatches on the graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from egru_deploy import circuit
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Conv2d, Embedding, Graph, IRError, Linear, LinearQuant, Pool2d, QType
from egru_deploy.profiles import Profile, div_round, get_profile, rshift_round, saturate, zoneout_blend

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

    def final_events(self) -> list[np.ndarray]:
        """Each EGRU layer's events at the last step, (B, H): the ``initial_events`` that continue the
        run on the next chunk of the sequences (EvNN's LM evaluation carries y, with c and the trace
        reset, from one BPTT chunk to the next: docs/evnn_compat.md 3.2)."""
        return [y[:, -1].copy() for y in self.layer_events]

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
    """Validate ``x`` against the graph and return it shaped (B, T[, I]), frames (B, T, C, H, W);
    raises InputError."""
    x = np.asarray(x)
    if graph.input.frame is not None:
        x = _check_frames(graph, x, name)
    elif graph.input.tokens:
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


def _check_frames(graph: Graph, x: np.ndarray, name: str) -> np.ndarray:
    """Frames (B,T,C,H,W) or (T,C,H,W), or each step flattened in (C,H,W) order: (B,T,C*H*W) or (T,C*H*W)."""
    frame, size = graph.input.frame, graph.input.size
    dims = ",".join(str(n) for n in frame)
    expected = f"frames (B,T,{dims}) or (T,{dims}), or flattened (B,T,{size}) or (T,{size})"
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(name, f"expected float32 {expected}, got dtype {x.dtype}")
    if x.ndim in (2, 4):
        x = x[None]
    if x.ndim == 3 and x.shape[2] == size:
        x = x.reshape(x.shape[:2] + frame)
    if x.ndim != 5 or x.shape[2:] != frame:
        raise InputError(name, f"expected {expected}, got {x.shape}")
    return x


def check_initial_events(graph: Graph, initial_events, batch: int, name: str = "initial_events") -> list:
    """Validate per-EGRU-layer initial events: None, or a list with None or one (B, H) array per layer.

    They are EvNN's ``state`` argument, the event output y of the step before the first
    (docs/evnn_compat.md 1.3): it enters only through the recurrent kernel at step 0; c and the
    trace start at 0.  Float graphs take float y, quantized graphs integer payloads in the event
    format (what ``RunResult.final_events`` returns).  Returns one array or None per EGRU layer.
    """
    layers = graph.egru_layers
    if initial_events is None:
        return [None] * len(layers)
    if not isinstance(initial_events, (list, tuple)) or len(initial_events) != len(layers):
        got = f"{len(initial_events)} entries" if isinstance(initial_events, (list, tuple)) else \
            type(initial_events).__name__
        raise InputError(name, f"expected a list of {len(layers)} entries (one (B, H) array or None per EGRU "
                               f"layer), got {got}")
    checked = []
    for k, (layer, y0) in enumerate(zip(layers, initial_events)):
        if y0 is None:
            checked.append(None)
            continue
        y0 = np.asarray(y0)
        where = f"{name}[{k}]"
        if y0.shape != (batch, layer.hidden):
            raise InputError(where, f"expected shape ({batch}, {layer.hidden}) (batch, hidden), got {y0.shape}")
        if graph.quantized:
            if not np.issubdtype(y0.dtype, np.integer):
                raise InputError(where, f"a quantized graph takes integer event payloads, got dtype {y0.dtype}")
            bits = get_profile(graph.profile).event_bits
            if y0.size and (y0.min() < -(1 << (bits - 1)) or y0.max() >= 1 << (bits - 1)):
                raise InputError(where, f"payloads outside the {bits}-bit event range")
            checked.append(y0.astype(np.int64))
        else:
            if not np.issubdtype(y0.dtype, np.floating) or not np.all(np.isfinite(y0)):
                raise InputError(where, f"expected finite float events, got dtype {y0.dtype}")
            checked.append(y0.astype(np.float32))
    return checked


def refuse_initial_events(initial_events, where: str) -> None:
    """For runs that always start from zero events: a one-line error if initial events are given."""
    if initial_events is not None and any(y0 is not None for y0 in initial_events):
        raise UserError(f"{where}: initial events are not supported (its EGRU neurons start from y = 0); "
                        f"use the reference or hwsim backend")


def apply_output_mode(seq: np.ndarray, mode: str) -> np.ndarray:
    if mode == "last":
        return seq[:, -1]
    if mode == "mean":
        return seq.mean(axis=1, dtype=np.float64).astype(np.float32)
    return seq


def _sigmoid(x):
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: 1/(1+inf) = 0 is exact
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def egru_layer_float(layer: EGRU, x: np.ndarray, initial_events: np.ndarray | None = None):
    """Run one EGRU layer on x (B, T, I) float32; return y, trace (B, T, H) and event counts (B, T).

    ``initial_events`` (B, H): y before the first step (default 0); c and the trace start at 0.
    """
    b, t_steps, _ = x.shape
    h = layer.hidden
    gx_all = (x @ layer.kernel + layer.bias).astype(np.float32)
    c = np.zeros((b, h), np.float32)
    y = np.zeros((b, h), np.float32) if initial_events is None else initial_events.astype(np.float32)
    p = np.float32(layer.zoneout)
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
        if p:  # EvNN's eval zoneout (lib/egru_forward_cpu.cc): c' = p * c + (1 - p) * c'
            c_new = p * c + (np.float32(1) - p) * c_new
        o = c_new - thr > 0
        c = np.where(o, c_new - thr, c_new)
        y = np.where(o, c_new, np.float32(0))
        trace = TRACE_DECAY * trace + (1 - TRACE_DECAY) * y
        ys[:, t], traces[:, t] = y, trace
        counts[:, t] = o.sum(axis=1)
    return ys, traces, counts


def run_float(graph: Graph, x: np.ndarray, initial_events=None, observe=None) -> RunResult:
    """The float equations; ``initial_events``: see :func:`check_initial_events`.  ``observe(i, values)``,
    if given, sees every layer's output (B, T, ...) (frames channels-last), e.g. to measure ranges."""
    if graph.quantized:
        raise IRError(f"run_float: graph is quantized for profile {graph.profile!r}; use run()")
    x = check_input(graph, x)
    initial = iter(check_initial_events(graph, initial_events, x.shape[0]))
    result = RunResult(output=np.empty(0, np.float32))
    x = channels_last(x) if graph.input.frame is not None else x
    for i, layer in enumerate(graph.layers):
        if isinstance(layer, EGRU):
            y, trace, counts = egru_layer_float(layer, flatten_frames(x), next(initial))
            result.events.append(counts)
            result.hidden.append(layer.hidden)
            result.layer_events.append(y)
            x = trace if layer.use_trace else y
        else:
            x = float_layer(layer, x)
        if observe is not None:
            observe(i, x)
    result.sequence = x
    result.output = apply_output_mode(x, graph.output_mode)
    return result


# --------------------------------------------------------------------------- integer specification


def quantize_input(graph: Graph, x: np.ndarray, saturations: dict | None = None) -> np.ndarray:
    """Host side: what the chip's first layer (the first EGRU) receives, (B, T, I) int64.

    Token inputs: the embedding lookup.  Features and frames: rounded to the input format, then run
    through the rest of the front-end (``Graph.frontend``: Conv2d, Pool2d, Linear) with the
    profile's arithmetic.  The front-end's saturations are added to ``saturations``
    (``"layer<i>.<kind>"`` -> count) when it is given.
    """
    profile = get_profile(graph.profile)
    x = check_input(graph, x)
    front = graph.frontend
    if front and isinstance(front[0], Embedding):
        values, start = front[0].weight.astype(np.int64)[x], 1
    else:
        q = input_format(graph)
        values, start = saturate(np.round(x.astype(np.float64) * 2.0 ** q.frac), profile.event_bits), 0
        if graph.input.frame is not None:
            values = channels_last(values)
    for i in range(start, len(front)):
        sat: dict[str, int] = {}
        values = int_layer(profile, front[i], values, sat)
        if saturations is not None:
            saturations.update({f"layer{i}.{kind}": n for kind, n in sat.items()})
    return flatten_frames(values)


def input_format(graph: Graph) -> QType:
    """Format of the input features or frames: the input of the first layer with a format (pooling
    keeps its input's format)."""
    return next(layer.quant.input for layer in graph.layers if getattr(layer, "quant", None) is not None)


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
    c_new = zoneout_blend(c_new, state.c, profile.zoneout_gain(layer.zoneout), f)  # between c and c': in range
    fired = c_new > layer.thr
    state.c = c_new - fired * layer.thr
    y = c_new * fired
    state.events = saturate(rshift_round(y, f - profile.event_frac), profile.event_bits, sat, "event")
    if layer.use_trace:  # only a consumed trace is computed (chips skip it too)
        state.trace = state.trace + rshift_round(profile.trace_gain * (state.events - state.trace), f)
    return fired


def egru_layer_int(profile: Profile, layer: EGRU, x: np.ndarray, sat: dict,
                   initial_events: np.ndarray | None = None):
    """Run one quantized EGRU layer on input events x (B, T, I) int64.

    Returns events and traces (B, T, H) int64 and spike counts (B, T).  ``initial_events`` (B, H):
    the event payloads before the first step (default 0); c and the trace start at 0.
    """
    if profile.circuit:  # the stock-process circuit has its own arithmetic (egru_deploy.circuit)
        return circuit.layer_int(profile, layer, x, sat, initial_events)
    b, t_steps, _ = x.shape
    h = layer.hidden
    gx_all = input_preactivation(profile, layer, int_matmul(x, layer.kernel), sat)  # all steps at once
    recurrent_sums = ExactSums(layer.recurrent_kernel)
    state = egru_int_state(b, h)
    if initial_events is not None:
        state.events = initial_events.astype(np.int64)
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


def run_int(graph: Graph, x: np.ndarray, initial_events=None) -> RunResult:
    """The integer specification: run a quantized graph with its profile's exact arithmetic.

    ``initial_events``: see :func:`check_initial_events` (integer payloads in the event format)."""
    if not graph.quantized:
        raise IRError("run_int: graph is not quantized; compile it for a target first")
    profile = get_profile(graph.profile)
    host_saturations: dict[str, int] = {}
    values = quantize_input(graph, x, host_saturations)  # the front-end runs on the host
    initial = iter(check_initial_events(graph, initial_events, values.shape[0]))
    out_q = None
    result = RunResult(output=np.empty(0, np.float32))
    per_layer: dict[str, dict[str, int]] = {}
    for i, layer in enumerate(graph.layers):
        if i < len(graph.frontend):
            continue
        sat = per_layer.setdefault(f"layer{i}", {})
        if isinstance(layer, EGRU):
            events, traces, counts = egru_layer_int(profile, layer, values, sat, next(initial))
            result.events.append(counts)
            result.hidden.append(layer.hidden)
            result.layer_events.append(events)
            values = traces if layer.use_trace else events
            out_q = QType(profile.event_bits, profile.event_frac)
        elif isinstance(layer, Linear):  # a readout on the chip (the stock circuit's own rule on Loihi 2)
            values = (circuit.linear_int if profile.circuit else linear_int)(profile, layer, values, sat)
            out_q = layer.quant.output
    result.saturations = {**host_saturations, **{f"{name}.{kind}": n for name, counts in per_layer.items()
                                                 for kind, n in counts.items()}}
    result.int_sequence = values
    result.sequence = out_q.to_float(values)
    result.output = apply_output_mode(result.sequence, graph.output_mode)
    return result


def run(graph: Graph, x: np.ndarray, initial_events=None) -> RunResult:
    """Run any graph: the float interpreter, or the integer interpreter of its profile."""
    return run_int(graph, x, initial_events) if graph.quantized else run_float(graph, x, initial_events)


# --------------------------------------------------------------------------- front-end layers
# Frames are kept channels-last, (..., H, W, C), between front-end layers: a convolution's window
# rows then come out in its weight's (C, k, k) order and its output needs no transpose.  A vector
# layer reads a frame flattened in (C, H, W) order, as torch's Flatten does.
FRAMES_PER_CHUNK = 64  # frames convolved at once: bounds the window matrix of a long calibration set


def channels_last(x: np.ndarray) -> np.ndarray:
    """(B, T, C, H, W) -> (B, T, H, W, C)."""
    return np.ascontiguousarray(np.moveaxis(x, 2, -1))


def flatten_frames(values: np.ndarray) -> np.ndarray:
    """(B, T, H, W, C) channels-last frames -> (B, T, C*H*W) in (C, H, W) order; vectors unchanged."""
    if values.ndim != 5:
        return values
    return np.moveaxis(values, -1, 2).reshape(values.shape[0], values.shape[1], -1)


def conv_matrix(layer: Conv2d) -> np.ndarray:
    """A convolution's weights as the [C*k*k, O] matrix its window rows are multiplied with."""
    return layer.weight.reshape(layer.weight.shape[0], -1).T


def _per_frame(fn, values: np.ndarray) -> np.ndarray:
    """Apply ``fn`` to the (B, T, H, W, C) frames as (N, H, W, C) batches, B*T frames at a time."""
    b, t = values.shape[:2]
    frames = values.reshape(b * t, *values.shape[2:])
    out = [fn(frames[i:i + FRAMES_PER_CHUNK]) for i in range(0, b * t, FRAMES_PER_CHUNK)]
    out = out[0] if len(out) == 1 else np.concatenate(out)
    return out.reshape(b, t, *out.shape[1:])


def _pad(frames: np.ndarray, padding: int, value) -> np.ndarray:
    if padding == 0:
        return frames
    return np.pad(frames, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=value)


def conv_windows(layer: Conv2d, frames: np.ndarray) -> np.ndarray:
    """im2col: (N, H, W, C) -> window rows (N, Ho, Wo, C*k*k), zero padding, in ``conv_matrix`` order."""
    k, s = layer.kernel, layer.stride
    windows = sliding_window_view(_pad(frames, layer.padding, 0), (k, k), axis=(1, 2))[:, ::s, ::s]
    return windows.reshape(*windows.shape[:3], -1)  # (N, Ho, Wo, C, k, k): one copy, in row order


def pool_frames(layer: Pool2d, frames: np.ndarray) -> np.ndarray:
    """Max or average pooling of (N, H, W, C) frames, float or integer (torch's floor rule).

    Max pooling pads with the lowest value (-inf), so padding never wins and integers stay exact.
    Average pooling sums the window with padded zeros and divides by k*k (torch's
    ``count_include_pad``): in float, or rounding half up on integers (``profiles.div_round``),
    so the output keeps the input's format.
    """
    k, s, p = layer.kernel, layer.stride, layer.padding
    _, ho, wo = layer.out_shape((frames.shape[3], frames.shape[1], frames.shape[2]))
    integer = np.issubdtype(frames.dtype, np.integer)
    if layer.kind == "max":
        padded, combine = _pad(frames, p, np.iinfo(np.int64).min if integer else -np.inf), np.maximum
    else:
        padded, combine = _pad(frames, p, 0), np.add
    out = None
    for i, j in product(range(k), range(k)):  # k*k strided views, each combined into the output in place
        part = padded[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s]
        out = part.copy() if out is None else combine(out, part, out=out)
    if layer.kind == "max":
        return out
    return div_round(out, k * k) if integer else (out / np.float32(k * k)).astype(np.float32)


def float_layer(layer, values: np.ndarray) -> np.ndarray:
    """One layer other than EGRU on float values (B, T, ...): embedding lookup, Conv2d (+ReLU), Pool2d,
    Linear (+ReLU)."""
    if isinstance(layer, Embedding):
        return layer.weight[values]
    if isinstance(layer, Pool2d):
        return _per_frame(lambda f: pool_frames(layer, f), values)
    if isinstance(layer, Conv2d):
        weights = conv_matrix(layer)
        out = _per_frame(lambda f: conv_windows(layer, f) @ weights, values) + layer.bias
    else:
        out = flatten_frames(values) @ layer.weight.T + layer.bias
    out = out.astype(np.float32)
    return np.maximum(out, 0) if layer.relu else out


def frontend_float(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The float front-end on the host: what the first EGRU of a float graph receives, (B, T, I)."""
    values = check_input(graph, x)
    values = channels_last(values) if graph.input.frame is not None else values
    for layer in graph.frontend:
        values = float_layer(layer, values)
    return flatten_frames(values)


def int_layer(profile: Profile, layer, values: np.ndarray, sat: dict) -> np.ndarray:
    """One front-end layer on integers (B, T, ...) other than the embedding: Conv2d, Pool2d or Linear.

    A Conv2d is a Linear over every window: the same exact sums and ``linear_output`` rules."""
    if isinstance(layer, Pool2d):
        return _per_frame(lambda f: pool_frames(layer, f), values)
    if isinstance(layer, Conv2d):
        sums = ExactSums(conv_matrix(layer))
        acc = _per_frame(lambda f: sums(conv_windows(layer, f)), values)
        return linear_output(profile, layer.quant, layer.bias, layer.relu, acc, sat)
    return linear_int(profile, layer, flatten_frames(values), sat)
