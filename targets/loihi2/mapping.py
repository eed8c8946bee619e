"""Neurocore assignment of the stock-process netlist under Loihi 2's published per-core limits, and the
resource report.

Each on-chip population (one Lava neuron process) is split evenly over as many neurocores as its
neurons need; a neuron's incoming synapses (the rows of the connections into it) live on its core:
a ``Dense`` row holds one byte per source neuron, a ``Sparse`` synapse two (weight and index, an
assumption: Intel publishes no Loihi 2 synapse encoding).  Populations do not share cores.  There is
no multi-chip support: a network that needs more than one chip's 128 neurocores is refused.

Energy and time per input step: Intel publishes no per-operation figures for Loihi 2, so the estimate
uses Loihi 1's (Davies et al., IEEE Micro 2018, as tabulated in SANA-FE ``arch/loihi.yaml``) and is
labelled a proxy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from egru_deploy.circuit import STEPS_PER_TOKEN
from egru_deploy.errors import UserError
from egru_deploy.targets.loihi2.netlist import LAVA_CLASSES, ON_CHIP, Netlist


class MappingError(UserError):
    """A layer cannot be placed on Loihi 2 neurocores. The message is one line."""


@dataclass(frozen=True)
class ChipLimits:
    neurocores_per_chip: int = 128
    neurons_per_core: int = 8192
    synaptic_bytes_per_core: int = 128 * 1024
    neuron_state_bytes_per_core: int = 64 * 1024  # 192 KB per core less the 128 KB synaptic share
    fan_in_per_core: int = 4096  # input axons per core: Loihi 1's figure, used as a proxy

    def describe(self) -> dict:
        return {
            "neurocores_per_chip": self.neurocores_per_chip, "neurons_per_core": self.neurons_per_core,
            "synaptic_bytes_per_core": self.synaptic_bytes_per_core,
            "neuron_state_bytes_per_core": self.neuron_state_bytes_per_core,
            "fan_in_per_core": self.fan_in_per_core,
            "sources": {
                "neurocores, neurons, memory": "Intel, 'Taking Neuromorphic Computing to the Next Level with "
                                               "Loihi 2' (technology brief, 2021): 128 neurocores/chip, up to "
                                               "8,192 neurons and 192 KB memory (up to 128 KB synaptic) per core",
                "fan_in": "Loihi 1 figure (Davies et al., IEEE Micro 38(1), 2018: 4,096 input axons per core), "
                          "used as a proxy: no Loihi 2 figure is public",
            },
        }


LOIHI2_LIMITS = ChipLimits()
DENSE_SYNAPSE_BYTES = 1  # one 8-bit mantissa per synapse of a Dense row (exponent and sign mode per matrix)
SPARSE_SYNAPSE_BYTES = 2  # weight and index
STATE_BYTES = 3  # one 24-bit word per neuron (v): the stock graded neurons keep no other state


@dataclass(frozen=True)
class EnergyModel:
    """Per-operation energy (pJ) and time (ns): Loihi 1 figures, a proxy for Loihi 2."""

    synaptic_op_pj: float = 35.5
    synaptic_op_ns: float = 4.0
    neuron_update_pj: float = 51.2 + 21.6  # access + update
    neuron_update_ns: float = 6.0 + 3.7
    message_pj: float = 69.3  # spike out
    message_ns: float = 30.0
    source: str = ("Loihi 1 proxy: Davies et al. 2018, as tabulated in SANA-FE arch/loihi.yaml "
                   "(dense synapse 35.5 pJ / 4.0 ns, neuron 72.8 pJ / 9.7 ns, spike out 69.3 pJ / 30 ns); "
                   "Intel publishes no Loihi 2 per-operation figures")

    def estimate(self, synaptic_ops: np.ndarray, neuron_updates: np.ndarray, messages: np.ndarray) -> dict:
        """Per input step, from per-core counts: energy over all cores, time of the busiest core."""
        energy = (synaptic_ops.sum() * self.synaptic_op_pj + neuron_updates.sum() * self.neuron_update_pj
                  + messages.sum() * self.message_pj)
        core_ns = (synaptic_ops * self.synaptic_op_ns + neuron_updates * self.neuron_update_ns
                   + messages * self.message_ns)
        return {"synaptic_ops": float(synaptic_ops.sum()), "neuron_updates": float(neuron_updates.sum()),
                "messages": float(messages.sum()), "energy_nj": float(energy) * 1e-3,
                "busiest_core_us": float(core_ns.max()) * 1e-3 if core_ns.size else 0.0,
                "model": "loihi1_proxy"}


ENERGY = EnergyModel()


@dataclass(frozen=True)
class Core:
    index: int
    population: str
    layer: int
    neurons: tuple[int, int]  # [start, stop) within the population
    synaptic_bytes: int
    neuron_state_bytes: int

    def describe(self) -> dict:
        return {"core": self.index, "population": self.population, "layer": self.layer,
                "neurons": list(self.neurons), "synaptic_bytes": self.synaptic_bytes,
                "neuron_state_bytes": self.neuron_state_bytes}


def synaptic_bytes(net: Netlist) -> dict[str, np.ndarray]:
    """Synapse memory of every on-chip neuron (bytes), from the connections into it."""
    out = {name: np.zeros(p.size, np.int64) for name, p in net.populations.items() if p.kind in ON_CHIP}
    for c in net.connections:
        if c.kind == "dense":
            out[c.target][np.unique(c.rows)] += c.shape[1] * DENSE_SYNAPSE_BYTES
        else:
            np.add.at(out[c.target], c.rows, SPARSE_SYNAPSE_BYTES)
    return out


@dataclass(frozen=True)
class Mapping:
    netlist: Netlist
    cores: tuple[Core, ...]
    limits: ChipLimits

    def core_of(self) -> dict[str, np.ndarray]:
        """Population -> neurocore of each of its neurons."""
        out = {}
        for core in self.cores:
            out.setdefault(core.population, np.zeros(self.netlist.populations[core.population].size, np.int64))
            out[core.population][core.neurons[0]:core.neurons[1]] = core.index
        return out

    def per_core(self, per_neuron: dict[str, np.ndarray]) -> np.ndarray:
        totals = np.zeros(len(self.cores))
        for pop, cores in self.core_of().items():
            if pop in per_neuron:
                np.add.at(totals, cores, per_neuron[pop])
        return totals

    def neuron_updates_per_core(self) -> np.ndarray:
        """Every neuron of a process is updated every chip step: D updates per input step."""
        return np.array([(c.neurons[1] - c.neurons[0]) * STEPS_PER_TOKEN for c in self.cores], np.float64)

    def worst_case(self) -> dict:
        """Every neuron sends a non-zero payload at its level of every input step, so every synapse is read."""
        net = self.netlist
        ones = {name: np.ones(p.size) for name, p in net.populations.items()}
        synops = {name: np.zeros(p.size) for name, p in net.populations.items()}
        for c in net.connections:
            np.add.at(synops[c.target], c.rows, (c.values != 0).astype(float))
        return ENERGY.estimate(self.per_core(synops), self.neuron_updates_per_core(), self.per_core(ones))

    def measured(self, activity) -> dict:
        scale = 1.0 / (activity.batch * activity.steps)
        est = ENERGY.estimate(self.per_core(activity.synaptic_ops) * scale, self.neuron_updates_per_core(),
                              self.per_core(activity.messages) * scale)
        return {**est, "host_messages": activity.host_messages * scale, "sequences": activity.batch,
                "steps": activity.steps}

    def hardware_summary(self, activity) -> dict:
        m = self.measured(activity)
        return {"chip": "Loihi 2 (stock Lava processes)", "neurocores": len(self.cores),
                "chip steps per input step": STEPS_PER_TOKEN,
                "synaptic ops per input step": m["synaptic_ops"], "messages per input step": m["messages"],
                "host messages per input step": m["host_messages"],
                "energy per input step, nJ (Loihi 1 proxy)": m["energy_nj"],
                "busiest core per input step, us (Loihi 1 proxy)": m["busiest_core_us"]}

    def processes(self) -> list[dict]:
        """Every Lava process of the deployed network: name, module-qualified class, placement, count
        (neurons of a population, synapses of a connection, channels of a host process)."""
        net = self.netlist
        rows = []
        for name in ("input", "phase"):
            size = net.populations[name].size
            if size:
                rows += [{"name": f"{name}_source", "lava_class": LAVA_CLASSES["source"], "placement": "host",
                          "count": size},
                         {"name": f"{name}_to_chip", "lava_class": LAVA_CLASSES["to_chip"], "placement": "host",
                          "count": size}]
        for p in net.populations.values():
            if p.kind in ON_CHIP:
                rows.append({"name": p.name, "lava_class": p.lava_class, "placement": "neurocore", "count": p.size})
        for c in net.connections:
            rows.append({"name": c.name, "lava_class": LAVA_CLASSES[c.kind], "placement": "neurocore",
                         "count": c.synapses})
        sinks = [(f"events{i}_sink", net.populations[p].size) for i, p in net.event_populations.items()]
        if net.output[0] not in net.event_populations.values():
            sinks.append(("output_sink", net.populations[net.output[0]].size))
        for name, size in sinks:
            rows += [{"name": name.replace("_sink", "_from_chip"), "lava_class": LAVA_CLASSES["from_chip"],
                      "placement": "host", "count": size},
                     {"name": name, "lava_class": LAVA_CLASSES["sink"], "placement": "host", "count": size}]
        return rows

    def report(self, activity=None) -> dict:
        net = self.netlist
        synaptic = [c.synaptic_bytes for c in self.cores]
        egru_layers = sorted(net.event_populations)
        per_unit = {}
        for i in egru_layers:
            h = net.populations[net.event_populations[i]].size
            per_unit[str(i)] = sum(p.size for p in net.populations.values() if p.layer == i) / h
        doc = {
            "chip": "Intel Loihi 2",
            "implementation": "stock Lava processes on neurocores (GradedVec, GradedReluVec, ProdNeuron, "
                              "Dense, Sparse); host source, phase lines and sinks through the embedded_io adapters",
            "neurocores": len(self.cores),
            "chips": 1,
            "fits_one_chip": True,
            "placement": f"fits one chip ({len(self.cores)} of {self.limits.neurocores_per_chip} neurocores)",
            "limits": self.limits.describe(),
            "chip_steps_per_input_step": STEPS_PER_TOKEN,
            "neurons_per_egru_unit": per_unit,
            "neurons": int(sum(p.size for p in net.populations.values() if p.kind in ON_CHIP)),
            "synapses": int(sum(c.synapses for c in net.connections)),
            "populations": [{"name": p.name, "lava_class": p.lava_class, "layer": p.layer, "neurons": p.size,
                             "cores": [c.index for c in self.cores if c.population == p.name]}
                            for p in net.populations.values() if p.kind in ON_CHIP],
            "cores": [c.describe() for c in self.cores],
            "memory": {"synaptic_bytes_total": int(sum(synaptic)), "synaptic_bytes_max_core": int(max(synaptic)),
                       "neuron_state_bytes_max_core": int(max(c.neuron_state_bytes for c in self.cores))},
            "latency_steps": net.chip_steps(1) - 1,
            "energy_model": ENERGY.source,
            "per_input_step_worst_case": self.worst_case(),
            "per_input_step_measured": self.measured(activity) if activity is not None else None,
            "processes": self.processes(),
        }
        return doc


class _Axons:
    """Distinct source neurons (input axons) of ranges of a population's neurons, from its incoming connections."""

    def __init__(self, incoming: list):
        self.dense = [(np.unique(c.rows), c.shape[1]) for c in incoming if c.kind == "dense"]
        self.sparse = []
        for c in incoming:
            if c.kind != "dense":
                order = np.argsort(c.rows, kind="stable")
                self.sparse.append((c.rows[order], c.cols[order]))

    def __call__(self, start: int, stop: int) -> int:
        total = sum(size for rows, size in self.dense
                    if np.searchsorted(rows, start) < np.searchsorted(rows, stop))
        for rows, cols in self.sparse:
            lo, hi = np.searchsorted(rows, start), np.searchsorted(rows, stop)
            total += np.unique(cols[lo:hi]).size
        return total


def assign(net: Netlist, limits: ChipLimits = LOIHI2_LIMITS) -> Mapping:
    """Split every on-chip population evenly over the fewest neurocores that hold it."""
    cores: list[Core] = []
    memory = synaptic_bytes(net)
    for pop in net.populations.values():
        if pop.kind not in ON_CHIP:
            continue
        where = f"layer {pop.layer} ({pop.name})"
        per_neuron = int(memory[pop.name].max()) if pop.size else 0
        if per_neuron > limits.synaptic_bytes_per_core:
            raise MappingError(f"{where}: one neuron needs {per_neuron} bytes of synapses, more than the "
                               f"{limits.synaptic_bytes_per_core} bytes of a neurocore")
        per_core = min(limits.neurons_per_core, limits.neuron_state_bytes_per_core // STATE_BYTES,
                       limits.synaptic_bytes_per_core // max(per_neuron, 1))
        axons = _Axons([c for c in net.connections if c.target == pop.name])
        n_cores = math.ceil(pop.size / per_core)
        while True:  # more cores until every core's distinct input axons fit
            bounds = np.linspace(0, pop.size, n_cores + 1).round().astype(int)
            fan_in = max(axons(start, stop) for start, stop in zip(bounds[:-1], bounds[1:]))
            if fan_in <= limits.fan_in_per_core:
                break
            if n_cores == pop.size:
                raise MappingError(f"{where}: fan-in {fan_in} exceeds {limits.fan_in_per_core} input axons per "
                                   f"neurocore")
            n_cores = min(pop.size, 2 * n_cores)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            cores.append(Core(len(cores), pop.name, pop.layer, (int(start), int(stop)),
                              int(memory[pop.name][start:stop].sum()), int((stop - start) * STATE_BYTES)))
        if len(cores) > limits.neurocores_per_chip:
            raise MappingError(f"{where}: the network needs more than one chip's {limits.neurocores_per_chip} "
                               f"neurocores from this layer on (no multi-chip support yet)")
    return Mapping(net, tuple(cores), limits)
