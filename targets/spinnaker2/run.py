"""Board path: run a spinnaker2 bundle on a SpiNNaker2 board through py-spinnaker2.  NOT RUN ON A BOARD.

Built only on the py-spinnaker2 surface public users show (``application.SOURCES``; each call below names
its source), the way they run a network: populations (``snn.Population`` with ``neuron_model=`` naming an
application, ``params``, ``record=``), ``set_max_atoms_per_core``, projections (``snn.Projection(pre, post,
connections=[[pre, post, weight, delay], ...])``), one ``snn.Network``; per sample the input population's
params set, ``net.reset()``, a fresh ``hardware.SpiNNaker2Chip(eth_ip=...)`` and ``run(net, timesteps,
sys_tick_in_s=..., debug=False)``; the output read back through a recordable (``get_voltages()``).

* Inputs are preloaded: an ``egru_input`` population holds the quantized sequence (or embedded tokens).
* Each chip layer is an ``egru`` population split in the bundle's equal slices, so py-spinnaker2's PEs hold
  exactly the bundle's images (``application.py`` packs their regions).
* Projections carry the int8 weights, one per weight matrix and gate (z, r, g of the input kernel and of
  the recurrent kernel; the readout's matrix), the non-zero entries as connections; py-spinnaker2 routes
  along them.  Our key/mask tables (placement.json) are checked to deliver every population to exactly the
  populations py-spinnaker2 routes it to (``check_projection_routing``).
* The output population records "v": per tick the values it produces, which become the network output.
"""
from __future__ import annotations

import math

import numpy as np

from egru_deploy.errors import TargetUnavailable
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.ir import EGRU
from egru_deploy.reference import RunResult, quantize_input, refuse_initial_events
from egru_deploy.targets.spinnaker2 import application as app
from egru_deploy.targets.spinnaker2 import images, loader, memory_map
from egru_deploy.targets.spinnaker2.mapping import BOARD

PACKAGE_HINT = ("SpiNNaker2 board runs need py-spinnaker2 (Python package `spinnaker2`, "
                "gitlab.com/spinnaker2/py-spinnaker2), which is not installed; "
                "emulate instead: egru-deploy emulate BUNDLE --backend hwsim|qemu")
SYS_TICK_S = 1e-3  # the tick public examples use (NIR-rnn sys_tick_in_s=1.0e-3); longer when hwsim estimates more
TICK_MARGIN = 4.0  # sys_tick >= this x hwsim's estimated slowest PE per step
NETWORK_NAME = "egru-deploy"


def _import_spinnaker2():
    try:
        import spinnaker2 as package
        from spinnaker2 import hardware, snn  # [NIR-rnn: from spinnaker2 import hardware; DNF: hardware, snn]
    except ImportError:
        raise TargetUnavailable(PACKAGE_HINT) from None
    return package, hardware, snn


def host_packets(system: hwsim.System, values: np.ndarray) -> np.ndarray:
    """The host's input packets for quantized inputs (B, T, I), as (sample, tick, key, payload) rows: what the
    input PEs send (the QEMU stand-in of the chip checks theirs against these)."""
    b, t, unit = np.nonzero(values)
    keys = system.packet_key(0, unit)
    return np.stack([b, t, keys, values[b, t, unit]], axis=1).astype(np.int64)


# --------------------------------------------------------------------------- the network


def connections(weights: np.ndarray) -> list[list[int]]:
    """[[pre, post, weight, delay], ...] of the non-zero entries of weights [pre, post] (int8), delay 0
    [DNF: "each connection has 4 entries: [pre_index, post_index, weight, delay]"]."""
    pre, post = np.nonzero(weights)
    return np.stack([pre, post, weights[pre, post], np.zeros_like(pre)], axis=1).astype(int).tolist()


def projection_weights(plan: app.BoardPlan) -> list[tuple[str, str, str, np.ndarray]]:
    """(pre population, post population, what, weights [pre, post]) of every projection the network holds."""
    graph, out = plan.system.graph, []
    for spec in plan.layers:
        layer = graph.layers[spec.graph_layer]
        pre = spec.sources[0][0]
        if isinstance(layer, EGRU):
            h = layer.hidden
            for g, gate in enumerate("zrg"):
                columns = slice(g * h, (g + 1) * h)
                out.append((pre, spec.name, f"kernel.{gate}", layer.kernel[:, columns]))
                out.append((spec.name, spec.name, f"recurrent_kernel.{gate}", layer.recurrent_kernel[:, columns]))
        else:
            out.append((pre, spec.name, "weight", layer.weight.T))
    return [(pre, post, what, np.asarray(w)) for pre, post, what, w in out if np.count_nonzero(w)]


def build_network(snn, plan: app.BoardPlan):
    """The populations and projections of ``plan``: (network, input population, populations by name)."""
    pops = {plan.input.name: snn.Population(size=plan.input.units, neuron_model=app.INPUT_APP_NAME,  # [DNF]
                                            params={app.PARAMS_KEY: plan.input}, name=plan.input.name)}
    for spec in plan.layers:
        record = [app.RECORD_NAME] if spec.name == plan.output else []
        pop = snn.Population(size=spec.units, neuron_model=app.APP_NAME, params={app.PARAMS_KEY: spec},
                             name=spec.name, record=record)  # [DNF: size, neuron_model, params, name, record]
        pop.set_max_atoms_per_core(spec.atoms_per_core)  # [DNF, NIR-rnn, NICE]
        pops[spec.name] = pop
    projections = [snn.Projection(pre=pops[pre], post=pops[post], connections=connections(w))  # [DNF]
                   for pre, post, _, w in projection_weights(plan)]
    net = snn.Network(NETWORK_NAME)  # [DNF]
    net.add(*pops.values(), *projections)  # [DNF]
    return net, pops[plan.input.name], pops


# --------------------------------------------------------------------------- checks before a run


def check_projection_routing(plan: app.BoardPlan) -> None:
    """Our key/mask tables deliver every population to exactly the populations py-spinnaker2 routes it to
    (the post populations of its projections), every PE of them (hwsim.check_routing checked the tables)."""
    system = plan.system
    hwsim.check_routing(system)
    by_core = {(pe["chip"], pe["core"]): app.population_name(pe["layer"]) for pe in system.pes}
    routed: dict[str, set[str]] = {}
    for pre, post, _, _ in projection_weights(plan):
        routed.setdefault(pre, set()).add(post)
    sources = [(plan.input.name, images.HOST_POPULATION, system.placement["board"]["host_chip"], 0)]
    sources += [(spec.name, spec.kernel_population, system.pes[spec.first_pe]["chip"], 0) for spec in plan.layers]
    for name, population, chip, unit in sources:
        cores, _, _ = hwsim.deliver(system, system.packet_key(population, unit), chip)
        reached = {by_core[core] for core in cores}
        expected = {spec.name for spec in plan.layers if spec.name in routed.get(name, set())}
        pes_expected = {(pe["chip"], pe["core"]) for pe in system.pes if app.population_name(pe["layer"]) in expected}
        if not expected <= reached or not pes_expected <= set(cores):
            raise app.BoardError(f"placement.json routes population {name} to {sorted(reached)}, but its projections "
                                 f"lead to {sorted(expected)}")


def check_fits(plan: app.BoardPlan, input_atoms: int, n_ticks: int) -> None:
    """Every PE's regions fit, and all PEs fit the board, for a run of n_ticks (exit 2 naming PE and numbers)."""
    input_pes = math.ceil(plan.input.units / input_atoms)
    total = input_pes + sum(len(spec.images) for spec in plan.layers)
    if total > BOARD.pes:
        raise app.BoardError(f"the network needs {total:,} PEs ({input_pes:,} input PEs + "
                             f"{total - input_pes:,} layer PEs) but a board has {BOARD.pes:,} "
                             f"({BOARD.chips} chips x {BOARD.pes_per_chip} PEs)")
    pes_of = {plan.input.name: input_pes, **{spec.name: len(spec.images) for spec in plan.layers}}
    for spec in plan.layers:
        ranges = sum(pes_of[name] for name, _, _ in spec.sources)
        for k, image in enumerate(spec.images):
            where = f"PE {spec.first_pe + k} ({spec.name}, units {k * spec.atoms_per_core}..)"
            if ranges > memory_map.MAX_RANGES:
                raise app.BoardError(f"{where}: receives from {ranges:,} PEs but its params region holds "
                                     f"{memory_map.MAX_RANGES} key ranges")
            units = min(spec.atoms_per_core, spec.units - k * spec.atoms_per_core)
            record = memory_map.record_bytes(units if spec.record_channel is not None else 0, n_ticks)
            need = memory_map.aligned8(len(image)) + record
            if need > memory_map.IMAGE_CAPACITY:
                slices = "compile with smaller slices (compile_spinnaker2(max_units_per_pe=...))"
                one_tick = memory_map.aligned8(len(image)) + memory_map.record_bytes(units, 1)
                hint = f"run shorter sequences, or {slices}" if one_tick <= memory_map.IMAGE_CAPACITY else slices
                raise app.BoardError(f"{where}: its image of {len(image):,} bytes and the record of {units} units x "
                                     f"{n_ticks:,} ticks ({record:,} bytes) need {need:,} bytes but a PE has "
                                     f"{memory_map.IMAGE_CAPACITY:,} bytes for both: {hint}")


def sys_tick_for(system: hwsim.System, x: np.ndarray) -> float:
    """The board's tick: 1 ms, or longer when hwsim's estimate of the slowest PE per step needs it."""
    estimate_us = hwsim.simulate(system, x[:1]).estimates["time_per_step_us"]["150MHz"]
    return max(SYS_TICK_S, math.ceil(TICK_MARGIN * estimate_us / 500.0) * 500e-6)


def record_values(voltages, units: int, n_ticks: int, where: str) -> np.ndarray:
    """get_voltages() of the output population -> int64 (n_ticks, units); refuses what float32 cannot carry."""
    values = np.zeros((n_ticks, units), np.float64)
    for unit in range(units):
        trace = np.asarray(voltages[unit] if unit in voltages else [], np.float64)
        if trace.shape != (n_ticks,):
            raise app.BoardError(f"{where}: get_voltages() holds {trace.size} values for unit {unit}, "
                                 f"expected {n_ticks}")
        values[:, unit] = trace
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise app.BoardError(f"{where}: the recorded values are not the integers the PEs send")
    if np.any(np.abs(values) > app.EXACT_FLOAT):
        raise app.BoardError(f"{where}: a recorded value exceeds 2^24 in magnitude, beyond what the float32 "
                             f"record carries exactly")
    return values.astype(np.int64)


# --------------------------------------------------------------------------- the run


def run_on_board(bundle_dir, x: np.ndarray, board_ip: str, output_mode: str | None = None,
                 initial_events=None) -> RunResult:
    loaded = loader.load(bundle_dir)  # a malformed bundle is reported before a missing package
    refuse_initial_events(initial_events, "a SpiNNaker2 board run")
    system = loaded.system
    inputs = quantize_input(system.graph, x)
    package, hardware, snn = _import_spinnaker2()
    plan = app.board_plan(loaded)
    check_projection_routing(plan)
    batch, steps = inputs.shape[:2]
    n_ticks = steps + plan.latency  # the output population computes step t at tick t + latency
    app.register(package, app.application_classes())
    net, input_pop, pops = build_network(snn, plan)
    sys_tick = sys_tick_for(system, x)
    out_spec = plan.layer(plan.output)
    out_population, out_channel = system.placement["output"]["population"], system.placement["output"]["channel"]
    rows = []
    for b in range(batch):
        sample = app.InputSpec(plan.input.name, plan.input.units, inputs[b], plan.latency)
        atoms = app.input_atoms_per_core(sample.values)
        check_fits(plan, atoms, n_ticks)
        input_pop.params = {app.PARAMS_KEY: sample}  # [NIR-rnn: inp[0].params = spike_times, per sample]
        input_pop.set_max_atoms_per_core(atoms)  # [DNF]
        net.reset()  # [NIR-rnn: "clear previous spikes and voltages"]
        hw = hardware.SpiNNaker2Chip(eth_ip=board_ip)  # [NIR-rnn, NICE]
        hw.run(net, n_ticks, sys_tick_in_s=sys_tick, debug=False)  # [NIR-rnn, NICE]
        values = record_values(pops[plan.output].get_voltages(), out_spec.units, n_ticks,  # [NIR-rnn]
                               f"sample {b}, population {plan.output}")
        tick, unit = np.nonzero(values)
        rows.append(np.stack([np.full(len(tick), b), tick, system.packet_key(out_population, unit, out_channel),
                              values[tick, unit]], axis=1))
    received = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 4), np.int64)
    values, sequence, output = hwsim.host_output(system, batch, steps, *received.T, output_mode=output_mode)
    return RunResult(output=output, sequence=sequence, int_sequence=values)
