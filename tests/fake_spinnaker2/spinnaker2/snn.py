"""FAKE spinnaker2.snn: populations, projections, networks (sources in _surface.PUBLIC)."""
from __future__ import annotations

import numpy as np

from spinnaker2._track import Tracked

STOCK_MODELS = {"spike_list", "lif", "lif_curr_exp"}  # DNF uses these three
_CUSTOM: dict[str, type] = {}  # neuron_model -> application class (UNVERIFIED registration)


def register_neuron_model(name: str, application_class: type) -> None:
    """UNVERIFIED: no public source shows how py-spinnaker2 learns a custom application's neuron_model."""
    _CUSTOM[name] = application_class


def application_class(neuron_model: str) -> type | None:
    return _CUSTOM.get(neuron_model)


class Population(Tracked):
    """snn.Population(size, neuron_model, params, name, record) [DNF]."""

    def __init__(self, size, neuron_model, params=None, name="", record=None):
        if not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"fake snn.Population: size {size!r}")
        if neuron_model not in STOCK_MODELS and neuron_model not in _CUSTOM:
            raise ValueError(f"fake snn.Population: unknown neuron_model {neuron_model!r}")
        self.size = int(size)
        self.neuron_model = neuron_model
        self.params = params if params is not None else {}
        self.name = name
        self.record = list(record or [])
        self.max_atoms_per_core = None
        self._recorded = {}

    def set_max_atoms_per_core(self, n):
        if not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"fake set_max_atoms_per_core: {n!r}")
        self.max_atoms_per_core = int(n)

    def get_voltages(self):
        """{neuron: array of one value per time step} [NIR-rnn: voltages.items(), vs / v_scale]."""
        return dict(self._recorded.get("v", {}))

    def get_spikes(self):
        return dict(self._recorded.get("spikes", {}))


class Projection(Tracked):
    """snn.Projection(pre, post, connections=[[pre, post, weight, delay], ...]) [DNF]."""

    def __init__(self, pre, post, connections):
        for row in connections:
            if len(row) != 4:
                raise ValueError(f"fake snn.Projection: connection {row!r} is not [pre, post, weight, delay]")
            i, j, _, delay = row
            if not (0 <= i < pre.size and 0 <= j < post.size and delay >= 0):
                raise ValueError(f"fake snn.Projection: connection {row!r} outside {pre.name} -> {post.name}")
        self.pre, self.post, self.connections = pre, post, connections


class Network(Tracked):
    """snn.Network(name) [DNF]; add(...) [DNF]; populations [NIR-rnn]; reset() [NIR-rnn]."""

    def __init__(self, name=""):
        self.name = name
        self.populations = []
        self.projections = []

    def add(self, *items):
        for item in items:
            if isinstance(item, Population):
                self.populations.append(item)
            elif isinstance(item, Projection):
                self.projections.append(item)
            else:
                raise TypeError(f"fake snn.Network.add: {type(item).__name__}")

    def reset(self):
        for pop in self.populations:
            pop._recorded = {}
