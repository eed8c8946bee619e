"""FAKE spinnaker2.neuron_models.application.BaseApplication [NESTML]: subclassed by custom applications,
BaseApplication.__init__(self, name=...), class attributes max_atoms_per_core, splittable, recordables,
self.name and self.mem_file, pe_config(pe, mapper, sim_cfg, debug) returning a PEConfig."""
from spinnaker2._track import Tracked


class BaseApplication(Tracked):
    max_atoms_per_core = 250
    splittable = True
    recordables = []

    def __init__(self, name):
        self.name = name
        self.mem_file = f"{name}.mem"  # FAKE: the real value (the program binary py-spinnaker2 loads) is not public

    def pe_config(self, pe, mapper, sim_cfg, debug):
        raise NotImplementedError
