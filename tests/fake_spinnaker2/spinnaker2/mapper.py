"""FAKE of what py-spinnaker2's mapper hands an application's pe_config [NESTML, one source]: the placed PEs,
their population slices (pop, start, stop, size()) and key offsets.  The split, the PE numbering and the
key offsets below are this fake's own choices (py-spinnaker2's are not public): key offsets deliberately
unlike egru-deploy's key layout, so that its key translation is exercised."""
from __future__ import annotations

from dataclasses import dataclass

from spinnaker2._track import Tracked

KEY_STRIDE = 1 << 16


@dataclass(frozen=True)
class PE:
    index: int
    x: int
    y: int
    pe: int


class PopulationSlice(Tracked):
    def __init__(self, pop, start, stop):
        self.pop, self.start, self.stop = pop, start, stop

    def size(self):
        return self.stop - self.start


class Mapping(Tracked):
    def __init__(self, slices):
        self._slices = slices

    def get_population_slice(self, pe):
        return self._slices[pe]


class Mapper(Tracked):
    def __init__(self, net, default_atoms):
        slices, offsets = {}, {}
        for pop in net.populations:
            n = pop.max_atoms_per_core or default_atoms(pop)
            for start in range(0, pop.size, n):
                k = len(slices)
                pe = PE(k, (k // 4) % 8, (k // 32) % 8, k % 4)
                slices[pe] = PopulationSlice(pop, start, min(start + n, pop.size))
                offsets[pe] = (k + 3) * KEY_STRIDE
        self.mapping = Mapping(slices)
        self.key_offsets = offsets
        self.pes = list(slices)
