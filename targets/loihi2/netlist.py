"""The Loihi 2 network of a quantized graph as stock Lava processes: populations and connections, as data.

Each EGRU layer becomes the circuit of ``egru_deploy.circuit`` (its docstring lists the levels), each
Linear readout one GradedVec (GradedReluVec with ReLU) population.  A population is one Lava process of
one stock neuron model; its neurons are grouped in named segments, each computing at one level of the
circuit.  A connection is one Lava ``Dense`` (the weight matrices) or ``Sparse`` (the circuit's wiring)
from a population's ``s_out`` to a port of another; one exponent per connection.  Constants arrive on
host phase lines: the host sends ``256**d`` on line (layer, level, digit d) one step before each level
needs it, and the line's connection weights are the constants' digits (``circuit.phase_digits``).

The host's source, phase lines and sinks reach the chip through the Loihi 2 adapters
(``lava.proc.embedded_io``); ``targets.loihi2.network`` builds the Lava objects from this description.
Nothing here imports Lava.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy import circuit
from egru_deploy.circuit import IDENTITY, STEPS_PER_TOKEN
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph
from egru_deploy.profiles import LOIHI2

D = STEPS_PER_TOKEN
EVENT_LEVEL = 7  # the graded events y leave at level 7 of an input step
TRACE_LEVEL = 8  # the trace one level later (level 1 of the next input step)

# Neuron models: population kind -> (module-qualified stock Lava class, where it runs).
LAVA_CLASSES = {
    "graded": "lava.proc.graded.process.GradedVec",
    "relu": "lava.proc.graded.process.GradedReluVec",
    "product": "lava.proc.prodneuron.process.ProdNeuron",
    "dense": "lava.proc.dense.process.Dense",
    "sparse": "lava.proc.sparse.process.Sparse",
    "source": "lava.proc.io.source.RingBuffer",
    "sink": "lava.proc.io.sink.RingBuffer",
    "to_chip": "lava.proc.embedded_io.spike.PyToNxAdapter",
    "from_chip": "lava.proc.embedded_io.spike.NxToPyAdapter",
}
ON_CHIP = {"graded", "relu", "product", "dense", "sparse"}


class CircuitError(UserError):
    """A model the stock circuit cannot hold. The message is one line naming the layer and the limit."""


@dataclass(frozen=True)
class Segment:
    name: str
    start: int
    size: int
    level: int  # chip step within an input step, relative to the layer's offset
    value: str  # the ``circuit.layer_int`` record holding its values ("" for readout outputs)
    block: int | None = None  # which block of the record's (n, H) values (chord knot, pre-activation)


@dataclass
class Population:
    name: str
    kind: str  # key of LAVA_CLASSES
    layer: int
    exp: int = 0  # ProdNeuron exponent
    segments: list[Segment] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def add(self, name: str, size: int, level: int, value: str, block: int | None = None) -> Segment:
        seg = Segment(name, self.size, size, level, value, block)
        self.segments.append(seg)
        return seg

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    @property
    def lava_class(self) -> str:
        return LAVA_CLASSES[self.kind]


@dataclass
class Connection:
    """``target.port += (weights @ source) << exp`` (floor when exp < 0), one chip step later."""

    name: str
    kind: str  # "dense" | "sparse"
    layer: int
    source: str
    target: str
    port: str
    exp: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]  # (target size, source size)

    def matrix(self) -> np.ndarray:
        w = np.zeros(self.shape, np.int64)
        np.add.at(w, (self.rows, self.cols), self.values)
        return w

    @property
    def synapses(self) -> int:
        return int(np.count_nonzero(self.values))


@dataclass(frozen=True)
class PhaseLine:
    layer: int
    level: int
    digit: int
    offset: int  # the layer's offset: the line pulses at offset + t * D + level - 1


@dataclass
class Netlist:
    populations: dict[str, Population]
    connections: list[Connection]
    phase_lines: list[PhaseLine]
    input_size: int
    offsets: dict[int, int]  # graph layer -> chip step of its level 0 for input step 0
    output: tuple[str, int]  # (population, level) whose values the output sink records
    event_populations: dict[int, str]  # EGRU layer -> population of its events

    def chip_steps(self, steps: int) -> int:
        pop, level = self.output
        return self.offsets[self.populations[pop].layer] + (steps - 1) * D + level + 1

    def describe(self) -> dict:
        pops = [{"name": p.name, "lava_class": p.lava_class, "layer": p.layer, "neurons": p.size,
                 **({"exp": p.exp} if p.kind == "product" else {}),
                 "segments": [{"name": s.name, "start": s.start, "size": s.size, "level": s.level}
                              for s in p.segments]} for p in self.populations.values()]
        conns = [{"name": c.name, "lava_class": LAVA_CLASSES[c.kind], "layer": c.layer, "from": f"{c.source}.s_out",
                  "to": f"{c.target}.{c.port}", "shape": list(c.shape), "synapses": c.synapses,
                  "weight_exp": c.exp, "num_weight_bits": LOIHI2.weight_bits, "num_message_bits": LOIHI2.event_bits,
                  "sign_mode": "mixed", "weights": c.name} for c in self.connections]
        return {"steps_per_input_step": D, "populations": pops, "connections": conns,
                "phase_lines": [{"layer": p.layer, "level": p.level, "digit": p.digit, "value": 256 ** p.digit}
                                for p in self.phase_lines],
                "offsets": {str(k): v for k, v in self.offsets.items()},
                "output": {"population": self.output[0], "level": self.output[1]}}


class _Builder:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.pops: dict[str, Population] = {}
        self.edges: dict[tuple, list] = {}  # (kind, layer, source, target, port, exp) -> [rows, cols, values]
        self.lines: dict[tuple[int, int, int], int] = {}  # (layer, level, digit) -> phase line index
        self.line_list: list[PhaseLine] = []
        self.offsets: dict[int, int] = {}

    def population(self, name: str, kind: str, layer: int, exp: int = 0) -> Population:
        self.pops[name] = Population(name, kind, layer, exp)
        return self.pops[name]

    def wire(self, source: tuple[Population, Segment], target: tuple[Population, Segment], port: str,
             weight, exp: int, layer: int, kind: str = "sparse") -> None:
        """Unit j of the source segment to unit j of the target segment, weight scalar or per unit."""
        (sp, ss), (tp, ts) = source, target
        n = ts.size
        w = np.broadcast_to(np.asarray(weight, np.int64), (n,))
        self._add(kind, layer, sp.name, tp.name, port, exp, ts.start + np.arange(n), ss.start + np.arange(n), w)

    def matrix(self, source: Population, col_start: int, target: tuple[Population, Segment], port: str,
               weights: np.ndarray, exp: int, layer: int) -> None:
        """A full weight block [target units, source units] (Dense)."""
        tp, ts = target
        rows, cols = np.nonzero(weights)
        self._add("dense", layer, source.name, tp.name, port, exp, ts.start + rows, col_start + cols, weights[rows, cols])

    def constant(self, target: tuple[Population, Segment], port: str, values, layer: int, level: int) -> None:
        """Per-unit constants arriving at ``level`` of every input step (phase lines, weights 2 m_d, exp -1)."""
        tp, ts = target
        values = np.broadcast_to(np.asarray(values, np.int64), (ts.size,))
        worst = int(np.abs(values).max()) if ts.size else 0
        if worst > circuit.PHASE_CONSTANT_MAX:
            value = int(values[np.abs(values).argmax()])
            raise CircuitError(f"layer {layer}: constant {value} of {tp.name}.{ts.name} does not fit the "
                               f"24-bit range of the phase lines' three digits (|c| <= {circuit.PHASE_CONSTANT_MAX})")
        for d, digits in enumerate(circuit.phase_digit_arrays(values)):
            units = np.flatnonzero(digits)
            if units.size:
                line = self._line(layer, level, d)
                self._add("sparse", layer, "phase", tp.name, port, -1, ts.start + units,
                          np.full(units.size, line), 2 * digits[units])

    def _line(self, layer: int, level: int, digit: int) -> int:
        key = (layer, level, digit)
        if key not in self.lines:
            self.lines[key] = len(self.line_list)
            self.line_list.append(PhaseLine(layer, level, digit, self.offsets[layer]))
        return self.lines[key]

    def _add(self, kind, layer, source, target, port, exp, rows, cols, values) -> None:
        entry = self.edges.setdefault((kind, layer, source, target, port, exp), [[], [], []])
        for part, new in zip(entry, (rows, cols, values)):
            part.append(np.asarray(new, np.int64))

    def connections(self, sizes: dict[str, int]) -> list[Connection]:
        out, names = [], {}
        for (kind, layer, source, target, port, exp), (rows, cols, values) in self.edges.items():
            base = f"{source}_to_{target}_{port}"
            names[base] = names.get(base, 0) + 1
            name = base if names[base] == 1 else f"{base}_{names[base]}"
            out.append(Connection(name, kind, layer, source, target, port, exp, np.concatenate(rows),
                                  np.concatenate(cols), np.concatenate(values), (sizes[target], sizes[source])))
        return out


def _egru(b: _Builder, i: int, layer: EGRU, upstream: tuple[Population, int, int]) -> tuple[Population, int]:
    """Populations and wiring of EGRU layer i; returns the population and level that feed the next layer."""
    prof = get_loihi2()
    h, f = layer.hidden, prof.state_frac
    sig, tanh = prof.activation.sigmoid_table(f), prof.activation.tanh_table(f)
    k = circuit.layer_constants(prof, layer)
    off_grid = np.flatnonzero(circuit.on_threshold_grid(k.thr) != k.thr)
    if off_grid.size:
        step = 1 << (k.thr_exp + 1)
        raise CircuitError(f"layer {i}: threshold {int(k.thr[off_grid[0]])} (unit {off_grid[0]}) is not a multiple of "
                           f"{step}, the grid of the 8-bit reset weight; quantize with the loihi2 profile")
    p = f"l{i}_"
    pre = b.population(p + "pre", "graded", i)
    a = {name: pre.add(name, h, 1, "pre", n) for n, name in enumerate(("a_z", "a_r", "a_gx", "a_gh"))}
    relay = b.population(p + "relay", "graded", i)
    relu = b.population(p + "relu", "relu", i)
    prod = b.population(p + "prod", "product", i, circuit.PRODUCT_EXP)
    events = b.population(p + "events", "product", i, prof.state_frac - prof.event_frac)
    u_z = [relu.add(f"u_z{n}", h, 2, "u_z", n) for n in range(len(sig.knots))]
    u_r = [relu.add(f"u_r{n}", h, 2, "u_r", n) for n in range(len(sig.knots))]
    u_g = [relu.add(f"u_g{n}", h, 4, "u_g", n) for n in range(len(tanh.knots))]
    q, q1 = relu.add("q", h, 6, "q"), relu.add("q1", h, 6, "q1")
    g2, x2, x3 = relay.add("gh2", h, 2, "pre", 3), relay.add("gx2", h, 2, "pre", 2), relay.add("gx3", h, 3, "pre", 2)
    z3, z4 = relay.add("z", h, 3, "z"), relay.add("one_minus_z", h, 4, "one_minus_z")
    c = [relay.add(f"c{n}", h, n, "c") for n in range(1, 6)]
    cp, cn = relay.add("c_new", h, 6, "c_new"), relay.add("c_next", h, 7, "c_next")
    p_r, p_z = prod.add("p_r", h, 3, "p_r"), prod.add("p_z", h, 5, "p_z")
    y = events.add("y", h, EVENT_LEVEL, "y")
    src, col, src_exp_in = upstream
    kz, kr, kg = layer.kernel[:, :h].T, layer.kernel[:, h:2 * h].T, layer.kernel[:, 2 * h:].T
    rz, rr, rg = (layer.recurrent_kernel[:, :h].T, layer.recurrent_kernel[:, h:2 * h].T,
                  layer.recurrent_kernel[:, 2 * h:].T)
    for name, w in (("a_z", kz), ("a_r", kr), ("a_gx", kg)):
        b.matrix(src, col, (pre, a[name]), "a_in", w, k.in_exp, i)
    for name, w in (("a_z", rz), ("a_r", rr), ("a_gh", rg)):
        b.matrix(events, 0, (pre, a[name]), "a_in", w, k.rec_exp, i)
    for n, name in enumerate(("a_z", "a_r", "a_gx", "a_gh")):
        b.constant((pre, a[name]), "a_in", k.bias[n], i, 1)
    for units, name, table in ((u_z, "a_z", sig), (u_r, "a_r", sig)):
        for seg, knot in zip(units, table.knots):
            b.wire((pre, a[name]), (relu, seg), "a_in", IDENTITY[0], IDENTITY[1], i)
            b.constant((relu, seg), "a_in", -knot, i, 2)
    b.wire((pre, a["a_gh"]), (relay, g2), "a_in", *IDENTITY, i)
    b.wire((pre, a["a_gx"]), (relay, x2), "a_in", *IDENTITY, i)
    b.wire((relay, x2), (relay, x3), "a_in", *IDENTITY, i)
    for seg, w in zip(u_z, sig.weights):
        b.wire((relu, seg), (relay, z3), "a_in", w, sig.exp, i)
    for seg, w in zip(u_r, sig.weights):
        b.wire((relu, seg), (prod, p_r), "a_in1", w, sig.exp, i)
    b.wire((relay, g2), (prod, p_r), "a_in2", *IDENTITY, i)
    for seg, knot in zip(u_g, tanh.knots):
        b.wire((prod, p_r), (relu, seg), "a_in", *IDENTITY, i)
        b.wire((relay, x3), (relu, seg), "a_in", *IDENTITY, i)
        b.constant((relu, seg), "a_in", -knot, i, 4)
    b.wire((relay, z3), (relay, z4), "a_in", -IDENTITY[0], IDENTITY[1], i)
    b.constant((relay, z4), "a_in", 1 << circuit.GATE_FRAC, i, 4)
    b.wire((relay, z4), (prod, p_z), "a_in1", *IDENTITY, i)
    for seg, w in zip(u_g, tanh.weights):
        b.wire((relu, seg), (prod, p_z), "a_in2", w, tanh.exp, i)
    b.constant((prod, p_z), "a_in2", tanh.low, i, 5)
    b.wire((relay, c[3]), (prod, p_z), "a_in2", -IDENTITY[0], IDENTITY[1], i)
    b.wire((relay, cn), (relay, c[0]), "a_in", *IDENTITY, i)
    for before, after in zip(c[:-1], c[1:]):
        b.wire((relay, before), (relay, after), "a_in", *IDENTITY, i)
    b.wire((relay, c[4]), (relay, cp), "a_in", *IDENTITY, i)
    b.wire((prod, p_z), (relay, cp), "a_in", *k.zoneout, i)
    for seg, extra in ((q, 0), (q1, 1)):
        b.wire((relay, c[4]), (relu, seg), "a_in", *IDENTITY, i)
        b.wire((prod, p_z), (relu, seg), "a_in", *k.zoneout, i)
        b.constant((relu, seg), "a_in", -(k.thr + extra), i, 6)
    b.wire((relay, cp), (events, y), "a_in1", *IDENTITY, i)
    b.wire((relu, q), (events, y), "a_in2", IDENTITY[0], IDENTITY[1], i)
    b.wire((relu, q1), (events, y), "a_in2", -IDENTITY[0], IDENTITY[1], i)
    b.wire((relay, cp), (relay, cn), "a_in", *IDENTITY, i)
    b.wire((relu, q), (relay, cn), "a_in", -k.thr_weights, k.thr_exp, i)
    b.wire((relu, q1), (relay, cn), "a_in", k.thr_weights, k.thr_exp, i)
    if not layer.use_trace:
        return events, EVENT_LEVEL
    trace = b.population(p + "trace", "graded", i)
    tr = trace.add("trace", h, TRACE_LEVEL, "trace")
    hold = [relay.add(f"trace{n}", h, TRACE_LEVEL + n - 1, "trace") for n in range(2, D + 1)]
    b.wire((trace, tr), (relay, hold[0]), "a_in", *IDENTITY, i)
    for before, after in zip(hold[:-1], hold[1:]):
        b.wire((relay, before), (relay, after), "a_in", *IDENTITY, i)
    b.wire((relay, hold[-1]), (trace, tr), "a_in", circuit.TRACE_DECAY_WEIGHT, circuit.TRACE_EXP, i)
    b.wire((events, y), (trace, tr), "a_in", circuit.TRACE_GAIN_WEIGHT, circuit.TRACE_EXP, i)
    return trace, TRACE_LEVEL


def _readout(b: _Builder, i: int, layer, upstream: tuple[Population, int, int]) -> tuple[Population, int]:
    src, col, _ = upstream
    q = layer.quant
    pop = b.population(f"l{i}_readout", "relu" if layer.relu else "graded", i)
    seg = pop.add("out", layer.out_size, 1, "")
    b.matrix(src, col, (pop, seg), "a_in", layer.weight, q.output.frac - q.input.frac - q.weight.frac, i)
    b.constant((pop, seg), "a_in", layer.bias, i, 1)
    return pop, 1


def get_loihi2():
    from egru_deploy.profiles import get_profile

    return get_profile(LOIHI2.name)


def build(graph: Graph) -> Netlist:
    """The netlist of a graph quantized for the loihi2 profile (host front-end excluded)."""
    b = _Builder(graph)
    host = len(graph.frontend)
    input_size = int(np.prod(graph.shapes()[host]))
    source = b.population("input", "source", -1)
    source.add("x", input_size, 0, "")
    upstream, offset = (source, 0, 0), 0
    event_pops = {}
    out = None
    for i, layer in enumerate(graph.layers):
        if i < host:
            continue
        b.offsets[i] = offset
        if isinstance(layer, EGRU):
            pop, level = _egru(b, i, layer, upstream)
            event_pops[i] = f"l{i}_events"
        else:
            pop, level = _readout(b, i, layer, upstream)
        out = (pop.name, level)
        upstream, offset = (pop, 0, 0), offset + level
    pops = {name: p for name, p in b.pops.items()}
    phase = Population("phase", "source", -1)
    phase.add("lines", len(b.line_list), 0, "")
    pops["phase"] = phase
    sizes = {name: p.size for name, p in pops.items()}
    return Netlist(pops, b.connections(sizes), b.line_list, input_size, dict(b.offsets), out, event_pops)


def phase_data(net: Netlist, steps: int) -> np.ndarray:
    """What the host sends on the phase lines, (lines, chip steps)."""
    n = net.chip_steps(steps)
    data = np.zeros((len(net.phase_lines), n), np.int64)
    for k, line in enumerate(net.phase_lines):
        at = line.offset + np.arange(steps) * D + line.level - 1
        data[k, at] = 256 ** line.digit
    return data


def input_data(net: Netlist, values: np.ndarray) -> np.ndarray:
    """The input source's data for one sequence (T, I): input step t at chip step t * D, (I, chip steps)."""
    steps = values.shape[0]
    data = np.zeros((values.shape[1], net.chip_steps(steps)), values.dtype)
    data[:, np.arange(steps) * D] = values.T
    return data
