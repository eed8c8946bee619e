"""Bit-accurate, batched emulator of the Loihi 2 network that ``targets.loihi2.network`` builds in Lava.

The Lava network: a RingBuffer source sends input step t at chip step t; every EGRU layer is an
``EGRUNeurons`` process fed by an input Dense and a recurrent Dense, every Linear layer a
``ReadoutNeurons`` process fed by a Dense; sinks record each process's output at every chip step.
A Dense delivers at chip step j + hop what it received at j (``profiles.LOIHI2.hop_latency`` = 1),
so the process of layer i handles input step t at chip step ``t + depth(i)`` (``schedule``) and
sends zeros outside its window of T active steps.  A recurrent Dense fits that one-step delay
exactly: step t sees the events of step t - 1.

Each process's output stream depends only on its own state and on earlier processes' streams
one hop back, so the emulator runs the processes one after another, each over its whole window
and vectorised over the batch, with the specification's arithmetic
(``reference.egru_neuron_update``, ``reference.linear_int``).  It returns what the sinks would hold
(chip time, before realignment) and counts, per chip step and neurocore, neuron updates,
messages sent and synaptic operations, using the neurocore layout of ``targets.loihi2.mapping``.
The front-end (``Graph.frontend``: an embedding, or convolutions/pooling/Linear on frames) runs on
the host with the specification's own functions (``reference.quantize_input``); the source sends
its output.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy import reference
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph, Linear, QType
from egru_deploy.profiles import LOIHI2, latency

HOP = LOIHI2.hop_latency
if HOP != 1:  # a recurrent Dense delivers after one hop; the EGRU recurrence needs exactly one step
    raise ImportError("hwsim.loihi2 assumes profiles.LOIHI2.hop_latency == 1")


@dataclass(frozen=True)
class Schedule:
    """Chip step at which each layer's process handles input step 0 (None: host-side front-end)."""

    depths: tuple[int | None, ...]
    latency: int

    def chip_steps(self, steps: int) -> int:
        return steps + self.latency


def schedule(graph: Graph) -> Schedule:
    """Depth of every layer, from ``profiles.latency`` of the graph truncated after that layer."""
    host = len(graph.frontend)  # embedding or frame layers: computed on the host, not on neurocores
    depths = tuple(None if i < host else latency(graph.with_layers(graph.layers[:i + 1]), LOIHI2)
                   for i in range(len(graph.layers)))
    return Schedule(depths, latency(graph, LOIHI2))


def chip_time(values: np.ndarray, depth: int, chip_steps: int) -> np.ndarray:
    """Place a process's T outputs (B, T, n) at chip steps depth..depth+T-1; zeros elsewhere."""
    b, steps = values.shape[:2]
    out = np.zeros((b, chip_steps) + values.shape[2:], values.dtype)
    out[:, depth:depth + steps] = values
    return out


def realign(chip_values: np.ndarray, depth: int, steps: int) -> np.ndarray:
    """The inverse of ``chip_time``: a process's T outputs out of its chip-time record."""
    return chip_values[:, depth:depth + steps]


@dataclass(frozen=True)
class CoreLayout:
    """Neurocore of every unit of every layer (None for host-side layers), as ``mapping`` assigns them."""

    unit_cores: tuple[np.ndarray | None, ...]
    n_cores: int


def one_core_per_layer(graph: Graph) -> CoreLayout:
    """A layout for runs without a mapping: each layer on its own (unbounded) core."""
    cores, n = [], 0
    for i, layer in enumerate(graph.layers):
        if i < len(graph.frontend):
            cores.append(None)
        else:
            cores.append(np.full(layer.out_size, n))
            n += 1
    return CoreLayout(tuple(cores), n)


@dataclass(frozen=True)
class Activity:
    """Counts per chip step and neurocore, summed over the ``batch`` sequences of a run."""

    neuron_updates: np.ndarray  # (chip steps, cores)
    messages: np.ndarray  # non-zero payloads sent by the neurons of the core
    synaptic_ops: np.ndarray  # synapses read on the core for arriving non-zero payloads
    batch: int

    def per_core_per_step(self, steps: int) -> dict[str, np.ndarray]:
        """Mean counts per neurocore for one input step of one sequence."""
        scale = 1.0 / (self.batch * steps)
        return {"synaptic_ops": self.synaptic_ops.sum(axis=0) * scale,
                "neuron_updates": self.neuron_updates.sum(axis=0) * scale,
                "messages": self.messages.sum(axis=0) * scale}


@dataclass
class ChipRun:
    """What a run of the Loihi 2 network leaves in its sinks (chip time), and its counters."""

    schedule: Schedule
    steps: int  # input steps T
    output: np.ndarray  # (B, T + latency, O): the output sink
    layer_events: list[np.ndarray]  # per EGRU layer (B, T + latency, H): the event sinks
    spike_counts: list[np.ndarray]  # per EGRU layer (B, T + latency): units that fired
    saturations: dict[str, int] = field(default_factory=dict)
    activity: Activity | None = None  # emulator runs only

    def result(self, graph: Graph) -> reference.RunResult:
        """Realigned outputs as a RunResult, comparable with ``reference.run_int`` / ``run_float``."""
        depths = [d for d, layer in zip(self.schedule.depths, graph.layers) if isinstance(layer, EGRU)]
        result = reference.RunResult(output=np.empty(0, np.float32))
        result.events = [realign(s, d, self.steps) for s, d in zip(self.spike_counts, depths)]
        result.hidden = [layer.hidden for layer in graph.egru_layers]
        result.saturations = dict(self.saturations)
        aligned = realign(self.output, self.schedule.latency, self.steps)
        if graph.quantized:
            result.layer_events = [realign(e, d, self.steps) for e, d in zip(self.layer_events, depths)]
            result.int_sequence = aligned
            result.sequence = output_format(graph).to_float(aligned)
        else:
            result.layer_events = [realign(e, d, self.steps).astype(np.float32)
                                   for e, d in zip(self.layer_events, depths)]
            result.sequence = aligned.astype(np.float32)
        result.output = reference.apply_output_mode(result.sequence, graph.output_mode)
        return result


def output_format(graph: Graph) -> QType:
    last = graph.layers[-1]
    return last.quant.output if isinstance(last, Linear) else QType(LOIHI2.event_bits, LOIHI2.event_frac)


def check_graph(graph: Graph) -> None:
    if graph.profile != LOIHI2.name:
        raise UserError(f"Loihi 2 runs a graph quantized for profile {LOIHI2.name!r}, "
                        f"got {graph.profile or 'a float graph'!r}; compile with --target loihi2")


def unit_fanout(weights: np.ndarray, units: int) -> np.ndarray:
    """Synapses per (presynaptic neuron, postsynaptic unit) of weights [in, k * units] (k gate blocks)."""
    nonzero = (weights != 0).reshape(weights.shape[0], -1, units)
    return nonzero.sum(axis=1)


class _Counter:
    def __init__(self, chip_steps: int, layout: CoreLayout, batch: int):
        self.layout = layout
        self.batch = batch
        shape = (chip_steps, layout.n_cores)
        self.neuron_updates = np.zeros(shape)
        self.messages = np.zeros(shape)
        self.synaptic_ops = np.zeros(shape)

    def _onehot(self, layer_index: int) -> np.ndarray:
        cores = self.layout.unit_cores[layer_index]
        onehot = np.zeros((cores.shape[0], self.layout.n_cores))
        onehot[np.arange(cores.shape[0]), cores] = 1.0
        return onehot

    def neurons(self, layer_index: int, depth: int, *sent: np.ndarray) -> None:
        """``sent``: what the layer's ports send over its window, each (B, T, units)."""
        onehot = self._onehot(layer_index)
        window = slice(depth, depth + sent[0].shape[1])
        self.neuron_updates[window] += self.batch * onehot.sum(axis=0)
        for payloads in sent:
            self.messages[window] += np.count_nonzero(payloads, axis=0) @ onehot

    def synapses(self, layer_index: int, depth: int, arriving: np.ndarray, weights: np.ndarray) -> None:
        """``arriving`` (B, T, in): payloads delivered at the layer's active steps through ``weights``."""
        per_core = unit_fanout(weights, self.layout.unit_cores[layer_index].shape[0]) @ self._onehot(layer_index)
        self.synaptic_ops[depth:depth + arriving.shape[1]] += np.count_nonzero(arriving, axis=0) @ per_core

    def activity(self) -> Activity:
        return Activity(self.neuron_updates, self.messages, self.synaptic_ops, self.batch)


def run(graph: Graph, x: np.ndarray, layout: CoreLayout | None = None, initial_events=None) -> ChipRun:
    """Emulate the Loihi 2 network of a quantized graph on inputs ``x`` (as ``reference.check_input``).

    ``initial_events`` (``reference.check_initial_events``): each EGRU process's events before its
    first step, as if its recurrent Dense had carried them in (Lava's network does not take them).
    """
    check_graph(graph)
    sched = schedule(graph)
    layout = layout or one_core_per_layer(graph)
    saturations: dict[str, int] = {}
    source = reference.quantize_input(graph, x, saturations)  # the host's part: input format, front-end
    batch, steps = source.shape[:2]
    initial = iter(reference.check_initial_events(graph, initial_events, batch))
    n = sched.chip_steps(steps)
    counter = _Counter(n, layout, batch)
    stream = chip_time(source, 0, n)  # the source sends input step t at chip step t
    layer_events, spike_counts = [], []
    for i, layer in enumerate(graph.layers):
        depth = sched.depths[i]
        if depth is None:
            continue
        arriving = realign(stream, depth - HOP, steps)  # sent one hop earlier by the previous process
        sat: dict[str, int] = {}
        if isinstance(layer, EGRU):
            y0 = next(initial)
            events, traces, counts = reference.egru_layer_int(LOIHI2, layer, arriving, sat, y0)
            first = np.zeros_like(events[:, :1]) if y0 is None else y0[:, None]
            previous_events = np.concatenate([first, events[:, :-1]], axis=1)
            counter.synapses(i, depth, arriving, layer.kernel)
            counter.synapses(i, depth, previous_events, layer.recurrent_kernel)
            counter.neurons(i, depth, events, *([traces] if layer.use_trace else []))
            layer_events.append(chip_time(events, depth, n))
            spike_counts.append(chip_time(counts, depth, n))
            outputs = traces if layer.use_trace else events
        else:
            outputs = reference.linear_int(LOIHI2, layer, arriving, sat)
            counter.synapses(i, depth, arriving, layer.weight.T)
            counter.neurons(i, depth, outputs)
        saturations.update({f"layer{i}.{kind}": count for kind, count in sat.items()})
        stream = chip_time(outputs, depth, n)
    return ChipRun(sched, steps, stream, layer_events, spike_counts, saturations, counter.activity())


def emulate(graph: Graph, x: np.ndarray, layout: CoreLayout | None = None,
            initial_events=None) -> reference.RunResult:
    """Emulate and realign: the result equals ``reference.run_int(graph, x, initial_events)`` exactly."""
    return run(graph, x, layout, initial_events).result(graph)
