"""Integer profiles of the target chips: the arithmetic each chip really does, as data.

Every integer path (reference interpreter, hwsim, Lava's stock process models, the SpiNNaker2 C PE
program) implements exactly the primitives defined here.  A profile with ``circuit`` set (Loihi 2)
runs its EGRU layers and readouts as a circuit of Lava's stock neurocore processes, whose own
arithmetic ``egru_deploy.circuit`` states (floor shifts, ReLU-chord gates, no saturation); the rules
below are those of the per-unit neuron program (SpiNNaker2) and of the host's front-end on both chips.
The rules, stated once:

* Formats.  A value ``v`` in format ``QType(bits, frac)`` is the integer ``round(v * 2**frac)``.
  Gates, cell state, probabilities and thresholds share one format with ``state_frac`` (F)
  fractional bits and ``state_bits`` width.  Events (graded spikes / packet payloads) have
  ``event_frac`` (E <= F) fractional bits and ``event_bits`` width.
* Rounding.  Every right shift rounds half up: ``rshift_round(x, s) = (x + 2**(s-1)) >> s``
  (arithmetic shift); ``s <= 0`` is an exact left shift.  Quantizing a float rounds half to even
  (``np.round``); that happens only at compile time and for input data on the host.
* Saturation.  Matrix-vector products are summed exactly and then saturated to ``acc_bits``
  (sums are order-independent, so event-driven hardware may add in any order).  Gate
  pre-activations and the new cell state saturate to ``state_bits``; event payloads to
  ``event_bits``.  Every saturation is counted and reported.
* Weights.  ``weight_bits``-bit signed mantissas with a per-matrix power-of-two scale.  On Loihi 2
  with 8-bit mixed-sign weights Lava's Dense drops the lowest mantissa bit, so that profile
  only uses even mantissas (``weight_even``): what the IR holds is what the chip applies.
* Non-linearities.  ``activation`` gives sigmoid and tanh on integers in format F, returning
  format F: Loihi 2 sums ReLU chords (``circuit.ChordGates``: ReLU neurons whose differences the next
  connection's weights take); SpiNNaker2 uses lookup tables held in PE memory.
* Trace.  ``trace += rshift_round(trace_gain * (event - trace), F)`` in event format, kept only for
  layers whose trace feeds the next layer or the readout (``EGRU.use_trace``), as the chips do.
* Zoneout (EvNN's eval-mode blend ``c' = p*c + (1-p)*c'``, lib/egru_forward_cpu.cc).  A layer with
  ``EGRU.zoneout`` p > 0 uses the unsigned Q.F constant ``zoneout_gain = round(p * 2**F)`` (0..2**F).
  Right after the new state c' is computed and saturated, before the threshold test, with c the
  previous (post-reset) state: ``c' += rshift_round(zoneout_gain * (c - c'), F)``, which equals
  ``rshift_round(gain * c + (2**F - gain) * c', F)`` exactly.  The result lies between c and c', so
  it cannot leave the state range (nothing to saturate).  One multiply by a constant, a rounding
  shift and adds, the same form as the state update itself: a Loihi 2 neuron and the Cortex-M4 both
  do it.  The threshold, events and trace then use the blended c'.
* Front-end (layers before the first EGRU: Embedding, Conv2d, Pool2d, Linear).  It runs on the
  host, not on the chip, with these same rules: a Conv2d is a Linear over each window (exact sum,
  saturate to ``acc_bits``, rounding shift, bias, ReLU, saturate); max pooling is exact; average
  pooling sums its k*k window (padded zeros included, as torch) and divides rounding half up
  (``div_round``: the rounding shift when k*k is a power of two).  Pooling keeps its input's format.
  The chip receives the front-end's output as its input events.
* Schedule.  Each hop between processes (input -> layer, layer -> layer, layer -> readout) costs
  one time step on the chip (``hop_latency``): Lava's Dense emits at t+1 what it received at t,
  and a SpiNNaker2 PE consumes at tick t+1 the packets sent at tick t.  Recurrent connections
  fit that step exactly, so a layer's step t happens at chip step ``t + depth``.  The reference
  interpreter computes the aligned result; emulators and hardware runs are shifted back by
  ``latency(graph)`` before they are compared or returned.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from egru_deploy.circuit import ChordGates
from egru_deploy.ir import Graph

TRACE_DECAY = 0.9


def rshift_round(x, s: int):
    """Arithmetic right shift by ``s`` rounding half up; left shift when ``s`` <= 0 (int64)."""
    x = np.asarray(x, dtype=np.int64)
    if s > 0:
        y = x + (1 << (s - 1))
        y >>= s  # in place: one temporary instead of two
        return y
    if s < 0:
        return x << -s
    return x


def zoneout_blend(c_new, c_prev, gain: int, frac: int):
    """Zoneout's eval blend in format F: ``c' + rshift_round(gain * (c - c'), frac)`` (see the module docstring)."""
    c_new = np.asarray(c_new, dtype=np.int64)
    if gain == 0:
        return c_new
    return c_new + rshift_round(gain * (np.asarray(c_prev, dtype=np.int64) - c_new), frac)


def div_round(x, n: int):
    """``x / n`` rounded half up, ``floor((2x + n) / 2n)``: the same rule as ``rshift_round`` (which it
    is, when ``n`` is a power of two), for average pooling over windows of any size."""
    if n & (n - 1) == 0:
        return rshift_round(x, n.bit_length() - 1)
    x = np.asarray(x, dtype=np.int64)
    return (2 * x + n) // (2 * n)


def saturate(x, bits: int, counter: dict | None = None, key: str = ""):
    """Clip to the signed ``bits``-bit range, adding the number of clipped values to ``counter[key]``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0 or (lo <= x.min() and x.max() <= hi):  # the common case: nothing to clip, no copy
        return x
    if counter is not None:
        counter[key] = counter.get(key, 0) + int(np.count_nonzero(x < lo)) + int(np.count_nonzero(x > hi))
    return np.clip(x, lo, hi)


@dataclass(frozen=True)
class LookupTable:
    """Tables of ``2**index_bits`` entries over [-x_max, x_max); entry i holds f at the bin centre.

    index = clip((a + x_max) >> (F + log2(x_max) + 1 - index_bits), 0, size - 1).
    """

    index_bits: int = 10
    sigmoid_log2_range: int = 3  # sigmoid table covers [-8, 8)
    tanh_log2_range: int = 2  # tanh table covers [-4, 4)

    kind = "lookup_table"

    def table(self, fn: str, frac: int) -> np.ndarray:
        return _lut(fn, frac, self.index_bits, self._log2_range(fn))

    def _log2_range(self, fn: str) -> int:
        return self.sigmoid_log2_range if fn == "sigmoid" else self.tanh_log2_range

    def index(self, a, fn: str, frac: int):
        log2_range = self._log2_range(fn)
        shift = frac + log2_range + 1 - self.index_bits
        offset = np.int64(1) << np.int64(frac + log2_range)
        idx = (np.asarray(a, dtype=np.int64) + offset) >> np.int64(shift)
        return np.clip(idx, 0, (1 << self.index_bits) - 1)

    def sigmoid(self, a, frac: int):
        return self.table("sigmoid", frac)[self.index(a, "sigmoid", frac)]

    def tanh(self, a, frac: int):
        return self.table("tanh", frac)[self.index(a, "tanh", frac)]

    def describe(self, frac: int) -> dict:
        return {"kind": self.kind, "entries": 1 << self.index_bits,
                "sigmoid_range": [-(2 ** self.sigmoid_log2_range), 2 ** self.sigmoid_log2_range],
                "tanh_range": [-(2 ** self.tanh_log2_range), 2 ** self.tanh_log2_range],
                "entry_bits": 16, "bytes": 2 * 2 * (1 << self.index_bits)}


@lru_cache(maxsize=None)
def _lut(fn: str, frac: int, index_bits: int, log2_range: int) -> np.ndarray:
    n = 1 << index_bits
    step = 2.0 ** (log2_range + 1) / n
    centres = -(2.0 ** log2_range) + (np.arange(n) + 0.5) * step
    values = 1 / (1 + np.exp(-centres)) if fn == "sigmoid" else np.tanh(centres)
    table = np.round(values * (1 << frac)).astype(np.int64)
    table.setflags(write=False)
    return table


@dataclass(frozen=True)
class Profile:
    name: str
    chip: str
    weight_bits: int
    weight_even: bool
    acc_bits: int
    state_bits: int
    state_frac: int
    event_bits: int
    event_frac: int
    activation: LookupTable | ChordGates
    hop_latency: int = 1
    # The EGRU runs as a circuit of stock processes (``egru_deploy.circuit``: its own integer rules,
    # STEPS_PER_TOKEN chip steps per input step) instead of one neuron program per unit.
    circuit: bool = False

    @cached_property
    def trace_gain(self) -> int:
        """(1 - TRACE_DECAY) in format F: trace += rshift_round(trace_gain * (event - trace), F)."""
        return int(round((1 - TRACE_DECAY) * (1 << self.state_frac)))

    def zoneout_gain(self, p: float) -> int:
        """Zoneout probability p in unsigned format F: zoneout_blend's ``gain`` (0 .. 2**F)."""
        return int(round(float(p) * (1 << self.state_frac)))

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - (2 if self.weight_even else 1)

    def describe(self) -> dict:
        return {
            "name": self.name, "chip": self.chip,
            "weights": f"int{self.weight_bits} mantissa, power-of-two scale per matrix"
                       + (", even mantissas only (Lava Dense drops the LSB)" if self.weight_even else ""),
            "accumulator_bits": self.acc_bits, "state_bits": self.state_bits, "state_frac": self.state_frac,
            "event_bits": self.event_bits, "event_frac": self.event_frac,
            "activation": self.activation.describe(self.state_frac), "hop_latency": self.hop_latency,
            **({"circuit": "stock Lava processes (egru_deploy.circuit)"} if self.circuit else {}),
        }


LOIHI2 = Profile(
    name="loihi2", chip="Intel Loihi 2", weight_bits=8, weight_even=True, acc_bits=24, state_bits=24,
    state_frac=12, event_bits=24, event_frac=8, activation=ChordGates(), circuit=True)

SPINNAKER2 = Profile(
    name="spinnaker2", chip="SpiNNaker2", weight_bits=8, weight_even=False, acc_bits=32, state_bits=32,
    state_frac=12, event_bits=32, event_frac=12, activation=LookupTable())

PROFILES = {p.name: p for p in (LOIHI2, SPINNAKER2)}


def get_profile(name: str) -> Profile:
    from egru_deploy.errors import UserError

    if name not in PROFILES:
        raise UserError(f"unknown profile/target {name!r} (expected one of {', '.join(PROFILES)})")
    return PROFILES[name]


def latency(graph: Graph, profile: Profile) -> int:
    """Chip steps between an input step and the matching output step (one per hop)."""
    hops = len(graph.layers) - len(graph.frontend)  # the front-end (embedding, frame layers) runs on the host
    return hops * profile.hop_latency
