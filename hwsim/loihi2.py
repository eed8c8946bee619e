"""Bit-accurate, batched emulator of the Loihi 2 stock-process network (``targets.loihi2.netlist``).

Every population of the netlist is stateless and silent except at its own level of each input step
(``egru_deploy.circuit``), so the emulator evaluates the circuit one input step at a time with the
specification's own function (``circuit.layer_int``, recording every neuron group) and places the
values the sinks would hold at their chip steps: a layer's level-k neurons act at chip step
``offset + t * D + k``.  It then counts, per neurocore of the mapping, neuron updates (every neuron of a
process is updated every chip step), messages (non-zero payloads sent) and synaptic operations (synapses
read for arriving non-zero payloads), from the recorded values and the netlist's connections.
The host's part (input format, front-end, phase lines) is counted apart.

``run_bundle`` is how ``egru-deploy emulate --backend hwsim`` reaches it, as for SpiNNaker2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy import circuit, reference
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph, Linear, QType
from egru_deploy.profiles import LOIHI2, get_profile

D = circuit.STEPS_PER_TOKEN


def check_graph(graph: Graph) -> None:
    if graph.profile != LOIHI2.name:
        raise UserError(f"Loihi 2 runs a graph quantized for profile {LOIHI2.name!r}, "
                        f"got {graph.profile or 'a float graph'!r}; compile with --target loihi2")


def chip_time(values: np.ndarray, at: int, chip_steps: int) -> np.ndarray:
    """Values (B, T, ...) of one neuron group placed at chip steps ``at + t * D``; zeros elsewhere."""
    b, steps = values.shape[:2]
    out = np.zeros((b, chip_steps) + values.shape[2:], values.dtype)
    out[:, at + D * np.arange(steps)] = values
    return out


def realign(chip_values: np.ndarray, at: int, steps: int) -> np.ndarray:
    """The inverse of ``chip_time``."""
    return chip_values[:, at + D * np.arange(steps)]


def output_format(graph: Graph) -> QType:
    last = graph.layers[-1]
    return last.quant.output if isinstance(last, Linear) else QType(LOIHI2.event_bits, LOIHI2.event_frac)


@dataclass(frozen=True)
class Activity:
    """Totals over a run: per neuron of every population, summed over the batch and all chip steps."""

    messages: dict[str, np.ndarray]  # population -> non-zero payloads sent, per neuron
    synaptic_ops: dict[str, np.ndarray]  # population -> synapses read, per receiving neuron
    host_messages: int  # input and phase-line payloads sent by the host
    batch: int
    steps: int  # input steps per sequence


@dataclass
class ChipRun:
    """What a run of the Loihi 2 network leaves in its sinks (chip time), and its counters."""

    netlist: object  # targets.loihi2.netlist.Netlist
    steps: int  # input steps T
    output: np.ndarray  # (B, N, O): the output sink
    layer_events: list[np.ndarray]  # per EGRU layer (B, N, H): the event sinks
    spike_counts: list[np.ndarray]  # per EGRU layer (B, N): units that fired, at the events' step
    saturations: dict[str, int] = field(default_factory=dict)
    activity: Activity | None = None  # emulator runs only

    def result(self, graph: Graph) -> reference.RunResult:
        """Realigned outputs as a RunResult, comparable with ``reference.run_int``."""
        net = self.netlist
        egru = sorted(net.event_populations)
        at = [net.offsets[i] + net.populations[net.event_populations[i]].segments[0].level for i in egru]
        result = reference.RunResult(output=np.empty(0, np.float32))
        result.events = [realign(s, a, self.steps) for s, a in zip(self.spike_counts, at)]
        result.hidden = [graph.layers[i].hidden for i in egru]
        result.saturations = dict(self.saturations)
        pop, level = net.output
        aligned = realign(self.output, net.offsets[net.populations[pop].layer] + level, self.steps)
        result.layer_events = [realign(e, a, self.steps) for e, a in zip(self.layer_events, at)]
        result.int_sequence = aligned
        result.sequence = output_format(graph).to_float(aligned)
        result.output = reference.apply_output_mode(result.sequence, graph.output_mode)
        return result


def _active(values: np.ndarray) -> np.ndarray:
    """Non-zero payloads per neuron over the batch and all input steps, (n,) from (B, T, n)."""
    return np.count_nonzero(values, axis=(0, 1)).astype(np.float64)


def _population_active(pop, record: dict) -> np.ndarray:
    """``_active`` of a population, segment by segment from a layer's record (each at its own level)."""
    return np.concatenate([_active(record[seg.value][:, :, seg.block] if seg.block is not None
                                   else record[seg.value]) for seg in pop.segments])


def run(graph: Graph, x: np.ndarray, initial_events=None) -> ChipRun:
    """Emulate the Loihi 2 network of a quantized graph on inputs ``x`` (as ``reference.check_input``).

    ``initial_events``: each EGRU's events before its first step, as if its recurrent connection had
    carried them in (the Lava network does not take them)."""
    from egru_deploy.targets.loihi2.netlist import build, phase_data

    check_graph(graph)
    profile = get_profile(graph.profile)
    net = build(graph)
    saturations: dict[str, int] = {}
    values = reference.quantize_input(graph, x, saturations)  # the host's part: input format, front-end
    batch, steps = values.shape[:2]
    initial = iter(reference.check_initial_events(graph, initial_events, batch))
    n = net.chip_steps(steps)
    active = {"input": _active(values)}  # population -> non-zero payloads sent per neuron
    layer_events, spike_counts = [], []
    for i, layer in enumerate(graph.layers):
        if i not in net.offsets:
            continue
        sat: dict[str, int] = {}
        if isinstance(layer, EGRU):
            record: dict = {}
            events, traces, counts = circuit.layer_int(profile, layer, values, sat, next(initial), record)
            for name in (f"l{i}_pre", f"l{i}_relay", f"l{i}_relu", f"l{i}_prod", f"l{i}_events", f"l{i}_trace"):
                if name in net.populations:
                    active[name] = _population_active(net.populations[name], record)
            at = net.offsets[i] + net.populations[f"l{i}_events"].segments[0].level
            layer_events.append(chip_time(events, at, n))
            spike_counts.append(chip_time(counts, at, n))
            values = traces if layer.use_trace else events
        else:
            values = circuit.linear_int(profile, layer, values, sat)
            active[f"l{i}_readout"] = _active(values)
        saturations.update({f"layer{i}.{kind}": count for kind, count in sat.items()})
    pop, level = net.output
    output = chip_time(values, net.offsets[net.populations[pop].layer] + level, n)
    host = int(active["input"].sum()) + batch * int(np.count_nonzero(phase_data(net, steps)))
    activity = _activity(net, active, host, batch, steps)
    return ChipRun(net, steps, output, layer_events, spike_counts, saturations, activity)


def _activity(net, active: dict, host_messages: int, batch: int, steps: int) -> Activity:
    messages = {name: a for name, a in active.items() if name != "input"}  # sent by the chip's neurons
    # every phase line pulses once per input step of every sequence
    active = {**active, "phase": np.full(net.populations["phase"].size, float(batch * steps))}
    synaptic_ops = {name: np.zeros(p.size) for name, p in net.populations.items() if p.kind != "source"}
    for c in net.connections:
        np.add.at(synaptic_ops[c.target], c.rows, active[c.source][c.cols] * (c.values != 0))
    return Activity(messages, synaptic_ops, host_messages, batch, steps)


def emulate(graph: Graph, x: np.ndarray, initial_events=None) -> reference.RunResult:
    """Emulate and realign: the result equals ``reference.run_int(graph, x, initial_events)`` exactly."""
    return run(graph, x, initial_events).result(graph)


def run_bundle(bundle_dir, x: np.ndarray, output_mode: str | None = None,
               initial_events=None) -> reference.RunResult:
    """``emulate --backend hwsim`` of a Loihi 2 bundle, with the chip counts of its mapping."""
    from egru_deploy.targets.loihi2.mapping import assign
    from egru_deploy.targets.loihi2.run import bundle_graph

    graph = bundle_graph(bundle_dir, output_mode)
    chip_run = run(graph, x, initial_events=initial_events)
    result = chip_run.result(graph)
    result.hardware = assign(chip_run.netlist).hardware_summary(chip_run.activity)
    return result
