"""The Loihi 2 network of a graph: its topology as data, and the Lava processes built from it.

Topology (no Lava needed): one neuron group per EGRU/Linear layer and one Dense per weight matrix,
in Lava's layout ([out, in]).  ``run`` builds the Lava network for one input sequence at a time
(RingBuffer source -> Dense -> neurons ... -> sinks), runs it for T + latency chip steps with
``Loihi2SimCfg`` (or the run config it is given, e.g. ``Loihi2HwCfg``) and always stops it.
Outputs come back in chip time, as ``hwsim.loihi2.ChipRun``, and are realigned by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from egru_deploy import reference
from egru_deploy.errors import UserError
from egru_deploy.hwsim.loihi2 import ChipRun, Schedule, check_graph, schedule
from egru_deploy.ir import EGRU, Graph
from egru_deploy.profiles import LOIHI2

# Dense parameters: graded 24-bit events, 8-bit mixed-sign weights applied as they are (the loihi2
# profile holds even mantissas only, which Lava's truncation leaves unchanged), and no exponent
# shift: Lava's Dense shifts with floor rounding before saturation, whereas the specification
# saturates the exact sum and then shifts rounding half up, so the neurons do the shift.
NUM_MESSAGE_BITS = LOIHI2.event_bits
NUM_WEIGHT_BITS = LOIHI2.weight_bits
WEIGHT_EXP = 0
SIGN_MODE = "mixed"


@dataclass(frozen=True)
class NeuronGroup:
    name: str
    layer: int  # index in graph.layers
    process: str  # "EGRUNeurons" | "ReadoutNeurons"
    size: int  # units
    depth: int  # chip step at which it handles input step 0
    feed_port: str  # the port feeding the next layer


@dataclass(frozen=True)
class Synapses:
    """One Lava Dense: ``source.source_port`` -> weights [out, in] -> ``target.target_port``."""

    name: str
    layer: int
    source: str  # "input" (the RingBuffer source) or a neuron group
    source_port: str
    target: str
    target_port: str
    weights: np.ndarray


@dataclass(frozen=True)
class Topology:
    source_size: int  # values the RingBuffer source sends per step (the embedding width for tokens)
    groups: tuple[NeuronGroup, ...]
    synapses: tuple[Synapses, ...]
    schedule: Schedule

    @property
    def output(self) -> NeuronGroup:
        return self.groups[-1]

    def group(self, name: str) -> NeuronGroup:
        return next(g for g in self.groups if g.name == name)

    def synapses_into(self, group: str) -> list[Synapses]:
        return [s for s in self.synapses if s.target == group]

    def describe(self) -> dict:
        """JSON description: processes, shapes and connections (weights referenced by name)."""
        dense = {"num_message_bits": NUM_MESSAGE_BITS, "num_weight_bits": NUM_WEIGHT_BITS,
                 "weight_exp": WEIGHT_EXP, "sign_mode": SIGN_MODE}
        return {
            "processes": [{"name": "input", "process": "lava.proc.io.source.RingBuffer",
                           "shape": [self.source_size], "depth": 0}]
                         + [{"name": g.name, "process": g.process, "layer": g.layer, "shape": [g.size],
                             "depth": g.depth} for g in self.groups]
                         + [{"name": "output", "process": "lava.proc.io.sink.RingBuffer",
                             "shape": [self.output.size]}],
            "connections": [{"name": s.name, "process": "lava.proc.dense.process.Dense",
                             "from": f"{s.source}.{s.source_port}", "to": f"{s.target}.{s.target_port}",
                             "shape": list(s.weights.shape), "weights": s.name, **dense}
                            for s in self.synapses]
                           + [{"from": f"{self.output.name}.{self.output.feed_port}", "to": "output.a_in"}],
            "latency": self.schedule.latency,
        }


def topology(graph: Graph) -> Topology:
    sched = schedule(graph)
    groups, synapses = [], []
    source, source_port = "input", "s_out"
    host = len(graph.frontend)
    for i, layer in enumerate(graph.layers):
        if i < host:
            continue  # the host's front-end (embedding lookup, frame layers): the source sends its output
        if isinstance(layer, EGRU):
            name = f"egru{i}"
            groups.append(NeuronGroup(name, i, "EGRUNeurons", layer.hidden, sched.depths[i],
                                      "trace_out" if layer.use_trace else "s_out"))
            synapses.append(Synapses(f"dense_in{i}", i, source, source_port, name, "a_in_x", layer.kernel.T))
            synapses.append(Synapses(f"dense_rec{i}", i, name, "s_out", name, "a_in_h",
                                     layer.recurrent_kernel.T))
        else:
            name = f"readout{i}"
            groups.append(NeuronGroup(name, i, "ReadoutNeurons", layer.out_size, sched.depths[i], "s_out"))
            synapses.append(Synapses(f"dense_out{i}", i, source, source_port, name, "a_in", layer.weight))
        source, source_port = name, groups[-1].feed_port
    source_size = int(np.prod(graph.shapes()[host]))
    return Topology(source_size, tuple(groups), tuple(synapses), sched)


def check_weights(topo: Topology) -> None:
    """Refuse weights Lava's 8-bit mixed-sign Dense would not apply as they are."""
    for s in topo.synapses:
        w = s.weights
        if w.size and (np.any(w % 2) or w.min() < -(1 << NUM_WEIGHT_BITS) or w.max() >= (1 << NUM_WEIGHT_BITS)):
            raise UserError(f"{s.name}: weights must be even mantissas in [-256, 254] for Lava's 8-bit "
                            f"mixed-sign Dense; quantize with the loihi2 profile")


def source_values(graph: Graph, x: np.ndarray, saturations: dict | None = None) -> np.ndarray:
    """What the RingBuffer source sends per input step: (B, T, I) integers, or floats for a float graph.

    The host computes it: input format and front-end (``reference.quantize_input``, which adds the
    front-end's saturations to ``saturations``), or the float front-end."""
    if graph.quantized:
        return reference.quantize_input(graph, x, saturations)
    return reference.frontend_float(graph, x)


def run(graph: Graph, x: np.ndarray, run_config: Callable[[str, dict], object] | None = None,
        initial_events=None) -> ChipRun:
    """Run the Lava network on every sequence of ``x``.

    ``run_config(tag, models)`` makes the RunConfig, default ``Loihi2SimCfg``; ``tag`` is "fixed_pt"
    (the bit-accurate models) for a quantized graph, "floating_pt" for a float graph, and ``models``
    maps this network's neuron processes to their process models (``exception_proc_model_map``).
    Initial events are not supported: the EGRU processes start from zero events (one-line error).
    """
    reference.refuse_initial_events(initial_events, "the Loihi 2 Lava network")
    topo = topology(graph)
    if graph.quantized:
        check_graph(graph)
        check_weights(topo)
    saturations: dict[str, int] = {}
    values = source_values(graph, x, saturations)
    records = [_run_one(graph, topo, sequence, run_config) for sequence in values]
    for record in records:
        for key, count in record.saturations.items():
            saturations[key] = saturations.get(key, 0) + count
    n_egru = len(graph.egru_layers)
    return ChipRun(topo.schedule, values.shape[1], np.stack([r.output for r in records]),
                   [np.stack([r.events[k] for r in records]) for k in range(n_egru)],
                   [np.stack([r.spikes[k] for r in records]) for k in range(n_egru)],
                   {key: count for key, count in saturations.items() if count})


@dataclass(frozen=True)
class _SequenceRecord:
    """What the sinks and counters hold after one sequence, in chip time."""

    output: np.ndarray  # (N, O)
    events: list[np.ndarray]  # per EGRU layer (N, H)
    spikes: list[np.ndarray]  # per EGRU layer (N,)
    saturations: dict[str, int]


def _run_one(graph: Graph, topo: Topology, sequence: np.ndarray, run_config) -> _SequenceRecord:
    from egru_deploy.targets.loihi2.lava_compat import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps

    from egru_deploy.targets.loihi2.models import MODELS

    tag = "fixed_pt" if graph.quantized else "floating_pt"
    chip_steps = topo.schedule.chip_steps(sequence.shape[0])
    net = _build(graph, topo, sequence, chip_steps)
    models = {proc: MODELS[tag][type(proc)] for proc in net.processes.values()}
    config = (run_config or _simulation_config)(tag, models)
    dtype = np.int64 if graph.quantized else np.float64  # sinks return float64; integers below 2**31 are exact
    egru_groups = [g.name for g in topo.groups if g.process == "EGRUNeurons"]
    try:
        net.output_sink.run(condition=RunSteps(num_steps=chip_steps), run_cfg=config)
        _raise_failures(net)
        return _SequenceRecord(
            output=net.output_sink.data.get().T.astype(dtype),
            events=[net.event_sinks[name].data.get().T.astype(dtype) for name in egru_groups],
            spikes=[np.pad(counts, (0, chip_steps - counts.shape[0])) for counts in
                    (net.processes[name].spike_counts.get().astype(np.int64) for name in egru_groups)],
            saturations=_saturations(net, topo))
    finally:
        net.output_sink.stop()


def _raise_failures(net) -> None:
    for name, proc in net.processes.items():
        if proc.failed.get()[0]:
            message = bytes(proc.failure.get().astype(np.uint8)).rstrip(b"\0").decode(errors="replace")
            raise RuntimeError(f"Lava process {name} failed at {message}")


def _simulation_config(tag: str, models: dict):
    from lava.magma.core.run_configs import Loihi2SimCfg

    return Loihi2SimCfg(select_tag=tag, exception_proc_model_map=models)


def _saturations(net, topo: Topology) -> dict[str, int]:
    from egru_deploy.targets.loihi2.process import SATURATION_KINDS

    return {f"layer{g.layer}.{kind}": int(count) for g in topo.groups
            for kind, count in zip(SATURATION_KINDS, net.processes[g.name].saturations.get())}


@dataclass
class LavaNetwork:
    processes: dict  # group name -> neuron process
    event_sinks: dict  # EGRU group name -> sink of its events
    output_sink: object


def _build(graph: Graph, topo: Topology, sequence: np.ndarray, chip_steps: int) -> LavaNetwork:
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.utils.weightutils import SignMode

    from egru_deploy.targets.loihi2.process import EGRUNeurons, ReadoutNeurons

    steps = sequence.shape[0]
    padded = np.zeros((chip_steps, sequence.shape[1]), sequence.dtype)
    padded[:steps] = sequence  # the source cycles through its buffer: zeros after the last input
    ports = {"input": Source(data=padded.T)}
    processes = {}
    for g in topo.groups:
        layer = graph.layers[g.layer]
        params = {"start": g.depth, "steps": steps, "name": g.name,
                  **({"quant": layer.quant, "profile": graph.profile} if graph.quantized else {})}
        if g.process == "EGRUNeurons":
            processes[g.name] = EGRUNeurons(bias=layer.bias, recurrent_bias=layer.recurrent_bias, thr=layer.thr,
                                            use_trace=layer.use_trace, zoneout=layer.zoneout, **params)
        else:
            processes[g.name] = ReadoutNeurons(bias=layer.bias, relu=layer.relu, **params)
        ports[g.name] = processes[g.name]
    for s in topo.synapses:
        dense = Dense(weights=s.weights, num_message_bits=NUM_MESSAGE_BITS, num_weight_bits=NUM_WEIGHT_BITS,
                      weight_exp=WEIGHT_EXP, sign_mode=SignMode.MIXED, name=s.name)
        getattr(ports[s.source], s.source_port).connect(dense.s_in)
        dense.a_out.connect(getattr(ports[s.target], s.target_port))
    event_sinks = {}
    for g in topo.groups:
        if g.process == "EGRUNeurons":
            event_sinks[g.name] = Sink(shape=(g.size,), buffer=chip_steps)
            processes[g.name].s_out.connect(event_sinks[g.name].a_in)
    out = topo.output
    if out.name in event_sinks and out.feed_port == "s_out":
        output_sink = event_sinks[out.name]
    else:
        output_sink = Sink(shape=(out.size,), buffer=chip_steps)
        getattr(processes[out.name], out.feed_port).connect(output_sink.a_in)
    return LavaNetwork(processes, event_sinks, output_sink)


def emulate(graph: Graph, x: np.ndarray, initial_events=None) -> reference.RunResult:
    """Run on Lava's CPU simulation and realign: equals ``hwsim.loihi2.emulate`` bit for bit."""
    return run(graph, x, initial_events=initial_events).result(graph)
