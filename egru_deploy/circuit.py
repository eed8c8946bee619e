"""The integer specification of the Loihi 2 stock circuit: an EGRU layer built from Lava's stock processes.

A Loihi 2 neurocore runs a neuron only through Intel's microcode, and public Lava ships models only for
its stock processes.  So each EGRU layer is a circuit of stock processes (``targets.loihi2.netlist``
wires it), and this module states exactly what that circuit computes: what the processes' public
``fixed_pt`` models do (lava-nc 0.10, read from ``src/lava/proc/*/models.py``):

* ``Dense`` / ``Sparse``: ``sum_j w_ij s_j`` in int32, then ``<< weight_exp`` or an arithmetic right
  shift (floor) by ``-weight_exp``; one exponent per connection; what is sent at chip step t arrives at t+1.
  8-bit mixed-sign weights keep even mantissas only (``weightutils.truncate_weights``), so every weight here
  is an even integer in [-256, 254].  Written ``conn(w, s, e)`` below.
* ``GradedVec`` (vth=0): ``v * (|v| > 0)``, the identity on the summed input of the step.
* ``GradedReluVec`` (vth=0): ``v * (v > 0)`` = ReLU of the summed input of the step.
* ``ProdNeuron`` (vth=0): ``(a1 * a2) >> exp``, floor, one ``exp`` per process.
* None of them keeps state: the summed input is cleared every step.  State (c, the trace) is carried
  from one input step to the next by relay neurons, and constants (biases, chord offsets, thresholds)
  arrive on host phase lines (``phase_digits``) at the step they are needed, so every neuron is silent
  except at its own level of the circuit.

One input step takes ``STEPS_PER_TOKEN`` (D = 7) chip steps; neurons at level k (1..7) compute at chip
step ``offset + t*D + k``.  Values, with F = 12 (state), E = 8 (events), G = 8 (gates):

  L1 (pre, GradedVec)    A_q = conn(K_q, x, e_in) + conn(R_q, y, e_rec) + b_q      q in z, r, gx, gh
  L2 (relu)              u_zk = relu(A_z - knot_k), u_rk = relu(A_r - knot_k)     sigmoid chords
  L3                     r = conn(slopes, u_r, -11)  (format G);  P_r = (r * A_gh) >> 8   (ProdNeuron)
                         z = conn(slopes, u_z, -11)  (format G, GradedVec)
  L4 (relu)              u_gk = relu(P_r + A_gx - knot'_k)                         tanh chords
                         one_minus_z = 256 - z
  L5 (ProdNeuron)        P_z = (one_minus_z * (conn(slopes', u_g, -7) - 2**F - c)) >> 8
  L6                     c' = c + conn(w_zo, P_z, e_zo);  q = relu(c' - thr);  q1 = relu(c' - thr - 1)
  L7                     y = (c' * (q - q1)) >> (F - E)   (ProdNeuron: the graded event)
                         c_new = c' - conn(thr_w, q - q1, e_thr)   (soft reset; q - q1 = [c' > thr])
  L8 = L1 of the next step (trace layers): trace = conn(230, trace, -8) + conn(26, y, -8)

``sigmoid(a) = conn(slopes, relu(a - knots), -11)`` and ``tanh(a) = conn(slopes', relu(a - knots'), -7) -
2**F`` are sums of ReLUs whose differences the next connection's weights take (``Chords``);
``ChordGates`` is the profile's activation, so QAT trains on the same functions.  Zoneout p scales
the update: ``w_zo / 2**-e_zo`` ~ (1 - p) (exactly 1 when p = 0).  The threshold lives in a weight, so
it is held to the grid of an 8-bit even mantissa times a per-layer power of two (``threshold_grid``).

Nothing saturates: the stock models neither clip nor saturate (int32), so the specification does not
either; values that leave the 24-bit message range are counted (``"accumulator"`` for connection sums,
``"state"`` for neuron values) so quantization can avoid them and reports show them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

STEPS_PER_TOKEN = 7  # chip steps per input step: the circuit's depth (levels L1..L7)
GATE_FRAC = 8  # z, r and 1 - z enter the products with 8 fractional bits (1.0 = 256)
SLOPE_FRAC = 6  # chord slopes are multiples of 2**-6 (weights 2 * j for slope j / 64)
PRODUCT_EXP = GATE_FRAC  # ProdNeuron exponent of r * gh and (1 - z) * (g - c)
MESSAGE_BITS = 24  # graded payloads and neuron inputs on Loihi 2
IDENTITY = (2, -1)  # weight 2 with exponent -1: the exact identity for an even-mantissa connection
TRACE_DECAY_WEIGHT, TRACE_GAIN_WEIGHT, TRACE_EXP = 230, 26, -8  # trace = 0.898 trace + 0.102 y
DIGIT_BITS = 8  # a constant is sent as balanced base-256 digits on phase lines of value 1, 256, 65536
DIGITS = 3
CONSTANT_LIMIT = 1 << (MESSAGE_BITS - 1)
PHASE_CONSTANT_MAX = 127 * sum(256 ** d for d in range(DIGITS))  # the largest |constant| the digits hold


def shift(values, exp: int):
    """A connection's output scaling: ``<< exp`` or floor ``>> -exp`` (int64)."""
    values = np.asarray(values, dtype=np.int64)
    return values << exp if exp >= 0 else values >> -exp


def relu(values):
    return np.maximum(values, 0)


@dataclass(frozen=True)
class Chords:
    """A piecewise-linear function as ``low + conn(weights, relu(a - knots), exp)``.

    ``knots`` are state-format (F) integers, ``weights`` even mantissas ``2 j`` for slope changes
    ``j / 2**SLOPE_FRAC``; ``exp`` scales the sum to the output format."""

    knots: tuple[int, ...]
    weights: tuple[int, ...]
    exp: int
    low: int

    def units(self, a: np.ndarray) -> np.ndarray:
        """The chord neurons' outputs, (..., n, H) for a (..., H)."""
        knots = np.asarray(self.knots, np.int64)[:, None]
        return relu(np.asarray(a, np.int64)[..., None, :] - knots)

    def sum_shifted(self, a) -> np.ndarray:
        """The next connection's sum over the chord neurons, ``shift(sum_k w_k units_k, exp)`` (without
        ``low``, which a phase line adds), computed without the units: the knots below a contribute
        ``w_k (a - knot_k)``, so the sum is ``W(k) a - WB(k)`` with running sums W, WB over the first k."""
        a = np.asarray(a, np.int64)
        w, wb = _running_sums(self)
        k = np.searchsorted(np.asarray(self.knots, np.int64), a, side="left")  # knots < a
        return shift(w[k] * a - wb[k], self.exp)

    def __call__(self, a) -> np.ndarray:
        return self.low + self.sum_shifted(a)


@lru_cache(maxsize=None)
def _running_sums(table: Chords) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(table.weights, np.int64)
    return np.concatenate([[0], np.cumsum(w)]), np.concatenate([[0], np.cumsum(w * np.asarray(table.knots, np.int64))])


def _fit(fn: str, n: int, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric knots on [-X, X] with chord slopes rounded to 1/64; the outer segments are stretched so
    the function rises by exactly its range; X minimises the largest error on [-12, 12]."""
    f, low, high = ((lambda v: 1 / (1 + np.exp(-v))), 0.0, 1.0) if fn == "sigmoid" else (np.tanh, -1.0, 1.0)
    den = 1 << SLOPE_FRAC
    grid = np.linspace(-12, 12, 2401)
    best = None
    for x_max in np.linspace(0.3, 8, 155):
        knots = np.linspace(-x_max, x_max, n)
        slopes = np.round((f(knots[1:]) - f(knots[:-1])) / (knots[1:] - knots[:-1]) * den) / den
        if slopes[0] <= 0:
            continue
        inner = float((slopes[1:-1] * np.diff(knots[1:-1])).sum()) if n > 2 else 0.0
        outer = (high - low - inner) / (2 * slopes[0])
        if outer <= 0:
            continue
        if n == 2:
            knots = np.array([-outer, outer])
        else:
            knots[0], knots[-1] = knots[1] - outer, knots[-2] + outer
        changes = np.diff(np.concatenate([[0.0], slopes, [0.0]]))
        values = low + (changes[None] * relu(grid[:, None] - knots[None])).sum(axis=1)
        error = float(np.abs(values - f(grid)).max())
        if best is None or error < best[0]:
            best = (error, knots, changes)
    _, knots, changes = best
    return np.round(knots * (1 << frac)).astype(np.int64), np.round(changes * den).astype(np.int64)


@lru_cache(maxsize=None)
def chords(fn: str, n: int, frac: int) -> Chords:
    """The chord table of ``fn`` ("sigmoid" in gate format G, "tanh" in state format F) with n ReLUs."""
    knots, changes = _fit(fn, n, frac)
    if np.any(np.diff(knots) <= 0):  # sum_shifted counts the knots below a: they must increase
        raise ValueError(f"chords({fn!r}, {n}): knots {knots.tolist()} do not increase")
    if fn == "sigmoid":  # sum of (j/64) * u over units in format F, to format G
        return Chords(tuple(int(k) for k in knots), tuple(int(2 * j) for j in changes),
                      -(1 + SLOPE_FRAC + frac - GATE_FRAC), 0)
    return Chords(tuple(int(k) for k in knots), tuple(int(2 * j) for j in changes), -(1 + SLOPE_FRAC), -(1 << frac))


@dataclass(frozen=True)
class ChordGates:
    """The Loihi 2 profile's activation: sigmoid and tanh as sums of ReLU chords (``chords``).

    ``sigmoid(a, F)`` and ``tanh(a, F)`` return format F, as every profile's activation does; the circuit
    carries the sigmoid in format G (``sigmoid_gate``), which is the F value shifted right by F - G."""

    # 8 sigmoid and 4 tanh ReLUs: the fewest neurons per unit (41) that keep the digits example's PTQ drop
    # within 1 pp and its QAT drop within 0.5 pp (benchmarks/bench_loihi2_gates.py); z and r set the memory
    # of the cell, so the sigmoid needs the finer chords.
    sigmoid_chords: int = 8
    tanh_chords: int = 4

    kind = "relu_chords"

    def __post_init__(self):
        for name, n in (("sigmoid", self.sigmoid_chords), ("tanh", self.tanh_chords)):
            if n < 2 or n % 2:  # symmetric knots: an odd count's middle chord gets weight 0
                raise ValueError(f"ChordGates: {name} chords must be an even number >= 2, got {n}")

    def sigmoid_table(self, frac: int) -> Chords:
        return chords("sigmoid", self.sigmoid_chords, frac)

    def tanh_table(self, frac: int) -> Chords:
        return chords("tanh", self.tanh_chords, frac)

    def sigmoid_gate(self, a, frac: int):
        return self.sigmoid_table(frac)(a)

    def sigmoid(self, a, frac: int):
        return self.sigmoid_gate(a, frac) << (frac - GATE_FRAC)

    def tanh(self, a, frac: int):
        return self.tanh_table(frac)(a)

    @property
    def relus_per_unit(self) -> int:
        return 2 * self.sigmoid_chords + self.tanh_chords

    def describe(self, frac: int) -> dict:
        s, t = self.sigmoid_table(frac), self.tanh_table(frac)
        return {"kind": self.kind, "format_frac": frac, "gate_frac": GATE_FRAC,
                "sigmoid": {"relus": self.sigmoid_chords, "knots": list(s.knots), "weights": list(s.weights),
                            "exp": s.exp},
                "tanh": {"relus": self.tanh_chords, "knots": list(t.knots), "weights": list(t.weights),
                         "exp": t.exp, "low": t.low}}


def threshold_grid(thr: np.ndarray) -> int:
    """The exponent e of the reset connection: thresholds are ``w * 2**e`` with even |w| <= 254, e >= -1.

    ``e = -1`` holds every integer up to 127 in magnitude; larger thresholds use the smallest e that
    holds the largest."""
    peak = int(np.max(np.abs(thr))) if np.size(thr) else 0
    e = -1
    while peak > 254 * 2.0 ** e:
        e += 1
    return e


def on_threshold_grid(thr: np.ndarray) -> np.ndarray:
    """Round state-format thresholds to the reset connection's grid: multiples of 2**(e+1) (1 when e = -1)."""
    thr = np.asarray(thr, np.int64)
    e = threshold_grid(thr)
    step = 1 << (e + 1)
    return np.floor(thr / step + 0.5).astype(np.int64) * step


def threshold_weights(thr: np.ndarray) -> tuple[np.ndarray, int]:
    e = threshold_grid(thr)
    return (np.asarray(thr, np.int64) >> e) if e >= 0 else 2 * np.asarray(thr, np.int64), e


def zoneout_weight(p: float) -> tuple[int, int]:
    """(weight, exponent) of the update connection: exactly 1 for p = 0, else ``2 round(128 (1 - p)) / 256``."""
    if p == 0:
        return IDENTITY
    return int(min(254, 2 * round(128 * (1 - p)))), -8


def phase_digit_arrays(constants) -> list[np.ndarray]:
    """Balanced base-256 digits m_d in [-128, 127] with ``constants = sum m_d 256**d`` (sent as weights
    2 m_d on the phase line of value 256**d), one array per digit."""
    rest = np.asarray(constants, np.int64)
    digits = []
    for _ in range(DIGITS):
        m = ((rest + 128) % 256) - 128
        digits.append(m)
        rest = (rest - m) // 256
    if np.any(rest):
        bad = int(np.asarray(constants).ravel()[np.flatnonzero(rest)[0]])
        raise ValueError(f"constant {bad} does not fit {DIGITS} phase-line digits (|c| <= {PHASE_CONSTANT_MAX})")
    return digits


def phase_digits(constant: int) -> tuple[int, ...]:
    """The digits of one constant (``phase_digit_arrays``)."""
    return tuple(int(d[0]) for d in phase_digit_arrays(np.array([constant])))




def out_of_range(values: np.ndarray) -> int:
    """Values that leave the 24-bit message range (counted, not clipped)."""
    v = np.asarray(values)
    if v.size == 0 or (v.min() >= -CONSTANT_LIMIT and v.max() < CONSTANT_LIMIT):  # the common case
        return 0
    return int(np.count_nonzero((v < -CONSTANT_LIMIT) | (v >= CONSTANT_LIMIT)))


@dataclass(frozen=True)
class LayerConstants:
    """The per-layer numbers the circuit's connections and phase lines carry, from a quantized EGRU."""

    in_exp: int
    rec_exp: int
    bias: np.ndarray  # (4, H): constants of A_z, A_r, A_gx, A_gh
    thr: np.ndarray  # (H,) state format, on the threshold grid
    thr_weights: np.ndarray
    thr_exp: int
    zoneout: tuple[int, int]


def layer_constants(profile, layer) -> LayerConstants:
    f, h = profile.state_frac, layer.hidden
    b, rb = layer.bias.astype(np.int64), layer.recurrent_bias.astype(np.int64)
    bias = np.stack([b[:h] + rb[:h], b[h:2 * h] + rb[h:2 * h], b[2 * h:], rb[2 * h:]])
    thr = layer.thr.astype(np.int64)
    weights, thr_exp = threshold_weights(thr)
    return LayerConstants(in_exp=f - layer.quant.input.frac - layer.quant.kernel.frac,
                          rec_exp=f - profile.event_frac - layer.quant.recurrent_kernel.frac,
                          bias=bias, thr=thr, thr_weights=weights, thr_exp=thr_exp,
                          zoneout=zoneout_weight(layer.zoneout))


def _count(sat: dict, key: str, values) -> None:
    n = out_of_range(values)
    if n:
        sat[key] = sat.get(key, 0) + n


def input_sums(layer, x: np.ndarray, in_exp: int, sat: dict) -> np.ndarray:
    """conn(K, x, e_in) for all steps at once: (B, T, 3H) in blocks z, r, gx."""
    from egru_deploy.reference import int_matmul

    acc = int_matmul(x, layer.kernel)
    _count(sat, "accumulator", acc)
    return shift(acc, in_exp)


def layer_int(profile, layer, x: np.ndarray, sat: dict, initial_events: np.ndarray | None = None,
              record: dict | None = None):
    """Run one EGRU layer's circuit over input events x (B, T, I); the same return values as
    ``reference.egru_layer_int`` (events, traces, spike counts).  ``record``, if given, receives every
    neuron group's values per step, (B, T, ...) under the names ``targets.loihi2.netlist`` uses."""
    from egru_deploy.reference import ExactSums

    f, e = profile.state_frac, profile.event_frac
    act = profile.activation
    sig, tanh = act.sigmoid_table(f), act.tanh_table(f)
    k = layer_constants(profile, layer)
    b, t_steps, _ = x.shape
    h = layer.hidden
    gate_one = 1 << GATE_FRAC
    w_zo, e_zo = k.zoneout
    gx_all = input_sums(layer, x, k.in_exp, sat)
    rec = ExactSums(layer.recurrent_kernel)
    c = np.zeros((b, h), np.int64)
    y = np.zeros((b, h), np.int64) if initial_events is None else initial_events.astype(np.int64)
    trace = np.zeros((b, h), np.int64)
    events = np.empty((b, t_steps, h), np.int64)
    traces = np.empty((b, t_steps, h), np.int64)
    counts = np.empty((b, t_steps), np.int64)
    steps = [] if record is not None else None
    for t in range(t_steps):
        acc_h = rec(y)
        _count(sat, "accumulator", acc_h)
        gh_all = shift(acc_h, k.rec_exp)
        gx = gx_all[:, t]
        pre = np.stack([gx[:, :h] + gh_all[:, :h], gx[:, h:2 * h] + gh_all[:, h:2 * h],
                        gx[:, 2 * h:], gh_all[:, 2 * h:]], axis=1) + k.bias  # (B, 4, H)
        z, r = sig.sum_shifted(pre[:, 0]), sig.sum_shifted(pre[:, 1])
        p_r = shift(r * pre[:, 3], -PRODUCT_EXP)
        a_g = p_r + pre[:, 2]
        one_minus_z = gate_one - z
        g_minus_c = tanh.sum_shifted(a_g) + tanh.low - c
        p_z = shift(one_minus_z * g_minus_c, -PRODUCT_EXP)
        c_new = c + shift(w_zo * p_z, e_zo)
        q = relu(c_new - k.thr)
        q1 = relu(c_new - k.thr - 1)
        fired = q - q1
        y = shift(c_new * fired, -(f - e))
        c_next = c_new - shift(k.thr_weights * fired, k.thr_exp)
        if layer.use_trace:
            trace = shift(TRACE_DECAY_WEIGHT * trace, TRACE_EXP) + shift(TRACE_GAIN_WEIGHT * y, TRACE_EXP)
        _count(sat, "state", pre)
        _count(sat, "state", c_new)
        if steps is not None:
            steps.append({"pre": pre, "u_z": sig.units(pre[:, 0]), "u_r": sig.units(pre[:, 1]),
                          "u_g": tanh.units(a_g), "z": z,
                          "one_minus_z": one_minus_z, "p_r": p_r, "p_z": p_z, "c": c, "c_new": c_new,
                          "q": q, "q1": q1, "c_next": c_next, "y": y, "trace": trace,
                          })
        c = c_next
        events[:, t], traces[:, t] = y, trace
        counts[:, t] = fired.sum(axis=1)
    if steps is not None:
        for name in steps[0]:
            record[name] = np.stack([s[name] for s in steps], axis=1)
    return events, traces, counts


def linear_int(profile, layer, x: np.ndarray, sat: dict) -> np.ndarray:
    """A Linear readout's neurons: ``conn(W, x, e) + bias`` (GradedVec, or GradedReluVec with ReLU)."""
    from egru_deploy.reference import int_matmul

    acc = int_matmul(x, layer.weight.T)
    _count(sat, "accumulator", acc)
    q = layer.quant
    out = shift(acc, q.output.frac - q.input.frac - q.weight.frac) + layer.bias.astype(np.int64)
    if layer.relu:
        out = relu(out)
    _count(sat, "output", out)
    return out
