"""FAKE spinnaker2.hardware: SpiNNaker2Chip(eth_ip=...).run(net, timesteps, sys_tick_in_s=..., debug=...)
[NIR-rnn, NICE].  It maps the network, asks each custom application for its PE configuration
(pe_config, [NESTML]), hands everything to ``EXECUTOR`` (a test's stand-in for the chip) and decodes the
"voltage_record" regions it returns into get_voltages() (UNVERIFIED decoding, _surface.UNVERIFIED)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinnaker2 import snn
from spinnaker2._track import Tracked, TrackedDict
from spinnaker2.mapper import Mapper

EXECUTOR = None  # FAKE ONLY: callable(FakeRun) -> {(pe, region name): list of words}
TIMER_CLOCK_HZ = 150e6  # FAKE: the timer's reference clock is not public
runs = []  # FAKE ONLY: every FakeRun, for tests


@dataclass
class FakeRun:
    net: object
    mapper: Mapper
    configs: dict  # pe -> PEConfig (custom applications) or None (stock models)
    timesteps: int
    sys_tick_in_s: float
    eth_ip: str


class SpiNNaker2Chip(Tracked):
    def __init__(self, eth_ip=None):
        self.eth_ip = eth_ip

    def run(self, net, timesteps, sys_tick_in_s=1e-3, debug=True):
        def default_atoms(pop):
            cls = snn.application_class(pop.neuron_model)
            return cls.max_atoms_per_core if cls else 250

        mapper = Mapper(net, default_atoms)
        sim_cfg = TrackedDict(timer_period=int(round(sys_tick_in_s * TIMER_CLOCK_HZ)), n_simulation_ticks=timesteps)
        configs, apps = {}, {}
        for pe in mapper.pes:
            pop = mapper.mapping._slices[pe].pop
            cls = snn.application_class(pop.neuron_model)
            if cls is None:
                configs[pe] = None
                continue
            app = apps.setdefault(pop.neuron_model, cls())
            configs[pe] = app.pe_config(pe, mapper, sim_cfg, debug)
        if EXECUTOR is None:
            raise RuntimeError("fake py-spinnaker2 has no chip: set spinnaker2.hardware.EXECUTOR")
        run = FakeRun(net, mapper, configs, timesteps, sys_tick_in_s, self.eth_ip)
        runs.append(run)
        regions = EXECUTOR(run)
        for pe, config in configs.items():
            if config is None or "voltage_record" not in config.mem_regions_to_read:
                continue
            piece = mapper.mapping._slices[pe]
            words = np.asarray(regions[(pe, "voltage_record")], np.int64).astype(np.uint32)
            rows = words.reshape(timesteps, 1 + piece.size())
            recorded = piece.pop._recorded.setdefault("v", {})
            for k in range(piece.size()):
                recorded[piece.start + k] = rows[:, 1 + k].view(np.float32).astype(np.float64)
