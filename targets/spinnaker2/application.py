"""The EGRU PE program as py-spinnaker2 applications: what ``run.py`` hands py-spinnaker2 for a board run.

py-spinnaker2's own sources are not reachable from here (not on PyPI; gitlab.com/spinnaker2/py-spinnaker2).
Everything below is built to what public users of it show, and every py-spinnaker2 name says where it was
seen ([..] keys of ``SOURCES``).  Names seen in one source only are marked "one source"; the one name no
public source shows (how a custom application is made known under its ``neuron_model`` name) is marked
UNVERIFIED and lives in ``register`` alone.  ``tests/fake_spinnaker2`` holds exactly this surface.

Two applications, one PE program (``pe/``, board build; the QEMU build runs the same kernel and application
layer, ``build.py``):

* ``egru`` (``EGRUApplication``): a population per chip layer of the bundle (EGRU or Linear), split across
  PEs in the bundle's equal slices (``max_atoms_per_core`` = the slice size the mapping chose from the
  memory model).  Each PE gets the data spec, its params (runtime settings and the key translation table
  from py-spinnaker2's keys to the kernel's, built from the mapper's key offsets) and the bundle's image
  for exactly its slice, at the fixed addresses of ``memory_map.py``.  The output population records "v":
  per tick the values it produces, NESTML's voltage-record layout, read back by ``get_voltages()``.
* ``egru_input`` (``EGRUInputApplication``): the input population.  Inputs are preloaded, not streamed:
  each input PE holds its units' quantized sequence (or embedded tokens) and sends the non-zero values as
  packets with payload at each tick (a py-spinnaker2 ``spike_list`` input carries no payload).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.reference import quantize_input
from egru_deploy.targets.spinnaker2 import build, images, memory_map, qemu
from egru_deploy.targets.spinnaker2.loader import Spinnaker2Bundle

# Public sources of every py-spinnaker2 name used here and in run.py (repository, path[, commit]).
SOURCES = {
    "NIR-rnn": "github:neuromorphs/NIR paper/03_rnn/s2_apply.py",
    "NIR-lif": "github:neuromorphs/NIR paper/01_lif/lif_spinnaker2.py",
    "NIR-doc": "github:neuromorphs/NIR docs/source/examples/spinnaker2/import.ipynb",
    "NICE": "github:bvogginger/NIR_Tutorial_at_NICE_2024 notebooks/spinnaker2_demo/spinnaker2_demo.ipynb",
    "DNF": "github:ngr-francesco/dynamic-neural-field-spinnaker2 dynamic_neural_field.py",
    "NESTML-py": "github:nest/nestml pynestml/codegeneration/resources_spinnaker2/@NEURON_NAME@.py.jinja2 "
                 "(4bde5dbec, df6119da6: add_mem_data_to_send and fixed ByteAddr addresses; 00cddf4f7, fcc36c737: "
                 "MemoryHandler, regions Enum)",
    "NESTML-c": "github:nest/nestml pynestml/codegeneration/resources_spinnaker2/main.c.jinja2, qpe_isr.c.jinja2, "
                "qpe.ld.jinja2, data_specification.h.jinja2, Makefile.jinja2",
}

APP_NAME = "egru"
INPUT_APP_NAME = "egru_input"
RECORD_NAME = "v"  # the recordable [NESTML-py recordables; NIR-rnn, NICE, DNF record=[..., "v"], get_voltages()]
RECORD_REGION = "voltage_record"  # [NESTML-py df6119da6: add_mem_region_to_read("voltage_record", ...)]
STATUS_REGION = "egru_status"  # our status region, read back for bring-up (name ours)
PARAMS_KEY = "egru_deploy"  # the one entry of our populations' params dicts (name ours)
EXACT_FLOAT = 1 << 24  # a recorded value travels as float32: exact up to 2^24


class BoardError(UserError):
    """The bundle or the inputs cannot run on a SpiNNaker2 board as planned (one line, with the numbers)."""


# --------------------------------------------------------------------------- what the network holds


@dataclass(frozen=True)
class LayerSpec:
    """One chip layer of the bundle as a py-spinnaker2 population of the ``egru`` application."""

    name: str  # population name
    graph_layer: int
    kernel_population: int  # the kernel's key population (placement "population")
    kind: str  # "egru" | "linear"
    depth: int  # hops from the input PEs: computes step t at tick t + depth
    units: int
    atoms_per_core: int  # the bundle's slice size
    first_pe: int  # bundle index of its first PE
    images: tuple[bytes, ...]  # per slice, the bundle's (checked) image
    sources: tuple[tuple[str, int, int], ...]  # (population name, kernel population, channel) it receives
    sends: bool  # some population receives its channel-0 packets
    record_channel: int | None  # the channel recorded (output population), else None
    latency: int  # the network's

    def image(self, start: int, stop: int, where: str) -> bytes:
        k, rest = divmod(start, self.atoms_per_core)
        if rest or stop != min(start + self.atoms_per_core, self.units):
            raise BoardError(f"{where}: py-spinnaker2 gave this PE units {start}..{stop - 1} of population "
                             f"{self.name}, but the bundle's PEs hold slices of {self.atoms_per_core} units")
        return self.images[k]


@dataclass
class InputSpec:
    """The input population (``egru_input``): the current sample's quantized inputs (T, units)."""

    name: str
    units: int
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    latency: int = 0  # the network's: the run has T + latency ticks, the input PEs send during the first T


def pe_ticks(sim_ticks: int, latency: int, depth: int) -> int:
    """The ticks a PE at ``depth`` runs in a run of ``sim_ticks`` = T + latency: T + depth (its last step
    is T - 1 at tick T - 1 + depth; it then stops, done, so nothing it would compute later counts)."""
    return sim_ticks - (latency - depth)


@dataclass(frozen=True)
class BoardPlan:
    """A checked bundle laid out as py-spinnaker2 populations."""

    loaded: Spinnaker2Bundle
    input: InputSpec
    layers: tuple[LayerSpec, ...]
    output: str  # name of the population whose "v" record is the network's output
    latency: int  # ticks from the input PEs to the output population

    @property
    def system(self) -> hwsim.System:
        return self.loaded.system

    def layer(self, name: str) -> LayerSpec:
        return next(spec for spec in self.layers if spec.name == name)


def population_name(graph_layer: int) -> str:
    return f"layer{graph_layer}"


def board_plan(loaded: Spinnaker2Bundle) -> BoardPlan:
    """The bundle's chip layers as populations; refuses what the board path cannot carry (one line)."""
    placement = loaded.system.placement
    out_population, out_channel = placement["output"]["population"], placement["output"]["channel"]
    plans = placement["layers"]
    by_population = {images.HOST_POPULATION: "input"}
    specs = []
    for depth, plan in enumerate(plans):
        first, stop = plan["pes"]
        pes = placement["pes"][first:stop]
        n = pes[0]["units"][1] - pes[0]["units"][0]
        name = population_name(plan["layer"])
        where = f"layer {plan['layer']} ({plan['kind']}, {plan['units']} units)"
        for k, pe in enumerate(pes):
            if pe["units"] != [k * n, min((k + 1) * n, plan["units"])]:
                raise BoardError(f"{where}: PE {pe['index']} holds units {pe['units'][0]}..{pe['units'][1] - 1}, but a "
                                 f"py-spinnaker2 population splits into equal slices of {n} units "
                                 f"(set_max_atoms_per_core): recompile the bundle")
        previous = plans[depth - 1]["population"] if depth else images.HOST_POPULATION
        sources = [(by_population[previous], previous, plan["input_channel"])]
        if plan["kind"] == "egru":
            sources.append((name, plan["population"], 0))
        if plan["input_channel"] == 1:
            raise BoardError(f"{where} reads the trace of the layer before it: a second packet stream per unit has no "
                             f"public py-spinnaker2 counterpart (one key range per PE); run it with emulate")
        is_output = plan["population"] == out_population
        sends = plan["kind"] == "egru" or (depth + 1 < len(plans))
        specs.append(LayerSpec(name, plan["layer"], plan["population"], plan["kind"], plan["depth"], plan["units"], n,
                               first, tuple(loaded.images[first:stop]), tuple(sources), sends,
                               out_channel if is_output else None, len(plans)))
        by_population[plan["population"]] = name
    return BoardPlan(loaded, InputSpec("input", placement["input_size"], latency=len(plans)), tuple(specs),
                     by_population[out_population], len(plans))


# --------------------------------------------------------------------------- per-PE regions


def input_atoms_per_core(values: np.ndarray) -> int:
    """The largest n such that every input PE of n units holds its part of the sequence (values (T, units))."""
    units = values.shape[1]
    for n in range(units, 0, -1):
        if all(memory_map.input_bytes(values[:, u0:u0 + n]) <= memory_map.IMAGE_CAPACITY for u0 in range(0, units, n)):
            return n
    raise BoardError(f"input: one input unit's sequence of {values.shape[0]:,} steps needs "
                     f"{memory_map.input_bytes(values[:, :1]):,} bytes but a PE holds {memory_map.IMAGE_CAPACITY:,} "
                     f"bytes: run shorter sequences")


def layer_regions(spec: LayerSpec, start: int, stop: int, out_board_key: int, ranges, n_ticks: int,
                  timer_period: int, where: str) -> memory_map.Regions:
    """What one PE of a layer population holds: the bundle's image of its slice, params, the record size."""
    image = spec.image(start, stop, where)
    record_units = stop - start if spec.record_channel is not None else 0
    params = memory_map.Params(
        mode=memory_map.MODE_KERNEL, n_ticks=n_ticks, timer_period=timer_period,
        out_kernel_key=images.packet_key(spec.kernel_population, start),
        out_board_key=out_board_key if spec.sends else memory_map.NO_KEY, out_trace_board_key=memory_map.NO_KEY,
        out_units=stop - start, record_units=record_units,
        record_channel=spec.record_channel if record_units else memory_map.NO_CHANNEL, ranges=tuple(ranges))
    return _checked(memory_map.Regions(params, image, memory_map.record_bytes(record_units, n_ticks)), where)


def input_regions(spec: InputSpec, start: int, stop: int, out_board_key: int, n_ticks: int, timer_period: int,
                  where: str) -> memory_map.Regions:
    params = memory_map.Params(mode=memory_map.MODE_INPUT, n_ticks=n_ticks, timer_period=timer_period,
                               out_kernel_key=images.packet_key(images.HOST_POPULATION, start),
                               out_board_key=out_board_key, out_trace_board_key=memory_map.NO_KEY,
                               out_units=stop - start)
    return _checked(memory_map.Regions(params, memory_map.pack_input(spec.values[:, start:stop])), where)


def _checked(regions: memory_map.Regions, where: str) -> memory_map.Regions:
    try:
        regions.check(where)
    except memory_map.MemoryMapError as e:
        raise BoardError(str(e)) from None
    return regions


def key_ranges(spec: LayerSpec, slices) -> list[memory_map.KeyRange]:
    """The translation table of a layer PE: for every PE of a source population, (its board key offset, its
    atoms, the kernel key of its first unit).  ``slices``: (population name, start, stop, key offset)."""
    sources = {name: (population, channel) for name, population, channel in spec.sources}
    out = []
    for name, start, stop, offset in slices:
        if name in sources:
            population, channel = sources[name]
            out.append(memory_map.KeyRange(int(offset), stop - start, images.packet_key(population, start, channel)))
    return out


def _slices_of(mapper) -> list[tuple[str, int, int, int]]:
    """(population name, start, stop, key offset) of every PE py-spinnaker2 placed.  [NESTML-py, one source:
    mapper.key_offsets[pe], mapper.mapping.get_population_slice(pe) with .pop, .start, .stop]"""
    out = []
    for pe, offset in mapper.key_offsets.items():
        piece = mapper.mapping.get_population_slice(pe)
        out.append((piece.pop.name, int(piece.start), int(piece.stop), int(offset)))
    return out


def _add_regions(config, regions: memory_map.Regions, byte_addr, memory_region, record: bool) -> None:
    for address, data in regions.writes():
        config.add_mem_data_to_send(byte_addr(address).to_WordAddr(), memory_map.words(data))  # [NESTML-py df6119da6]
    config.add_mem_region_to_read(STATUS_REGION, memory_region(byte_addr(memory_map.STATUS_ADDRESS).to_WordAddr(),
                                                               memory_map.STATUS.size // 4))  # [NESTML-py]
    if record:
        config.add_mem_region_to_read(RECORD_REGION, memory_region(byte_addr(regions.record_address).to_WordAddr(),
                                                                   regions.record_bytes // 4))


def application_classes() -> tuple[type, type]:
    """The two application classes, subclassing the installed py-spinnaker2's BaseApplication."""
    from spinnaker2.configuration import MemoryRegion, PEConfig  # [NESTML-py]
    from spinnaker2.coordinates import ByteAddr  # [NESTML-py]
    from spinnaker2.neuron_models.application import BaseApplication  # [NESTML-py]

    def slice_of(mapper, pe):
        piece = mapper.mapping.get_population_slice(pe)  # [NESTML-py, one source]
        return piece, int(piece.start), int(piece.stop)

    class EGRUApplication(BaseApplication):
        """A chip layer of an egru-deploy bundle (EGRU or Linear) on SpiNNaker2 PEs."""

        app_name = APP_NAME
        max_atoms_per_core = 256  # [NESTML-py]; run.py sets each population's own from the bundle's slices
        splittable = True  # [NESTML-py]
        recordables = [RECORD_NAME]  # [NESTML-py]
        # fixed regions [NESTML-py: ByteAddr class attributes; NESTML-c: the C side reads the same addresses]
        data_spec_addr = ByteAddr(memory_map.DATA_SPEC_ADDRESS)
        params_addr = ByteAddr(memory_map.PARAMS_ADDRESS)
        image_addr = ByteAddr(memory_map.IMAGE_ADDRESS)
        log_addr = ByteAddr(memory_map.LOG_ADDRESS)

        def __init__(self):
            BaseApplication.__init__(self, name=APP_NAME)  # [NESTML-py df6119da6]

        def pe_config(self, pe, mapper, sim_cfg, debug=False):  # [NESTML-py]
            config = PEConfig(pe, self.name, self.mem_file)  # [NESTML-py]
            piece, start, stop = slice_of(mapper, pe)
            spec = piece.pop.params[PARAMS_KEY]
            where = f"population {spec.name} units {start}..{stop - 1}"
            record = RECORD_NAME in piece.pop.record and spec.record_channel is not None  # [NESTML-py]
            ticks = pe_ticks(int(sim_cfg["n_simulation_ticks"]), spec.latency, spec.depth)
            regions = layer_regions(spec, start, stop, mapper.key_offsets[pe], key_ranges(spec, _slices_of(mapper)),
                                    ticks, int(sim_cfg["timer_period"]), where)
            _add_regions(config, regions, ByteAddr, MemoryRegion, record)
            return config

    class EGRUInputApplication(BaseApplication):
        """Input PEs holding the quantized input sequence; they send it as graded packets, tick by tick."""

        app_name = INPUT_APP_NAME
        max_atoms_per_core = 256
        splittable = True
        recordables = []
        data_spec_addr = ByteAddr(memory_map.DATA_SPEC_ADDRESS)

        def __init__(self):
            BaseApplication.__init__(self, name=INPUT_APP_NAME)

        def pe_config(self, pe, mapper, sim_cfg, debug=False):
            config = PEConfig(pe, self.name, self.mem_file)
            piece, start, stop = slice_of(mapper, pe)
            spec = piece.pop.params[PARAMS_KEY]
            ticks = pe_ticks(int(sim_cfg["n_simulation_ticks"]), spec.latency, 0)
            regions = input_regions(spec, start, stop, mapper.key_offsets[pe], ticks, int(sim_cfg["timer_period"]),
                                    f"input units {start}..{stop - 1}")
            _add_regions(config, regions, ByteAddr, MemoryRegion, False)
            return config

    return EGRUApplication, EGRUInputApplication


def register(spinnaker2, classes) -> None:
    """UNVERIFIED (no public source): make py-spinnaker2 build populations whose ``neuron_model`` is an
    application's name with that application.  NESTML's builder only copies its generated class into an
    install folder (github:nest/nestml pynestml/codegeneration/spinnaker2_builder.py); how py-spinnaker2 then
    finds it is not shown.  This function is the one place to adapt (docs/spinnaker2_board.md)."""
    for cls in classes:
        spinnaker2.snn.register_neuron_model(cls.app_name, cls)


# --------------------------------------------------------------------------- one PE under QEMU, board memory


@dataclass(frozen=True)
class PERun:
    """What one PE did under QEMU with exactly the memory the host writes on the board."""

    sent: list  # per tick: list of (board key, payload)
    counters: dict  # the kernel's saturation counters (kernel PEs)
    status: dict  # the status region after the run (done, ticks, error, dropped, ...)
    record: np.ndarray | None  # record region words (output PEs)


def memory_blob(writes) -> bytes:
    """The PE memory from REGIONS_ADDRESS on, from (word address, words) writes as PEConfig collects them."""
    end = max(4 * int(address) + 4 * len(data) for address, data in writes)
    blob = bytearray(end - memory_map.REGIONS_ADDRESS)
    for address, data in writes:
        at = 4 * int(address) - memory_map.REGIONS_ADDRESS
        if at < 0:
            raise BoardError(f"a write at 0x{4 * int(address):05x} lies in the PE program, below the regions")
        blob[at:at + 4 * len(data)] = np.asarray(data, np.int64).astype("<u4").tobytes()
    return bytes(blob)


def emulate_pe(writes, received, kernel: bool, record_words: int, timeout_s: float = qemu.DEFAULT_TIMEOUT_S,
               what: str = "PE") -> PERun:
    """Run the QEMU build of the PE program on the memory the host writes on the board (``writes``: (word
    address, words)), fed ``received`` (per tick, a list of (board key, payload)) for one sample."""
    elf = build.link(b"", what, blob=memory_blob(writes))
    stream = [[(np.array([k for k, _ in tick], np.uint32), np.array([p for _, p in tick], np.int64))
               for tick in received]]
    words = np.frombuffer(qemu.run_elf(elf, qemu.encode_stream(stream), timeout_s, what), "<u4")
    cursor, sent = 0, []
    for _ in received:
        n = int(words[cursor])
        pairs = words[cursor + 1:cursor + 1 + 2 * n].reshape(n, 2)
        sent.append([(int(k), int(np.uint32(p).view(np.int32))) for k, p in pairs])
        cursor += 1 + 2 * n
    counters = {}
    if kernel:
        counters = dict(zip(images.COUNTERS, words[cursor:cursor + len(images.COUNTERS)].tolist()))
        cursor += len(images.COUNTERS)
    status = memory_map.decode_status(words[cursor:cursor + memory_map.STATUS.size // 4].tobytes())
    cursor += memory_map.STATUS.size // 4
    record = words[cursor:cursor + record_words].copy() if record_words else None
    cursor += record_words
    if cursor != len(words):
        raise qemu.QemuError(f"{what}: sent.bin holds {len(words) - cursor} unexpected words")
    return PERun(sent, counters, status, record)


@dataclass(frozen=True)
class BoardPE:
    """One PE of a board run as py-spinnaker2 placed it: its slice, key offset and what the host writes."""

    population: str
    start: int
    stop: int
    key_offset: int
    writes: list  # (word address, words), as PEConfig.add_mem_data_to_send got them
    record_words: int  # size of its "voltage_record" region (0: none)


def emulate_board(plan: BoardPlan, x: np.ndarray, pes: list[BoardPE], sim_ticks: int,
                  timeout_s: float = qemu.DEFAULT_TIMEOUT_S) -> list[PERun]:
    """QEMU standing in for the chip, for one sample ``x`` (1, T, I): every PE runs the QEMU build on exactly
    the memory the host writes, fed the packets hwsim routes to it in the board's keys (from the key
    offsets); what it sends, its counters and its status (done after its ticks, no error, nothing dropped)
    must equal hwsim's.  Returns each PE's run (the output PEs' record regions among them)."""
    system = plan.system
    result = hwsim.simulate(system, x, keep_streams=True)
    values = quantize_input(system.graph, x)[0]
    name_of = {images.HOST_POPULATION: plan.input.name, **{s.kernel_population: s.name for s in plan.layers}}

    def board_key(key: int) -> int:
        population, unit = key >> images.POPULATION_SHIFT, key & (images.CHANNEL_BIT - 1)
        for pe in pes:
            if pe.population == name_of[population] and pe.start <= unit < pe.stop:
                return pe.key_offset + unit - pe.start
        raise qemu.QemuError(f"no PE holds unit {unit} of population {name_of[population]}")

    runs = []
    for pe in pes:
        is_input = pe.population == plan.input.name
        spec = None if is_input else plan.layer(pe.population)
        ticks = pe_ticks(sim_ticks, plan.latency, 0 if is_input else spec.depth)
        received, expected = [[] for _ in range(ticks)], [[] for _ in range(ticks)]
        if is_input:
            saturations = {}
            for t in range(values.shape[0]):
                units = np.flatnonzero(values[t, pe.start:pe.stop]) + pe.start
                expected[t] = [(board_key(images.packet_key(0, int(u))), int(values[t, u])) for u in units]
        else:
            stream = hwsim.pe_packets(system, result, spec.first_pe + pe.start // spec.atoms_per_core)
            saturations = stream.saturations
            for t, (keys, payloads) in enumerate(stream.received[0]):
                received[t] = [(board_key(int(k)), int(p)) for k, p in zip(keys, payloads)]
            for t, (keys, payloads) in enumerate(stream.sent[0]):
                expected[t] = [(board_key(int(k)), int(p)) for k, p in zip(keys, payloads)
                               if spec.sends and not int(k) & images.CHANNEL_BIT]  # traces stay on the PE
        what = f"{pe.population} units {pe.start}..{pe.stop - 1}"
        out = emulate_pe(pe.writes, received, not is_input, pe.record_words, timeout_s, what)
        for t, (got, want) in enumerate(zip(out.sent, expected)):
            if sorted(got) != sorted(want):
                raise qemu.QemuError(f"{what} tick {t}: QEMU sent {sorted(got)[:4]}..., hwsim {sorted(want)[:4]}...")
        bad = {k: out.status[k] for k in ("error", "dropped", "unrouted") if out.status[k]}
        if out.status["done"] != 1 or out.status["ticks"] != ticks or bad:
            raise qemu.QemuError(f"{what}: status {out.status}, expected done after {ticks} ticks")
        if not is_input and out.counters != {k: saturations.get(k, 0) for k in images.COUNTERS}:
            raise qemu.QemuError(f"{what}: counters {out.counters} vs hwsim {saturations}")
        runs.append(out)
    return runs



def planned_pes(plan: BoardPlan, values: np.ndarray, sim_ticks: int, input_atoms: int | None = None,
                stride: int = 1 << 16, timer_period: int = 150_000) -> list[BoardPE]:
    """The PEs of a board run without a board: the plan's populations in equal slices (input PEs of
    ``input_atoms`` units), key offsets one ``stride`` apart (our choice: py-spinnaker2's are its own), each
    with the regions its application writes.  ``values``: one sample's quantized inputs (T, I)."""
    n_in = input_atoms or input_atoms_per_core(values)
    slices = [(plan.input.name, u, min(u + n_in, plan.input.units)) for u in range(0, plan.input.units, n_in)]
    for spec in plan.layers:
        slices += [(spec.name, u, min(u + spec.atoms_per_core, spec.units))
                   for u in range(0, spec.units, spec.atoms_per_core)]
    placed = [(name, start, stop, (k + 1) * stride) for k, (name, start, stop) in enumerate(slices)]
    sample = InputSpec(plan.input.name, plan.input.units, values, plan.latency)
    out = []
    for name, start, stop, offset in placed:
        where = f"{name} units {start}..{stop - 1}"
        if name == plan.input.name:
            regions = input_regions(sample, start, stop, offset, pe_ticks(sim_ticks, plan.latency, 0), timer_period,
                                    where)
        else:
            spec = plan.layer(name)
            regions = layer_regions(spec, start, stop, offset, key_ranges(spec, placed),
                                    pe_ticks(sim_ticks, plan.latency, spec.depth), timer_period, where)
        writes = [(address // 4, memory_map.words(data)) for address, data in regions.writes()]
        out.append(BoardPE(name, start, stop, offset, writes, regions.record_bytes // 4))
    return out
