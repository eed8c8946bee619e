"""Map a quantized graph onto SpiNNaker2: split layers across PEs, place PEs on chips, route packets.

* Split: each PE owns a contiguous slice of a layer's units (for EGRU: all three gate rows of
  them).  Slices are packed greedily, each as large as its memory image allows; the image size
  model is ``images.section_sizes`` (code, stack and runtime data are measured from the ELF by
  ``build.measure``).  Weights are stored dense or CSR (csr8, csr16 or the banked csr8b), whichever is
  smaller per slice (``images.choose_format``).
* Place: PEs are numbered in layer order and fill chips core by core (152 PEs per chip, 48 chips).
* Route: every population (a layer's events or trace, or the host's input) is multicast from each
  chip that holds part of it to the chips of its consumers along X-then-Y paths of the board's chip
  mesh (a model of the board's links); routers need an entry only where a packet starts, is
  delivered, forks or turns (straight-through traffic takes the default route).  A source's unit
  range is covered by aligned key/mask blocks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Graph, Linear
from egru_deploy.profiles import get_profile
from egru_deploy.targets.spinnaker2 import images
from egru_deploy.targets.spinnaker2.build import PEMemory


class MappingError(UserError):
    """The graph does not fit the board (one line, with the numbers)."""


@dataclass(frozen=True)
class Board:
    """Published SpiNNaker2 figures (DESIGN.md): 152 PEs/chip, 48-chip boards, 128 KB per PE (one flat
    memory, ``memory_map.py``), 16,384 routing entries per chip.  ``mesh`` is this mapping's model of the
    chip grid."""

    pes_per_chip: int = 152
    chips: int = 48
    mesh: tuple[int, int] = (8, 6)
    routing_entries: int = 16384
    pe_memory_bytes: int = 128 * 1024
    host_chip: int = 0  # the chip whose Ethernet link connects the host

    @property
    def pes(self) -> int:
        return self.pes_per_chip * self.chips


BOARD = Board()
LINKS = {"E": (1, 0), "W": (-1, 0), "N": (0, 1), "S": (0, -1)}
FIXED_SECTIONS = ("header", "sources", "lut_sigmoid", "lut_tanh", "counters")  # every PE of a kind holds these
UNIT_SECTIONS = ("bias", "rbias", "thr", "acc_x", "acc_h", "cell", "trace")  # grow with the units owned


@dataclass(frozen=True)
class PE:
    index: int
    chip: int
    core: int
    layer: int  # graph layer index
    kind: str  # "egru" | "linear"
    units: tuple[int, int]  # owned units [u0, u1)
    depth: int  # hops from the host: the tick of this layer's step 0
    population: int
    key_base: int  # key of unit u0 (channel 0)
    sources: tuple[tuple[int, int], ...]  # (population key, images.MATRIX_*)
    x_format: str
    h_format: str | None
    x_nnz: int
    h_nnz: int
    image_bytes: int


@dataclass(frozen=True)
class RouteEntry:
    key: int
    mask: int
    links: tuple[str, ...]
    cores: tuple[int, ...]
    host: bool


@dataclass(frozen=True)
class LayerPlan:
    layer: int
    kind: str
    units: int
    population: int
    depth: int
    pes: tuple[int, int]  # PE indices [first, last + 1)
    input_channel: int  # channel of the population this layer reads
    lower_bound_bytes: int  # bytes no split can go below (_LayerCosts.lower_bound_bytes: one row-pointer array per matrix)


@dataclass(frozen=True)
class Mapping:
    board: Board
    memory: PEMemory
    layers: tuple[LayerPlan, ...]
    pes: tuple[PE, ...]
    routing: dict  # chip -> tuple[RouteEntry, ...]
    input_size: int
    output: tuple[int, int]  # (population, channel) the host reads

    @property
    def chips_used(self) -> int:
        return self.pes[-1].chip + 1 if self.pes else 0

    def lower_bound_pes(self) -> int:
        """Total bytes / usable bytes per PE (capacity minus what every PE must hold)."""
        return sum(math.ceil(layer.lower_bound_bytes / self.usable_bytes(layer.kind)) for layer in self.layers)

    def usable_bytes(self, kind: str) -> int:
        sizes = images.section_sizes(kind, 0, 0, 0, "dense", 0, "dense", 0, _lut_entries(kind))
        return self.memory.image_capacity - sum(images.aligned(sizes[s]) for s in FIXED_SECTIONS)

    def to_json(self) -> dict:
        return {
            "board": asdict(self.board),
            "memory": asdict(self.memory),
            "key_layout": {"unit_bits": images.UNIT_BITS, "channel_bit": images.CHANNEL_BIT,
                           "population_shift": images.POPULATION_SHIFT, "host_population": images.HOST_POPULATION},
            "input_size": self.input_size,
            "output": {"population": self.output[0], "channel": self.output[1]},
            "layers": [asdict(layer) for layer in self.layers],
            "pes": [asdict(pe) for pe in self.pes],
            "routing": {str(chip): [[e.key, e.mask, list(e.links), list(e.cores), e.host] for e in entries]
                        for chip, entries in self.routing.items()},
        }


_LUT_ENTRIES = 1 << get_profile("spinnaker2").activation.index_bits


def _lut_entries(kind: str) -> int:
    return _LUT_ENTRIES if kind == "egru" else 0


@dataclass(frozen=True)
class _LayerCosts:
    """Prefix sums of non-zero weights per unit, for O(1) slice sizes."""

    kind: str
    x_rows: int
    h_rows: int
    x_nnz: np.ndarray  # [units + 1] cumulative
    h_nnz: np.ndarray

    def slice(self, u0: int, u1: int) -> tuple[int, str, str | None, int, int]:
        n = u1 - u0
        cols = 3 * n if self.kind == "egru" else n
        x_nnz = int(self.x_nnz[u1] - self.x_nnz[u0])
        h_nnz = int(self.h_nnz[u1] - self.h_nnz[u0])
        x_format = images.choose_format(self.x_rows, cols, x_nnz)
        h_format = images.choose_format(self.h_rows, cols, h_nnz) if self.kind == "egru" else None
        sizes = images.section_sizes(self.kind, n, self.x_rows, self.h_rows, x_format, x_nnz, h_format, h_nnz,
                                     _lut_entries(self.kind))
        return images.image_bytes(sizes), x_format, h_format, x_nnz, h_nnz

    def lower_bound_bytes(self, units: int) -> int:
        """Bytes no split of the layer into PEs can go below, whatever format each PE's slice takes.

        Per matrix: all dense costs rows x cols; otherwise some PE holds CSR, which costs at least one
        row-pointer array of rows + 1 uint16 (csr8/csr16; csr8b has one per bank) and every unit's
        non-zeros at 2 bytes at least (a 1-byte index and the value; csr16 takes 3), or rows x gates
        for a unit held dense.  Bank pointers beyond the first are not counted (a PE of <= 256
        columns needs none), nor the alignment padding.
        """
        gates = 3 if self.kind == "egru" else 1
        cols = gates * units
        per_unit = images.section_sizes(self.kind, 1, 0, 0, "dense", 0, "dense", 0, 0)
        weights = 0
        for rows, nnz in ((self.x_rows, self.x_nnz), (self.h_rows, self.h_nnz)):
            if rows:
                per_unit_nnz = np.diff(nnz)
                csr = 2 * (rows + 1) + int(np.minimum(gates * rows, 2 * per_unit_nnz).sum())
                weights += min(rows * cols, csr)
        return weights + units * sum(per_unit[s] for s in UNIT_SECTIONS)


def _costs(layer) -> _LayerCosts:
    def prefix(counts):
        return np.concatenate([[0], np.cumsum(counts)])

    if isinstance(layer, EGRU):
        h = layer.hidden
        x = np.count_nonzero(layer.kernel, axis=0).reshape(3, h).sum(axis=0)
        r = np.count_nonzero(layer.recurrent_kernel, axis=0).reshape(3, h).sum(axis=0)
        return _LayerCosts("egru", layer.in_size, h, prefix(x), prefix(r))
    x = np.count_nonzero(layer.weight, axis=1)
    return _LayerCosts("linear", layer.in_size, 0, prefix(x), np.zeros(layer.out_size + 1, np.int64))


def _split(costs: _LayerCosts, units: int, capacity: int, max_units: int, where: str) -> list[tuple[int, int]]:
    """Equal contiguous slices of n units (the last one shorter), n the largest that fits every slice:
    what py-spinnaker2 makes of a population with ``set_max_atoms_per_core(n)`` (run.py), so that the
    board's PEs hold exactly these slices and images."""
    limit = min(max_units, units, images.CHANNEL_BIT, 0xFFFF)
    for u0 in range(units):
        single = costs.slice(u0, u0 + 1)[0]
        if single > capacity:
            raise MappingError(f"{where}: unit {u0} alone needs {single:,} bytes but a PE image holds "
                               f"{capacity:,} bytes")
    lo, hi = 1, limit
    while lo < hi:  # the largest n whose first slice fits bounds every n that fits all slices
        mid = (lo + hi + 1) // 2
        if costs.slice(0, mid)[0] <= capacity:
            lo = mid
        else:
            hi = mid - 1
    for n in range(lo, 0, -1):
        slices = [(u0, min(u0 + n, units)) for u0 in range(0, units, n)]
        if all(costs.slice(u0, u1)[0] <= capacity for u0, u1 in slices):
            return slices
    raise AssertionError("one unit per PE always fits")  # each unit was checked above


def chip_layers(graph: Graph) -> list[tuple[int, EGRU | Linear]]:
    """(graph index, layer) of the layers that run on PEs: all but the front-end (an embedding look-up,
    frame layers and the Linear layers before the first EGRU run on the host)."""
    return list(enumerate(graph.layers))[len(graph.frontend):]


def _check_slices(slices: list[tuple[int, int]], costs: _LayerCosts, capacity: int, first: int, where: str) -> None:
    """Given slices (a bundle being re-checked) must each fit a PE image, as ``_split``'s do."""
    for k, (u0, u1) in enumerate(slices):
        size = costs.slice(u0, u1)[0]
        if size > capacity:
            raise MappingError(f"{where}: PE {first + k} (units {u0}..{u1 - 1}) needs an image of {size:,} bytes "
                               f"but a PE image holds {capacity:,} bytes")


def map_graph(graph: Graph, memory: PEMemory, board: Board = BOARD, max_units_per_pe: int | None = None,
              slices: list[list[tuple[int, int]]] | None = None) -> Mapping:
    """Split, place and route ``graph`` (quantized for spinnaker2).

    ``slices`` (per chip layer, the unit slices of its PEs) replaces the split: a bundle's placement
    is re-derived from its own slices so that a reader can compare every other field.
    """
    if graph.profile != "spinnaker2":
        raise MappingError(f"graph is quantized for profile {graph.profile!r}, not 'spinnaker2'")
    on_chip = chip_layers(graph)
    input_size = on_chip[0][1].in_size  # what the host sends: input features or the front-end's output
    if input_size > images.CHANNEL_BIT or any(layer.out_size > images.CHANNEL_BIT for _, layer in on_chip):
        raise MappingError(f"a population larger than {images.CHANNEL_BIT:,} units does not fit the packet key")
    plans, pes = [], []
    in_population, in_channel = images.HOST_POPULATION, 0
    for depth, (i, layer) in enumerate(on_chip, start=1):
        kind = "egru" if isinstance(layer, EGRU) else "linear"
        where = f"layer {i} ({type(layer).__name__}, {layer.out_size} units)"
        costs = _costs(layer)
        population = i + 1
        sources = [(images.population_key(in_population, in_channel), images.MATRIX_X)]
        if kind == "egru":
            sources.append((images.population_key(population), images.MATRIX_H))
        first = len(pes)
        if slices is None:
            layer_slices = _split(costs, layer.out_size, memory.image_capacity, max_units_per_pe or layer.out_size,
                                  where)
        else:
            layer_slices = slices[depth - 1]
            _check_slices(layer_slices, costs, memory.image_capacity, first, where)
        if first + len(layer_slices) > board.pes:
            raise MappingError(f"{where} does not fit the board: its {len(layer_slices):,} PEs bring the model to "
                               f"{first + len(layer_slices):,} PEs but a board has {board.pes:,} "
                               f"({board.chips} chips x {board.pes_per_chip} PEs)")
        for u0, u1 in layer_slices:
            index = len(pes)
            size, x_format, h_format, x_nnz, h_nnz = costs.slice(u0, u1)
            pes.append(PE(index=index, chip=index // board.pes_per_chip, core=index % board.pes_per_chip,
                          layer=i, kind=kind, units=(u0, u1), depth=depth, population=population,
                          key_base=images.packet_key(population, u0), sources=tuple(sources),
                          x_format=x_format, h_format=h_format, x_nnz=x_nnz, h_nnz=h_nnz, image_bytes=size))
        plans.append(LayerPlan(layer=i, kind=kind, units=layer.out_size, population=population, depth=depth,
                               pes=(first, len(pes)), input_channel=in_channel,
                               lower_bound_bytes=costs.lower_bound_bytes(layer.out_size)))
        in_population, in_channel = population, int(kind == "egru" and layer.use_trace)
    output = (in_population, in_channel)
    routing = _route(input_size, plans, pes, output, board)
    return Mapping(board, memory, tuple(plans), tuple(pes), routing, input_size, output)


# --------------------------------------------------------------------------- routing


def chip_xy(chip: int, board: Board) -> tuple[int, int]:
    return chip % board.mesh[0], chip // board.mesh[0]


def _chip_at(x: int, y: int, board: Board) -> int:
    return y * board.mesh[0] + x


def _step_towards(src: tuple[int, int], dst: tuple[int, int]) -> str:
    """Dimension-order routing: X first, then Y."""
    if dst[0] != src[0]:
        return "E" if dst[0] > src[0] else "W"
    return "N" if dst[1] > src[1] else "S"


def aligned_blocks(start: int, stop: int):
    """Cover [start, stop) with power-of-two blocks aligned to their size: (first, size)."""
    while start < stop:
        size = start & -start if start else 1 << (stop - 1).bit_length()
        while start + size > stop:
            size //= 2
        yield start, size
        start += size


def _tree(source_chip: int, targets: dict[int, tuple[set, bool]], board: Board) -> dict[int, dict]:
    """Per chip of the multicast tree: outgoing links, local cores, host delivery, arrival direction."""
    nodes: dict[int, dict] = {source_chip: {"links": set(), "cores": set(), "host": False, "arrived": None}}
    for chip, (cores, host) in targets.items():
        here, goal = chip_xy(source_chip, board), chip_xy(chip, board)
        current = source_chip
        while here != goal:
            link = _step_towards(here, goal)
            nodes[current]["links"].add(link)
            here = (here[0] + LINKS[link][0], here[1] + LINKS[link][1])
            current = _chip_at(*here, board)
            nodes.setdefault(current, {"links": set(), "cores": set(), "host": False, "arrived": link})
        nodes[chip]["cores"] |= cores
        nodes[chip]["host"] |= host
    return nodes


def _route(input_size: int, plans: list[LayerPlan], pes: list[PE], output: tuple[int, int], board: Board) -> dict:
    consumers: dict[tuple[int, int], list[PE]] = {}
    for pe in pes:
        for key, _ in pe.sources:
            consumers.setdefault((key >> 1, key & 1), []).append(pe)
    # (population, channel) -> [(source chip, unit range)]
    sources: dict[tuple[int, int], list[tuple[int, int, int]]] = {
        (images.HOST_POPULATION, 0): [(board.host_chip, 0, input_size)]}
    for plan in plans:
        channels = {(plan.population, c) for c in (0, 1)} & (set(consumers) | {output})
        for population, channel in channels:
            ranges = sources.setdefault((population, channel), [])
            for pe in pes[plan.pes[0]:plan.pes[1]]:
                if ranges and ranges[-1][0] == pe.chip and ranges[-1][2] == pe.units[0]:
                    ranges[-1] = (pe.chip, ranges[-1][1], pe.units[1])
                else:
                    ranges.append((pe.chip, *pe.units))
    tables: dict[int, list[RouteEntry]] = {}
    for (population, channel), ranges in sources.items():
        targets: dict[int, tuple[set, bool]] = {}
        for pe in consumers.get((population, channel), []):
            targets.setdefault(pe.chip, (set(), False))[0].add(pe.core)
        if (population, channel) == output:
            cores, _ = targets.get(board.host_chip, (set(), False))
            targets[board.host_chip] = (cores, True)
        for source_chip, start, stop in ranges:
            for chip, node in _tree(source_chip, targets, board).items():
                straight = (node["arrived"] is not None and not node["cores"] and not node["host"]
                            and node["links"] == {node["arrived"]})
                if straight:
                    continue
                for first, size in aligned_blocks(start, stop):
                    tables.setdefault(chip, []).append(RouteEntry(
                        key=images.packet_key(population, first, channel),
                        mask=0xFFFFFFFF & ~(size - 1), links=tuple(sorted(node["links"])),
                        cores=tuple(sorted(node["cores"])), host=node["host"]))
    for chip, entries in tables.items():
        if len(entries) > board.routing_entries:
            raise MappingError(f"chip {chip}: routing table needs {len(entries):,} entries but a SpiNNaker2 "
                               f"router holds {board.routing_entries:,}")
    return {chip: tuple(entries) for chip, entries in sorted(tables.items())}
