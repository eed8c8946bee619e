"""Lava objects of a Loihi 2 netlist (``targets.loihi2.netlist``), and running them.

Every population is a stock Lava neuron process (``GradedVec``, ``GradedReluVec``, ``ProdNeuron`` with
vth = 0), every connection a stock ``Dense`` or ``Sparse`` with 8-bit mixed-sign weights, 24-bit graded
messages and the connection's ``weight_exp``.  The host side is Lava's ``RingBuffer`` source (the input
and the phase lines) and sinks, joined to the chip through the Loihi 2 adapters of ``lava.proc.embedded_io``
(``PyToNxAdapter`` / ``NxToPyAdapter``, 24-bit, as ``lava/networks/gradedvecnetwork.py`` does); in the CPU
simulation, where public Lava has no such module, ``adapters.py``'s pass-through stand-ins take their place.

``run`` builds the network for one sequence at a time, runs it for ``netlist.chip_steps`` chip steps with
the run configuration it is given (default ``Loihi2SimCfg``, the bit-accurate ``fixed_pt`` models) and
always stops it.  The sinks hold chip time; ``hwsim.loihi2.ChipRun`` realigns them with the same code as
the emulator.  Sink payloads are 24-bit, sign-extended as ``OutputVec.get_data`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from egru_deploy import reference
from egru_deploy.errors import UserError
from egru_deploy.hwsim.loihi2 import ChipRun, check_graph
from egru_deploy.ir import Graph
from egru_deploy.profiles import LOIHI2
from egru_deploy.targets.loihi2.netlist import Netlist, build, input_data, phase_data


def check_weights(net: Netlist) -> None:
    """Refuse weights Lava's 8-bit mixed-sign Dense/Sparse would not apply as they are."""
    for c in net.connections:
        w = c.values
        if w.size and (np.any(w % 2) or w.min() < -256 or w.max() > 254):
            raise UserError(f"{c.name}: weights must be even mantissas in [-256, 254] for Lava's 8-bit mixed-sign "
                            f"{c.kind.capitalize()}; quantize with the loihi2 profile")


def sign_extend_24(values: np.ndarray) -> np.ndarray:
    """24-bit payloads from the chip as signed integers (``lava/networks/gradedvecnetwork.py``)."""
    v = np.asarray(values).astype(np.int64) & 0xFFFFFF
    return np.where(v >= 1 << 23, v - (1 << 24), v)


def run(graph: Graph, x: np.ndarray, run_config: Callable[[dict], object] | None = None,
        initial_events=None, board: bool = False) -> ChipRun:
    """Run the Lava network on every sequence of ``x`` (one network per sequence).

    ``run_config(processes)`` makes the RunConfig from the built network's processes (name -> process);
    default ``Loihi2SimCfg`` with the fixed_pt models.  ``board`` uses lava-loihi's adapters.
    """
    reference.refuse_initial_events(initial_events, "the Loihi 2 Lava network")
    check_graph(graph)
    net = build(graph)
    check_weights(net)
    saturations: dict[str, int] = {}
    values = reference.quantize_input(graph, x, saturations)
    records = [_run_one(net, sequence, run_config, board) for sequence in values]
    egru = sorted(net.event_populations)
    return ChipRun(net, values.shape[1], np.stack([r.output for r in records]),
                   [np.stack([r.events[i] for r in records]) for i in egru],
                   [np.stack([r.spikes[i] for r in records]) for i in egru],
                   {key: count for key, count in saturations.items() if count})


@dataclass(frozen=True)
class _SequenceRecord:
    output: np.ndarray  # (N, O) chip time
    events: dict[int, np.ndarray]  # EGRU layer -> (N, H)
    spikes: dict[int, np.ndarray]  # EGRU layer -> (N,) units that fired, at the events' chip step


def simulation_config(processes: dict):
    """``Loihi2SimCfg`` with every process's bit-accurate fixed_pt model chosen explicitly."""
    from lava.magma.core.run_configs import Loihi2SimCfg

    from egru_deploy.targets.loihi2.standins.adapters import simulation_models

    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=simulation_models())


def _run_one(net: Netlist, sequence: np.ndarray, run_config, board: bool) -> _SequenceRecord:
    from egru_deploy.targets.loihi2.lava_compat import import_lava

    import_lava()
    from lava.magma.core.run_conditions import RunSteps

    steps = sequence.shape[0]
    chip_steps = net.chip_steps(steps)
    lava_net = build_lava(net, sequence, chip_steps, board)
    config = (run_config or simulation_config)(lava_net.processes)
    first = lava_net.output_sink
    try:
        first.run(condition=RunSteps(num_steps=chip_steps), run_cfg=config)
        output = sign_extend_24(lava_net.output_sink.data.get().T)
        events = {i: sign_extend_24(s.data.get().T) for i, s in lava_net.event_sinks.items()}
        spikes = {}
        for i, sink in lava_net.fire_sinks.items():
            relu = net.populations[f"l{i}_relu"]
            q, q1 = relu.segment("q"), relu.segment("q1")
            data = sign_extend_24(sink.data.get().T)  # (N, relu size)
            fired = (data[:, q.start:q.start + q.size] - data[:, q1.start:q1.start + q1.size]).sum(axis=1)
            spikes[i] = np.concatenate([[0], fired[:-1]])  # at the events' step, one level after q and q1
        return _SequenceRecord(output, events, spikes)
    finally:
        first.stop()


@dataclass
class LavaNetwork:
    processes: dict  # name -> Lava process (populations, connections, host side)
    event_sinks: dict  # EGRU layer -> sink of its events
    fire_sinks: dict  # EGRU layer -> sink of its ReLU population (q and q1 give the spike count)
    output_sink: object


def build_lava(net: Netlist, sequence: np.ndarray, chip_steps: int, board: bool = False) -> LavaNetwork:
    """The Lava processes of ``net`` for one input sequence (T, I)."""
    from scipy.sparse import csr_matrix

    from lava.proc.dense.process import Dense
    from lava.proc.graded.process import GradedReluVec, GradedVec
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.prodneuron.process import ProdNeuron
    from lava.proc.sparse.process import Sparse
    from lava.utils.weightutils import SignMode

    from egru_deploy.targets.loihi2.standins.adapters import adapters

    to_chip, from_chip = adapters(board)
    bits = LOIHI2.event_bits
    procs: dict = {}
    outports: dict = {}
    host = {"input": input_data(net, sequence), "phase": phase_data(net, sequence.shape[0])}
    for name, data in host.items():
        if data.shape[0] == 0:
            continue
        procs[f"{name}_source"] = Source(data=data.astype(np.int32))
        procs[f"{name}_to_chip"] = to_chip(shape=(data.shape[0],), num_message_bits=bits)
        procs[f"{name}_source"].s_out.connect(procs[f"{name}_to_chip"].inp)
        outports[name] = procs[f"{name}_to_chip"].out
    for pop in net.populations.values():
        if pop.kind == "source":
            continue
        if pop.kind == "product":
            proc = ProdNeuron(shape=(pop.size,), vth=0, exp=pop.exp)
        else:
            proc = (GradedVec if pop.kind == "graded" else GradedReluVec)(shape=(pop.size,), vth=0)
        procs[pop.name] = proc
        outports[pop.name] = proc.s_out
    for c in net.connections:
        common = dict(num_message_bits=bits, num_weight_bits=LOIHI2.weight_bits, weight_exp=c.exp,
                      sign_mode=SignMode.MIXED, name=c.name)
        if c.kind == "dense":
            conn = Dense(weights=c.matrix(), **common)
        else:
            conn = Sparse(weights=csr_matrix((c.values, (c.rows, c.cols)), shape=c.shape), **common)
        procs[c.name] = conn
        outports[c.source].connect(conn.s_in)
        conn.a_out.connect(getattr(procs[c.target], c.port))

    def sink(name: str, pop: str, size: int):
        adapter = from_chip(shape=(size,), num_message_bits=bits)
        procs[f"{name}_from_chip"] = adapter
        procs[name] = Sink(shape=(size,), buffer=chip_steps)
        outports[pop].connect(adapter.inp)
        adapter.out.connect(procs[name].a_in)
        return procs[name]

    event_sinks = {i: sink(f"events{i}_sink", name, net.populations[name].size)
                   for i, name in net.event_populations.items()}
    fire_sinks = {i: sink(f"fire{i}_sink", f"l{i}_relu", net.populations[f"l{i}_relu"].size)
                  for i in net.event_populations}
    out_pop = net.output[0]
    output_sink = next((event_sinks[i] for i, name in net.event_populations.items() if name == out_pop), None)
    if output_sink is None:
        output_sink = sink("output_sink", out_pop, net.populations[out_pop].size)
    return LavaNetwork(procs, event_sinks, fire_sinks, output_sink)


def emulate(graph: Graph, x: np.ndarray, initial_events=None) -> reference.RunResult:
    """Run on Lava's CPU simulation and realign: equals ``hwsim.loihi2.emulate`` bit for bit."""
    return run(graph, x, initial_events=initial_events).result(graph)
