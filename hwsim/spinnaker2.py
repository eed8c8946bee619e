"""Bit-accurate, batched emulator of an EGRU network mapped onto SpiNNaker2 PEs.

It emulates what the SpiNNaker2 compiler wrote into a bundle (``spinnaker2/placement.json``: PEs, unit
slices, weight formats, routing tables) beside the quantized graph; the emulation imports nothing from
``egru_deploy.targets``.  Bundles are read through the target's checked reader
(``targets/spinnaker2/loader.py``), the one QEMU and the board path use, so every backend refuses the
same malformed bundles.  Per tick, every PE consumes the packets routed to it in the previous tick
(one hop = one tick, ``profiles.latency``), updates the units it owns with the spinnaker2 profile's
arithmetic (``reference.egru_neuron_update`` / ``reference.linear_int`` on its slice: the C PE
program is checked against these outputs under QEMU) and sends one packet per non-zero value.
Routing is emulated by walking the routers' key/mask tables; a packet that reaches the wrong
cores, or none, is an error.

Counted per PE: packets received and sent, synaptic operations (weights touched: the whole row of
a dense slice, the non-zeros of a CSR row), memory.  Time per step and energy are ESTIMATES from
cycle counts per operation (below) and the published 150/300 MHz PE clock; QEMU is not
cycle-accurate and SpiNNaker2 has no public per-operation energy figures (see DESIGN.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from egru_deploy import reference
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph, Linear, QType
from egru_deploy.profiles import get_profile

CLOCKS_HZ = (150e6, 300e6)  # published PE clock settings
# Cycle ESTIMATES of the PE kernel's work (Cortex-M4 instruction timings, ARM DDI 0439: loads 2,
# 64-bit load/store 3, SMLAL 1, taken branch 2-4): per packet (interrupt entry, source lookup,
# loop set-up), per synaptic op (weight load, 64-bit accumulate), per unit update (saturations,
# three table look-ups, multiplies), per packet sent, per tick (timer interrupt).
CYCLES = {"packet_received": 40, "synaptic_op": 8, "egru_unit_update": 110, "linear_unit_update": 25,
          "packet_sent": 15, "tick": 200}
# ASSUMED energies (no public per-op SpiNNaker2 figures): a Cortex-M4F-class PE with its SRAM in
# 22 nm FDSOI near 0.5 V is taken at 10 pJ per active cycle, a packet at 10 pJ per router hop.
ENERGY_PJ_PER_CYCLE = 10.0
ENERGY_PJ_PER_PACKET_HOP = 10.0
LINK_STEPS = {"E": (1, 0), "W": (-1, 0), "N": (0, 1), "S": (0, -1)}


class RoutingError(UserError):
    """The routing tables do not deliver a population to exactly its consumers (one line)."""


@dataclass(frozen=True)
class System:
    """A compiled SpiNNaker2 deployment: the quantized graph and the compiler's placement."""

    graph: Graph
    placement: dict

    @property
    def pes(self) -> list[dict]:
        return self.placement["pes"]

    def packet_key(self, population: int, unit, channel: int = 0):
        layout = self.placement["key_layout"]
        return (population << layout["population_shift"]) | (channel * layout["channel_bit"]) | unit


def load(bundle_dir) -> System:
    """A spinnaker2 bundle's graph and placement, checked whole (placement, images) by the target's reader."""
    from egru_deploy.targets.spinnaker2 import loader  # at call time: the loader imports this module

    return loader.load(bundle_dir).system


# --------------------------------------------------------------------------- routing


def _neighbour(chip: int, link: str, mesh: tuple[int, int]) -> int:
    x, y = chip % mesh[0] + LINK_STEPS[link][0], chip // mesh[0] + LINK_STEPS[link][1]
    if not (0 <= x < mesh[0] and 0 <= y < mesh[1]):
        raise RoutingError(f"chip {chip}: link {link} leaves the board")
    return y * mesh[0] + x


def deliver(system: System, key: int, source_chip: int) -> tuple[list[tuple[int, int]], bool, int]:
    """Walk the routers for one packet: (chip, core) deliveries, host delivery, chip-to-chip hops."""
    routing, board = system.placement["routing"], system.placement["board"]
    mesh = tuple(board["mesh"])
    cores, host, hops = [], False, 0
    pending = [(source_chip, None)]
    while pending:
        chip, arrived = pending.pop()
        entry = next((e for e in routing.get(str(chip), []) if key & e[1] == e[0]), None)
        if entry is None:
            if arrived is None:
                raise RoutingError(f"chip {chip}: no routing entry for key 0x{key:08x} sent from this chip")
            links = [arrived]  # default route: straight on
        else:
            _, _, links, entry_cores, entry_host = entry
            cores += [(chip, core) for core in entry_cores]
            host |= entry_host
        for link in links:
            hops += 1
            if hops > board["chips"] * 4:
                raise RoutingError(f"key 0x{key:08x}: packet loops between chips")
            pending.append((_neighbour(chip, link, mesh), link))
    return cores, host, hops


def check_routing(system: System) -> dict[tuple[int, int], int]:
    """Every population reaches exactly its consumers; returns hops per packet of each population."""
    consumers: dict[int, list[tuple[int, int]]] = {}
    for pe in system.pes:
        for key, _ in pe["sources"]:
            consumers.setdefault(key, []).append((pe["chip"], pe["core"]))
    output = system.placement["output"]
    host_chip = system.placement["board"]["host_chip"]
    sources = [(0, 0, host_chip, 0, system.placement["input_size"])]
    for pe in system.pes:
        for channel in (0, 1):
            if (pe["population"] << 1 | channel) in consumers or \
                    (pe["population"], channel) == (output["population"], output["channel"]):
                sources.append((pe["population"], channel, pe["chip"], *pe["units"]))
    hops = {}
    for population, channel, chip, start, stop in sources:
        expected = sorted(consumers.get(population << 1 | channel, []))
        to_host = (population, channel) == (output["population"], output["channel"])
        for unit in {start, stop - 1}:
            key = system.packet_key(population, unit, channel)
            cores, host, n = deliver(system, key, chip)
            if sorted(cores) != expected or host != to_host:
                raise RoutingError(f"key 0x{key:08x} from chip {chip} reaches {len(cores)} cores"
                                   f"{' and the host' if host else ''}; its consumers are {len(expected)} cores"
                                   f"{' and the host' if to_host else ''}")
            hops[(population, channel)] = max(hops.get((population, channel), 0), n)
    return hops


# --------------------------------------------------------------------------- emulation


@dataclass
class PEActivity:
    """Per PE totals over the batch and steps of one run."""

    index: int
    layer: int
    units: int
    memory_bytes: int
    packets_received: int = 0
    synaptic_ops: int = 0
    packets_sent: int = 0
    cycles: np.ndarray | None = None  # (B, T) estimated cycles per step
    saturations: dict = field(default_factory=dict)


@dataclass
class Spinnaker2Result:
    run: reference.RunResult  # equal to reference.run_int (already shifted back by the latency)
    pes: list[PEActivity]
    latency: int
    estimates: dict
    layer_inputs: list[np.ndarray] = field(default_factory=list)  # per chip layer: (B, T, I) values received
    layer_values: list[np.ndarray] = field(default_factory=list)  # per chip layer: (B, T, H) events / outputs
    layer_traces: list[np.ndarray | None] = field(default_factory=list)

    def per_step(self) -> dict:
        steps = self.run.int_sequence.shape[0] * self.run.int_sequence.shape[1]
        return {
            "packets_received": sum(p.packets_received for p in self.pes) / steps,
            "synaptic_ops": sum(p.synaptic_ops for p in self.pes) / steps,
            "packets_sent": sum(p.packets_sent for p in self.pes) / steps,
        }


def _row_ops(weights: np.ndarray, fmt: str) -> np.ndarray:
    """Synaptic operations one packet of each source row costs this PE."""
    if fmt == "dense":
        return np.full(weights.shape[0], weights.shape[1], np.float64)
    return np.count_nonzero(weights, axis=1).astype(np.float64)


def _gate_columns(hidden: int, units: tuple[int, int]) -> np.ndarray:
    """Columns of the [*, 3H] kernels that a PE owning ``units`` holds: its z, r and g rows."""
    u0, u1 = units
    return np.concatenate([np.arange(g * hidden + u0, g * hidden + u1) for g in range(3)])


def _egru_slice(layer: EGRU, units: tuple[int, int]) -> EGRU:
    cols = _gate_columns(layer.hidden, units)
    return replace(layer, kernel=layer.kernel[:, cols], recurrent_kernel=layer.recurrent_kernel[:, cols],
                   bias=layer.bias[cols], recurrent_bias=layer.recurrent_bias[cols], thr=layer.thr[units[0]:units[1]])


def _run_egru(profile, layer: EGRU, pes: list[dict], values: np.ndarray, activity: list[PEActivity],
              initial_events: np.ndarray | None = None):
    """All PEs of the layer in one vectorized update: each receives the same packets (``check_routing``)
    and updates its units independently, so the layer is the concatenation of its PEs.  A step in
    which something saturates is replayed PE by PE to attribute the counts.  ``initial_events``: the
    layer's own packets received at its first tick (default none)."""
    b, t_steps, _ = values.shape
    h = layer.hidden
    slices = [_egru_slice(layer, tuple(pe["units"])) for pe in pes]
    columns = [_gate_columns(h, tuple(pe["units"])) for pe in pes]
    acc_x = reference.int_matmul(values, layer.kernel)
    state = reference.egru_int_state(b, h)
    events = np.zeros((b, t_steps, h), np.int64)
    traces = np.zeros((b, t_steps, h), np.int64)
    fired = np.zeros((b, t_steps), np.int64)
    previous = np.zeros((b, h), np.int64) if initial_events is None else initial_events  # received this tick
    recurrent_sums = reference.ExactSums(layer.recurrent_kernel)
    for t in range(t_steps):
        acc_h = recurrent_sums(previous)
        before = reference.EGRUIntState(state.c, state.events, state.trace)  # the update rebinds, never mutates
        saturated: dict[str, int] = {}
        fired[:, t] = reference.egru_neuron_update(profile, layer, acc_x[:, t], acc_h, state, saturated).sum(axis=1)
        if saturated:
            for pe, s, cols, act in zip(pes, slices, columns, activity):
                u0, u1 = pe["units"]
                part = reference.EGRUIntState(before.c[:, u0:u1], before.events[:, u0:u1], before.trace[:, u0:u1])
                reference.egru_neuron_update(profile, s, acc_x[:, t, cols], acc_h[:, cols], part, act.saturations)
        events[:, t], traces[:, t] = state.events, state.trace
        previous = events[:, t]
    x_active = values != 0
    h_active = np.concatenate([np.zeros((b, 1, h), bool) if initial_events is None else initial_events[:, None] != 0,
                               events[:, :-1] != 0], axis=1)  # sent at the tick before
    for pe, s, act in zip(pes, slices, activity):
        u0, u1 = pe["units"]
        x_ops = x_active @ _row_ops(s.kernel, pe["x_format"])
        h_ops = h_active @ _row_ops(s.recurrent_kernel, pe["h_format"])
        received = x_active.sum(axis=2) + h_active.sum(axis=2)
        sent = np.count_nonzero(events[..., u0:u1], axis=2)
        if layer.use_trace:
            sent = sent + np.count_nonzero(traces[..., u0:u1], axis=2)
        act.packets_received, act.synaptic_ops = int(received.sum()), int(round((x_ops + h_ops).sum()))
        act.packets_sent = int(sent.sum())
        act.cycles = (CYCLES["tick"] + CYCLES["packet_received"] * received + CYCLES["synaptic_op"] * (x_ops + h_ops)
                      + CYCLES["egru_unit_update"] * (u1 - u0) + CYCLES["packet_sent"] * sent)
    return events, traces, fired


def _run_linear(profile, layer: Linear, pes: list[dict], values: np.ndarray, activity: list[PEActivity]):
    out = np.zeros((*values.shape[:2], layer.out_size), np.int64)
    x_active = values != 0
    for pe, act in zip(pes, activity):
        u0, u1 = pe["units"]
        part = replace(layer, weight=layer.weight[u0:u1], bias=layer.bias[u0:u1])
        out[..., u0:u1] = reference.linear_int(profile, part, values, act.saturations)
        ops = x_active @ _row_ops(part.weight.T, pe["x_format"])
        received = x_active.sum(axis=2)
        sent = np.count_nonzero(out[..., u0:u1], axis=2)
        act.packets_received, act.synaptic_ops = int(received.sum()), int(round(ops.sum()))
        act.packets_sent = int(sent.sum())
        act.cycles = (CYCLES["tick"] + CYCLES["packet_received"] * received + CYCLES["synaptic_op"] * ops
                      + CYCLES["linear_unit_update"] * (u1 - u0) + CYCLES["packet_sent"] * sent)
    return out


def simulate(system: System, x: np.ndarray, keep_streams: bool = False, initial_events=None) -> Spinnaker2Result:
    """Run the mapped network on input ``x``; ``keep_streams`` keeps every layer's packets (for QEMU).

    ``initial_events`` (``reference.check_initial_events``): each EGRU layer's events before its first
    step, as packets its PEs receive at their first tick.  The PE streams for QEMU do not carry them.
    """
    graph = system.graph
    profile = get_profile(graph.profile)
    hops = check_routing(system)
    memory = system.placement["memory"]
    host_saturations: dict[str, int] = {}  # the host computes the input format and the front-end
    values = reference.quantize_input(graph, x, host_saturations)  # refuses 0 samples or 0 steps, as every backend
    if keep_streams:
        reference.refuse_initial_events(initial_events, "the SpiNNaker2 PE packet streams (QEMU)")
    initial = iter(reference.check_initial_events(graph, initial_events, values.shape[0]))
    input_packets = int(np.count_nonzero(values))
    result = reference.RunResult(output=np.empty(0, np.float32))
    activity = [PEActivity(pe["index"], pe["layer"], pe["units"][1] - pe["units"][0],
                           pe["image_bytes"] + memory["runtime_bytes"] + memory["code_bytes"]) for pe in system.pes]
    inputs, outputs, traces_kept = [], [], []
    for plan in system.placement["layers"]:
        layer = graph.layers[plan["layer"]]
        first, stop = plan["pes"]
        pes, acts = system.pes[first:stop], activity[first:stop]
        if keep_streams:
            inputs.append(values)
        if isinstance(layer, EGRU):
            events, traces, fired = _run_egru(profile, layer, pes, values, acts, next(initial))
            result.events.append(fired)
            result.hidden.append(layer.hidden)
            result.layer_events.append(events)
            values = traces if layer.use_trace else events
            if keep_streams:
                outputs.append(events)
                traces_kept.append(traces if layer.use_trace else None)
        else:
            values = _run_linear(profile, layer, pes, values, acts)
            if keep_streams:
                outputs.append(values)
                traces_kept.append(None)
    saturations = dict(host_saturations)
    for act in activity:
        for kind, n in act.saturations.items():
            key = f"layer{act.layer}.{kind}"
            saturations[key] = saturations.get(key, 0) + n
    result.saturations = saturations
    result.int_sequence = values
    result.sequence = output_format(system).to_float(values)
    result.output = reference.apply_output_mode(result.sequence, graph.output_mode)
    latency = len(system.placement["layers"])
    estimates = _estimates(system, activity, hops, values.shape[0] * values.shape[1], input_packets)
    return Spinnaker2Result(result, activity, latency, estimates, inputs, outputs, traces_kept)


def output_format(system: System) -> QType:
    """Format of the values the host receives: the readout's output, or events / traces."""
    last = system.graph.layers[system.placement["layers"][-1]["layer"]]
    if isinstance(last, Linear):
        return last.quant.output
    profile = get_profile(system.graph.profile)
    return QType(profile.event_bits, profile.event_frac)


def host_output(system: System, batch: int, steps: int, sample: np.ndarray, tick: np.ndarray, key: np.ndarray,
                payload: np.ndarray, output_mode: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packets that reached the host (flat arrays) -> integer outputs (B, T, O), float sequence, output.

    Keeps the output population's packets of ticks latency .. latency + T - 1 (step = tick - latency).
    """
    layout, output = system.placement["key_layout"], system.placement["output"]
    latency = len(system.placement["layers"])
    wanted = (output["population"] << 1 | output["channel"])
    unit = key & ((1 << layout["unit_bits"]) - 1)
    keep = (((key >> layout["unit_bits"]) == wanted) & (tick >= latency) & (tick < steps + latency)
            & (unit < system.graph.out_size) & (sample >= 0) & (sample < batch))  # a board's stray packets
    values = np.zeros((batch, steps, system.graph.out_size), np.int64)
    values[sample[keep], tick[keep] - latency, unit[keep]] = payload[keep]
    sequence = output_format(system).to_float(values)
    return values, sequence, reference.apply_output_mode(sequence, output_mode or system.graph.output_mode)


def _estimates(system: System, activity: list[PEActivity], hops: dict, steps: int, input_packets: int) -> dict:
    """Time per step (slowest PE) and energy per step: ESTIMATES from counted operations."""
    cycles = np.stack([a.cycles for a in activity])  # (PEs, B, T)
    slowest = cycles.max(axis=0).mean()
    packet_hops = input_packets * hops.get((0, 0), 0)
    for pe, act in zip(system.pes, activity):
        packet_hops += act.packets_sent * max((n for (pop, _), n in hops.items() if pop == pe["population"]), default=0)
    energy_pj = (cycles.sum() * ENERGY_PJ_PER_CYCLE + packet_hops * ENERGY_PJ_PER_PACKET_HOP) / steps
    return {
        "label": "estimates from counted operations (cycle costs per op and energies are assumptions)",
        "cycles_per_op": CYCLES,
        "slowest_pe_cycles_per_step": float(slowest),
        "time_per_step_us": {f"{clock / 1e6:.0f}MHz": float(slowest / clock * 1e6) for clock in CLOCKS_HZ},
        "energy_per_step_nj": float(energy_pj / 1e3),
        "energy_assumptions_pj": {"per_cycle": ENERGY_PJ_PER_CYCLE, "per_packet_hop": ENERGY_PJ_PER_PACKET_HOP},
    }


def run_bundle(bundle_dir, x: np.ndarray, output_mode: str | None = None,
               initial_events=None) -> reference.RunResult:
    """The ``hwsim`` backend for a spinnaker2 bundle."""
    system = load(bundle_dir)
    if output_mode:
        system = replace(system, graph=replace(system.graph, output_mode=output_mode))
    result = simulate(system, x, initial_events=initial_events)
    per_step, est = result.per_step(), result.estimates
    result.run.hardware = {"chip": "SpiNNaker2", "PEs": len(result.pes),
                           "packets received per step": per_step["packets_received"],
                           "synaptic ops per step": per_step["synaptic_ops"],
                           "packets sent per step": per_step["packets_sent"],
                           **{f"slowest PE per step, us at {clock} (estimate)": t
                              for clock, t in est["time_per_step_us"].items()},
                           "energy per step, nJ (estimate)": est["energy_per_step_nj"]}
    return result.run


# --------------------------------------------------------------------------- per-PE packet streams


@dataclass(frozen=True)
class PacketStream:
    """Packets of one PE per sample and tick (ticks 0 .. T + depth - 1): (keys uint32, payloads int64)."""

    received: list[list[tuple[np.ndarray, np.ndarray]]]
    sent: list[list[tuple[np.ndarray, np.ndarray]]]
    saturations: dict  # the PE's saturation counts over the whole batch


def _packets(values: np.ndarray, base_key: int) -> tuple[np.ndarray, np.ndarray]:
    units = np.flatnonzero(values)
    return (base_key + units).astype(np.uint32), values[units].astype(np.int64)


def _concat(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([p[0] for p in parts]).astype(np.uint32)
    payloads = np.concatenate([p[1] for p in parts]).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    return keys[order], payloads[order]


def pe_packets(system: System, result: Spinnaker2Result, pe_index: int) -> PacketStream:
    """What the routers delivered to one PE and what it sent, tick by tick (needs ``keep_streams``).

    A PE at depth d computes step t = s - d at tick s from the packets sent at tick s - 1: the
    previous population's values of step t and (EGRU) its own layer's events of step t - 1.
    """
    pe = system.pes[pe_index]
    unit_bits = system.placement["key_layout"]["unit_bits"]
    depth, (u0, u1) = pe["depth"], pe["units"]
    inputs, own, trace = (result.layer_inputs[depth - 1], result.layer_values[depth - 1],
                          result.layer_traces[depth - 1])
    x_key = next(key for key, matrix in pe["sources"] if matrix == 0) << unit_bits
    empty = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
    received, sent = [], []
    for b in range(inputs.shape[0]):
        rx, tx = [empty] * depth, [empty] * depth
        for t in range(inputs.shape[1]):
            parts = [_packets(inputs[b, t], x_key)]
            if pe["kind"] == "egru" and t > 0:
                parts.append(_packets(own[b, t - 1], system.packet_key(pe["population"], 0)))
            rx.append(_concat(*parts))
            out = [_packets(own[b, t, u0:u1], system.packet_key(pe["population"], u0))]
            if trace is not None:
                out.append(_packets(trace[b, t, u0:u1], system.packet_key(pe["population"], u0, 1)))
            tx.append(_concat(*out))
        received.append(rx)
        sent.append(tx)
    return PacketStream(received, sent, dict(result.pes[pe_index].saturations))
