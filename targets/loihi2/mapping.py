"""Neurocore assignment under Loihi 2's published per-core limits, and the resource report.

Each neuron group (an EGRU or readout layer) is split evenly over as many neurocores as its units
need; a unit's incoming synapses (input and recurrent Dense rows) live on its core.  Cores are
numbered in order, 128 per chip; a network needing more spans chips and the report says so.

Energy and time per step: Intel publishes no per-operation figures for Loihi 2, so the estimate
uses Loihi 1's (Davies et al., IEEE Micro 2018, as tabulated in SANA-FE ``arch/loihi.yaml``) and
is labelled a proxy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.hwsim.loihi2 import Activity, CoreLayout, unit_fanout
from egru_deploy.targets.loihi2.network import Topology


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
SYNAPSE_BYTES = 1  # one 8-bit mantissa per synapse (dense format; exponent and sign mode are per matrix)
STATE_WORD_BYTES = 3  # 24-bit neuron state words
STATE_WORDS = {"EGRUNeurons": 10,  # c, events, trace, 3 biases, 3 recurrent biases, threshold
               "ReadoutNeurons": 2}  # bias, output


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
                   "Intel publishes no Loihi 2 per-operation figures, and an EGRU neuron program does "
                   "more work per update than the LIF neuron these figures describe")

    def estimate(self, synaptic_ops: np.ndarray, neuron_updates: np.ndarray, messages: np.ndarray) -> dict:
        """Per step, from per-core counts per step: energy over all cores, time of the busiest core."""
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
    chip: int
    group: str
    layer: int
    units: tuple[int, int]  # [start, stop) within the group
    synaptic_bytes: int
    neuron_state_bytes: int
    fan_in: int

    def describe(self) -> dict:
        return {"core": self.index, "chip": self.chip, "group": self.group, "layer": self.layer,
                "units": list(self.units), "neurons": self.units[1] - self.units[0],
                "synaptic_bytes": self.synaptic_bytes, "neuron_state_bytes": self.neuron_state_bytes,
                "fan_in": self.fan_in}


@dataclass(frozen=True)
class Mapping:
    topology: Topology
    cores: tuple[Core, ...]
    limits: ChipLimits

    @property
    def chips(self) -> int:
        return self.cores[-1].chip + 1

    def layout(self, n_layers: int) -> CoreLayout:
        """The neurocore of every unit, per graph layer, for ``hwsim.loihi2``."""
        unit_cores: list[np.ndarray | None] = [None] * n_layers
        for g in self.topology.groups:
            cores = np.empty(g.size, np.int64)
            for core in self.cores:
                if core.group == g.name:
                    cores[core.units[0]:core.units[1]] = core.index
            unit_cores[g.layer] = cores
        return CoreLayout(tuple(unit_cores), len(self.cores))

    def worst_case(self) -> dict:
        """Every neuron sends a non-zero payload every step, so every synapse is read."""
        counts = {name: np.zeros(len(self.cores)) for name in ("synaptic_ops", "neuron_updates", "messages")}
        synapses_per_unit = {}  # group -> non-zero synapses into each of its units (one pass per matrix, not per core)
        for core in self.cores:
            g = self.topology.group(core.group)
            units = core.units[1] - core.units[0]
            counts["neuron_updates"][core.index] = units
            counts["messages"][core.index] = units * (2 if g.feed_port == "trace_out" else 1)
            if g.name not in synapses_per_unit:
                synapses_per_unit[g.name] = sum((unit_fanout(s.weights.T, g.size).sum(axis=0)
                                                 for s in self.topology.synapses_into(g.name)), np.zeros(g.size))
            counts["synaptic_ops"][core.index] = synapses_per_unit[g.name][core.units[0]:core.units[1]].sum()
        return ENERGY.estimate(**counts)

    def report(self, activity: Activity | None = None, steps: int | None = None) -> dict:
        spans = self.chips > 1
        synaptic = [c.synaptic_bytes for c in self.cores]
        doc = {
            "chip": "Intel Loihi 2",
            "neurocores": len(self.cores),
            "chips": self.chips,
            "fits_one_chip": not spans,
            "placement": (f"spans {self.chips} chips ({len(self.cores)} neurocores > "
                          f"{self.limits.neurocores_per_chip} per chip)" if spans
                          else f"fits one chip ({len(self.cores)} of {self.limits.neurocores_per_chip} neurocores)"),
            "limits": self.limits.describe(),
            "groups": [self._group_summary(g.name) for g in self.topology.groups],
            "cores": [c.describe() for c in self.cores],
            "memory": {"synaptic_bytes_total": int(sum(synaptic)), "synaptic_bytes_max_core": int(max(synaptic)),
                       "neuron_state_bytes_max_core": int(max(c.neuron_state_bytes for c in self.cores))},
            "latency_steps": self.topology.schedule.latency,
            "energy_model": ENERGY.source,
            "per_step_worst_case": self.worst_case(),
            "per_step_measured": None,
        }
        if activity is not None:
            counts = activity.per_core_per_step(steps)
            doc["per_step_measured"] = {**ENERGY.estimate(**counts), "sequences": activity.batch, "steps": steps,
                                        "per_core": {name: arr.tolist() for name, arr in counts.items()}}
        return doc

    def _group_summary(self, name: str) -> dict:
        cores = [c for c in self.cores if c.group == name]
        return {"group": name, "layer": cores[0].layer, "units": cores[-1].units[1],
                "cores": [cores[0].index, cores[-1].index + 1],
                "neurons_max_core": max(c.units[1] - c.units[0] for c in cores),
                "synaptic_bytes_max_core": max(c.synaptic_bytes for c in cores), "fan_in": cores[0].fan_in}


def assign(topo: Topology, limits: ChipLimits = LOIHI2_LIMITS) -> Mapping:
    """Split every neuron group evenly over the fewest neurocores that hold it."""
    cores: list[Core] = []
    for g in topo.groups:
        incoming = topo.synapses_into(g.name)
        fan_in = sum(s.weights.shape[1] for s in incoming)
        synapse_bytes = sum(s.weights.size for s in incoming) * SYNAPSE_BYTES // g.size  # per unit
        state_bytes = STATE_WORDS[g.process] * STATE_WORD_BYTES  # per unit
        where = f"layer {g.layer} ({g.name})"
        if fan_in > limits.fan_in_per_core:
            raise MappingError(f"{where}: fan-in {fan_in} exceeds {limits.fan_in_per_core} input axons per neurocore")
        per_core = min(limits.neurons_per_core, limits.synaptic_bytes_per_core // synapse_bytes,
                       limits.neuron_state_bytes_per_core // state_bytes)
        if per_core == 0:
            raise MappingError(f"{where}: one unit needs {synapse_bytes} bytes of synapses, more than the "
                               f"{limits.synaptic_bytes_per_core} bytes of a neurocore")
        bounds = np.linspace(0, g.size, math.ceil(g.size / per_core) + 1).round().astype(int)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            index = len(cores)
            cores.append(Core(index, index // limits.neurocores_per_chip, g.name, g.layer, (int(start), int(stop)),
                              int((stop - start) * synapse_bytes), int((stop - start) * state_bytes), fan_in))
    return Mapping(topo, tuple(cores), limits)
