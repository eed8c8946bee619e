"""SpiNNaker2 board path (issue 12): the flat PE memory map, the two builds of the PE program, and run.py
end to end against a fake py-spinnaker2 that holds only the publicly observed surface
(``tests/fake_spinnaker2``), with QEMU standing in for the chip: every PE runs the QEMU build of the same
kernel and application layer on exactly the memory the application writes for the board, fed the packets
hwsim routes to it in the fake's keys; its packets, status region (done flag) and record region are
checked, and the record comes back through get_voltages() into our output format.
"""
from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from egru_deploy import bundle, ir, reference
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.ir import EGRU, EGRUQuant, Graph, Input, Linear, LinearQuant, QType
from egru_deploy.profiles import SPINNAKER2
from egru_deploy.targets.spinnaker2 import application, build, loader, memory_map, qemu, run
from egru_deploy.targets.spinnaker2.compile import PLACEMENT_JSON, TARGET_DIR, compile_spinnaker2
from egru_deploy.targets.spinnaker2.mapping import BOARD

TESTS = Path(__file__).resolve().parent
FAKE = TESTS / "fake_spinnaker2"
EXAMPLES = TESTS.parent / "examples"
SOURCES = [TESTS.parent / "targets" / "spinnaker2" / name for name in ("run.py", "application.py")]
F = SPINNAKER2.state_frac
needs_gcc = pytest.mark.skipif(not build.toolchain_available(), reason="arm-none-eabi-gcc not installed")
needs_qemu = pytest.mark.skipif(not (build.toolchain_available() and qemu.qemu_available()),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed (scripts/setup_arm.sh)")


# --------------------------------------------------------------------------- nets and bundles


def small_graph(seed: int, trace_into_next: bool = False) -> tuple[Graph, np.ndarray]:
    """1-2 EGRU layers (no trace read by a next layer unless asked), optional readout, int8 weights."""
    rng = np.random.default_rng(100 + seed)
    in_size, steps = int(rng.integers(3, 8)), int(rng.integers(6, 12))
    layers, size, in_q = [], in_size, QType(32, 8)
    n_egru = 2 if trace_into_next else int(rng.integers(1, 3))
    for depth in range(n_egru):
        h = int(rng.integers(5, 14))
        density = rng.choice([1.0, 0.4])

        def weights(rows, cols):
            return (rng.integers(-127, 128, (rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.int8)

        quant = EGRUQuant(kernel=QType(8, 7), recurrent_kernel=QType(8, 8), bias=QType(32, F),
                          recurrent_bias=QType(32, F), thr=QType(32, F), input=in_q)
        use_trace = trace_into_next and depth == 0
        layers.append(EGRU(kernel=weights(size, 3 * h), recurrent_kernel=weights(h, 3 * h),
                           bias=rng.integers(-(1 << (F - 1)), 1 << (F - 1), 3 * h),
                           recurrent_bias=rng.integers(-(1 << (F - 2)), 1 << (F - 2), 3 * h),
                           thr=rng.integers(0, 1 << (F - 2), h), use_trace=use_trace, quant=quant))
        size, in_q = h, QType(32, F)
    if seed % 3 != 2:
        out = int(rng.integers(2, 6))
        layers.append(Linear(weight=rng.integers(-127, 128, (out, size)).astype(np.int8),
                             bias=rng.integers(-1024, 1024, out), relu=bool(seed % 2),
                             quant=LinearQuant(weight=QType(8, 7), bias=QType(32, 10), input=in_q,
                                               output=QType(32, 10))))
    graph = Graph(Input(in_size), tuple(layers), "sequence", profile="spinnaker2")
    return graph, rng.normal(0, 1.5, (2, steps, in_size)).astype(np.float32)


def write_bundle(graph: Graph, directory: Path, **options) -> Path:
    with bundle.writing(directory) as tmp:
        ir.save(graph, tmp)
        compile_spinnaker2(graph, tmp, None, **options)
        bundle.write_manifest(tmp, "spinnaker2", graph.profile)
    return directory


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2-board")
    return {seed: (*small_graph(seed), write_bundle(small_graph(seed)[0], root / f"net{seed}",
                                                    max_units_per_pe=3 + seed)) for seed in range(3)}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    if not (EXAMPLES / "digits_egru.pt").is_file():
        pytest.skip("examples/digits_egru.pt not built yet")
    from egru_deploy.compile import compile_model
    from egru_deploy.converters import load_model

    out = tmp_path_factory.mktemp("s2-board-digits") / "digits"
    calibration = np.load(EXAMPLES / "digits_train.npz")["x"][:64].astype(np.float32)
    compile_model(load_model(EXAMPLES / "digits_egru.pt"), "spinnaker2", out, calibration)
    return bundle.load_graph(out), np.load(EXAMPLES / "digits_test.npz")["x"][:2].astype(np.float32), out


# --------------------------------------------------------------------------- the fake package, QEMU as the chip


@pytest.fixture
def fake(monkeypatch):
    """The fake py-spinnaker2 importable as ``spinnaker2`` for one test."""
    for name in [m for m in sys.modules if m == "spinnaker2" or m.startswith("spinnaker2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(FAKE))
    import spinnaker2
    import spinnaker2.hardware

    spinnaker2.accessed.clear()
    yield spinnaker2
    for name in [m for m in sys.modules if m == "spinnaker2" or m.startswith("spinnaker2.")]:
        del sys.modules[name]


class QemuChip:
    """The fake's EXECUTOR: ``application.emulate_board`` on the PEs the fake placed and the memory their
    applications wrote; returns the record regions for the fake to decode."""

    def __init__(self, bundle_dir, x):
        self.plan = application.board_plan(loader.load(bundle_dir))
        self.x, self.sample, self.pe_runs = x, 0, []

    def __call__(self, fake_run):
        b = self.sample
        self.sample += 1
        mapper, pes, keys = fake_run.mapper, [], []
        for pe, config in fake_run.configs.items():
            piece = mapper.mapping._slices[pe]
            record = config.mem_regions_to_read.get(application.RECORD_REGION)
            pes.append(application.BoardPE(piece.pop.name, piece.start, piece.stop, mapper.key_offsets[pe],
                                           config.mem_data_to_send, record.size if record else 0))
            keys.append(pe)
        runs = application.emulate_board(self.plan, self.x[b:b + 1], pes, fake_run.timesteps)
        self.pe_runs += runs
        return {(pe, application.RECORD_REGION): out.record.tolist() for pe, out in zip(keys, runs)
                if out.record is not None}


PACKAGE_NAMES = {"spinnaker2", "package"}  # names the sources give the spinnaker2 package itself
MODULE_NAMES = {"hardware", "snn"}  # its modules, imported by name


def names_used(path: Path) -> set[str]:
    """spinnaker2 names a source imports (``from spinnaker2.X import Y`` -> X.Y) and reads on its modules
    (``snn.Population`` -> snn.Population, ``package.snn.f`` -> snn.f)."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spinnaker2":
            prefix = node.module.removeprefix("spinnaker2").lstrip(".")
            used |= {f"{prefix}.{a.name}".lstrip(".") for a in node.names if a.name not in MODULE_NAMES}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in MODULE_NAMES:
            used.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                isinstance(node.value.value, ast.Name) and node.value.value.id in PACKAGE_NAMES:
            used.add(f"{node.value.attr}.{node.attr}")
    return used


def surface():
    """The fake's list of names (loaded from its file: nothing named spinnaker2 stays importable)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fake_spinnaker2_surface", FAKE / "spinnaker2" / "_surface.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_spinnaker2_is_left_importable():
    surface()
    assert not any(m == "spinnaker2" or m.startswith("spinnaker2.") for m in sys.modules)


# --------------------------------------------------------------------------- the memory map and the two builds


def test_flat_memory_map_is_one_definition():
    regions = memory_map.describe()
    spans = [(int(r["address"], 16), r["bytes"]) for r in regions]
    assert spans[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert spans[-1][0] + spans[-1][1] == 128 * 1024 == BOARD.pe_memory_bytes
    header, ld = memory_map.c_header(), memory_map.ld_symbols()
    assert f"#define MAP_IMAGE_ADDRESS 0x{memory_map.IMAGE_ADDRESS:x}u" in header
    assert f"PE_IMAGE_ADDRESS = 0x{memory_map.IMAGE_ADDRESS:x};" in ld
    assert build.DEFAULT_MEMORY.image_capacity == memory_map.IMAGE_CAPACITY > 96 * 1024


@needs_gcc
def test_both_builds_compile_link_and_fit_the_program_region():
    sizes = build.program_sizes()
    for kind, size in sizes.items():
        assert size["program_end"] <= memory_map.PROGRAM_BYTES, kind
        assert size["code_bytes"] <= memory_map.CODE_WINDOW_END, kind
    board = build.symbols(build.link_board())
    for name in ("Timer_Int1_Handler", "IRQ_05_Handler", "FT_INT_0_Handler", "FT_INT_1_Handler", "runtime_send",
                 "app_init", "app_packet", "app_tick", "pe_tick", "pe_receive"):
        assert name in board, name
    assert build.measure().image_address == memory_map.IMAGE_ADDRESS


def test_board_sources_folder_is_complete(tmp_path):
    out = build.board_sources(tmp_path / "egru")
    names = {p.name for p in out.iterdir()}
    assert set(build.BOARD_FILES) | set(build.generated_files()) == names
    assert "S2_RUNTIME_HEADERS" in (out / "Makefile").read_text()
    assert "UNVERIFIED" in (out / "s2_runtime.h").read_text()


# --------------------------------------------------------------------------- the application layer under QEMU


def _linked_regions(regions: memory_map.Regions):
    return [(address // 4, memory_map.words(data)) for address, data in regions.writes()]


@needs_qemu
def test_input_pe_sends_its_preloaded_sequence_and_sets_done():
    values = np.array([[0, 5, 0], [-(1 << 31), 0, 7], [0, 0, 0]], np.int64)
    regions = application.input_regions(application.InputSpec("input", 3, values, 2), 0, 3, 0x30000, 5, 1000, "in")
    out = application.emulate_pe(_linked_regions(regions), [[]] * 5, kernel=False, record_words=0)
    assert out.sent == [[(0x30001, 5)], [(0x30000, -(1 << 31)), (0x30002, 7)], [], [], []]
    assert out.status["done"] == 1 and out.status["ticks"] == 5 and out.status["sent"] == 3


@needs_qemu
def _params_word(blob: bytes, field: str, value: int) -> bytes:
    at = memory_map.PARAMS_ADDRESS - memory_map.REGIONS_ADDRESS + 4 * memory_map.PARAMS_FIELDS.index(field)
    return blob[:at] + value.to_bytes(4, "little") + blob[at + 4:]


def _spec_word(blob: bytes, index: int, value: int) -> bytes:
    at = memory_map.DATA_SPEC_ADDRESS - memory_map.REGIONS_ADDRESS + 4 * index
    return blob[:at] + value.to_bytes(4, "little") + blob[at + 4:]


IMAGE_BYTES_WORD = 2 + len(memory_map.REGIONS) + memory_map.REGIONS.index("image")  # data spec: bytes[image]
REGION_CASES = [  # (record bytes, edit of the regions blob, what app_init reports)
    (0, None, "record region is smaller"),
    (160, lambda b: b"\0" * 4 + b[4:], "data spec has a wrong magic"),
    (160, lambda b: _spec_word(b, IMAGE_BYTES_WORD, 1 << 20), "regions leave the PE or overlap"),
    (160, lambda b: _params_word(b, "magic", 0), "params region has a wrong magic"),
    (160, lambda b: _params_word(b, "n_ranges", 1 << 30), "more key ranges than it holds"),
    (160, lambda b: _params_word(b, "mode", 7), "mode is neither kernel nor input"),
    (160, lambda b: _params_word(b, "record_channel", 2), "its channel is not 0/1"),
]


@needs_qemu
@pytest.mark.parametrize("record, edit, fragment", REGION_CASES)
def test_pe_program_refuses_bad_regions_itself(nets, record, edit, fragment):
    """app_init checks the data spec and params before anything uses them (as pe_init checks the image)."""
    _, _, path = nets[0]
    image = loader.load(path).images[0]
    params = memory_map.Params(memory_map.MODE_KERNEL, 4, 1, 0, 0, memory_map.NO_KEY, 1, record_units=9,
                               record_channel=0)
    blob = memory_map.Regions(params, image, record).blob()
    elf = build.link(b"", "corrupt", blob=edit(blob) if edit else blob)
    empty = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
    with pytest.raises(qemu.QemuError, match=f"pe: invalid regions: .*{fragment}"):
        qemu.run_elf(elf, qemu.encode_stream([[empty] * 4]), timeout_s=20)


@needs_qemu
def test_input_pe_refuses_a_malformed_sequence():
    values = np.array([[1, 2]], np.int64)
    regions = application.input_regions(application.InputSpec("input", 2, values, 1), 0, 2, 0, 2, 1, "in")
    blob = bytearray(regions.blob())
    unit_at = memory_map.IMAGE_ADDRESS - memory_map.REGIONS_ADDRESS + memory_map.INPUT_HEADER.size + 4
    blob[unit_at:unit_at + 4] = (5).to_bytes(4, "little")  # unit 5 of a 2-unit PE
    empty = (np.zeros(0, np.uint32), np.zeros(0, np.int64))
    with pytest.raises(qemu.QemuError, match="input sequence is malformed"):
        qemu.run_elf(build.link(b"", "corrupt input", blob=bytes(blob)), qemu.encode_stream([[empty] * 2]), 20)


# --------------------------------------------------------------------------- run.py against the fake


def check_run(fake, path: Path, graph: Graph, x: np.ndarray):
    chip = QemuChip(path, x)
    fake.hardware.EXECUTOR = chip
    fake.hardware.runs.clear()
    got = run.run_on_board(path, x, "192.0.2.1")
    want = reference.run_int(graph, x)
    assert np.array_equal(got.int_sequence, want.int_sequence)
    assert np.array_equal(got.output, want.output)
    return chip


@needs_qemu
@pytest.mark.parametrize("seed", range(3))
def test_run_py_end_to_end_against_the_fake(fake, nets, seed):
    graph, x, path = nets[seed]
    chip = check_run(fake, path, graph, x)
    loaded = loader.load(path)
    (first, *_), plan = fake.hardware.runs, chip.plan
    assert first.eth_ip == "192.0.2.1" and first.timesteps == x.shape[1] + plan.latency
    pops = {p.name: p for p in first.net.populations}
    assert pops["input"].neuron_model == application.INPUT_APP_NAME and pops["input"].size == graph.layers[0].in_size
    for spec in plan.layers:  # populations sized and split as the bundle's PEs
        pop = pops[spec.name]
        assert pop.size == spec.units and pop.neuron_model == application.APP_NAME
        placed = sorted((p.start, p.stop) for p in first.mapper.mapping._slices.values() if p.pop is pop)
        assert placed == [tuple(pe["units"]) for pe in loaded.system.pes if pe["layer"] == spec.graph_layer]
        assert pop.record == ([application.RECORD_NAME] if spec.name == plan.output else [])
    assert len(chip.pe_runs) == x.shape[0] * len(first.mapper.pes)
    allowed = set(surface().PUBLIC) | set(surface().UNVERIFIED)
    touched = set(fake.accessed) | set().union(*map(names_used, SOURCES))
    assert touched <= allowed, sorted(touched - allowed)


@needs_qemu
def test_digits_example_on_the_fake_board(fake, digits):
    graph, x, path = digits
    check_run(fake, path, graph, x)


def test_projections_carry_exactly_the_int8_weights(nets):
    graph, _, path = nets[1]
    plan = application.board_plan(loader.load(path))
    rebuilt = {}
    for pre, post, what, weights in run.projection_weights(plan):
        conns = np.array(run.connections(weights))
        dense = np.zeros(weights.shape, np.int64)
        dense[conns[:, 0], conns[:, 1]] = conns[:, 2]
        assert np.array_equal(dense, weights) and not conns[:, 3].any()
        rebuilt[(post, what)] = dense
    for spec in plan.layers:
        layer = graph.layers[spec.graph_layer]
        if isinstance(layer, EGRU):
            h = layer.hidden
            kernel = np.concatenate([rebuilt.get((spec.name, f"kernel.{g}"), np.zeros((layer.in_size, h)))
                                     for g in "zrg"], axis=1)
            assert np.array_equal(kernel, layer.kernel)
        else:
            assert np.array_equal(rebuilt[(spec.name, "weight")], layer.weight.T)


def test_routing_tables_are_checked_against_the_projections(nets):
    _, _, path = nets[2]
    plan = application.board_plan(loader.load(path))
    run.check_projection_routing(plan)
    broken = json.loads(json.dumps(plan.system.placement))
    for entries in broken["routing"].values():
        for entry in entries:
            entry[3] = []  # no core receives anything
    with pytest.raises(hwsim.RoutingError):
        run.check_projection_routing(application.BoardPlan(
            type(plan.loaded)(plan.loaded.directory, hwsim.System(plan.system.graph, broken), plan.loaded.images,
                              plan.loaded.image_map), plan.input, plan.layers, plan.output, plan.latency))


# --------------------------------------------------------------------------- what the board path refuses


def test_a_trace_read_by_the_next_layer_is_refused(fake, tmp_path):
    graph, x = small_graph(0, trace_into_next=True)
    path = write_bundle(graph, tmp_path / "trace")
    with pytest.raises(application.BoardError, match=r"reads the trace of the layer before it"):
        run.run_on_board(path, x, "192.0.2.1")


def test_unequal_slices_are_refused(fake, nets, tmp_path):
    graph, x, path = nets[0]
    plan = json.loads((path / TARGET_DIR / PLACEMENT_JSON).read_text())
    layer = plan["layers"][0]
    if layer["pes"][1] - layer["pes"][0] < 2:
        pytest.skip("first layer on one PE")
    slices = [[tuple(pe["units"]) for pe in plan["pes"] if pe["layer"] == p["layer"]] for p in plan["layers"]]
    (a0, a1), (b0, b1) = slices[0][:2]
    slices[0][:2] = [(a0, a1 - 1), (a1 - 1, b1)]
    from egru_deploy.targets.spinnaker2.compile import write_images
    from egru_deploy.targets.spinnaker2.mapping import map_graph

    mapping = map_graph(graph, build.measure(), BOARD, slices=slices)
    out = tmp_path / "unequal"
    with bundle.writing(out) as tmp:
        ir.save(graph, tmp)
        (tmp / TARGET_DIR).mkdir()
        image_map = write_images(graph, mapping, tmp / TARGET_DIR)
        (tmp / TARGET_DIR / PLACEMENT_JSON).write_text(json.dumps(mapping.to_json()))
        (tmp / TARGET_DIR / "images.json").write_text(json.dumps(image_map))
        bundle.write_manifest(tmp, "spinnaker2", graph.profile)
    with pytest.raises(application.BoardError, match=r"equal slices of \d+ units"):
        run.run_on_board(out, x, "192.0.2.1")


def test_record_that_does_not_fit_beside_the_image_names_the_pe(fake, nets):
    graph, x, path = nets[0]
    long = np.zeros((1, 20_000, x.shape[2]), np.float32)
    with pytest.raises(application.BoardError, match=r"PE \d+ \(layer\d+, units 0\.\.\): its image of [\d,]+ bytes "
                                                     r"and the record of \d+ units x 20,00\d ticks"):
        run.run_on_board(path, long, "192.0.2.1")


def test_network_larger_than_the_board_names_the_numbers(fake, nets, monkeypatch):
    graph, x, path = nets[0]
    from egru_deploy.targets.spinnaker2 import mapping

    monkeypatch.setattr(run, "BOARD", mapping.Board(pes_per_chip=2, chips=1))
    with pytest.raises(application.BoardError, match=r"the network needs \d+ PEs \(1 input PEs \+ \d+ layer PEs\) "
                                                     r"but a board has 2 \(1 chips x 2 PEs\)"):
        run.run_on_board(path, x, "192.0.2.1")


def test_cli_board_run_of_a_bundle_for_another_memory_map_exits_2(fake, nets, tmp_path):
    import shutil

    from click.testing import CliRunner

    from egru_deploy.cli import main

    _, x, path = nets[0]
    old = tmp_path / "old-map"
    shutil.copytree(path, old)
    doc = json.loads((old / TARGET_DIR / PLACEMENT_JSON).read_text())
    doc["memory"].update(image_address=0x8800, image_capacity=96 * 1024 - 0x800)  # the ITCM/DTCM layout
    (old / TARGET_DIR / PLACEMENT_JSON).write_text(json.dumps(doc))
    np.save(tmp_path / "x.npy", x)
    done = CliRunner().invoke(main, ["run", str(old), "--target", "spinnaker2", "--board", "192.0.2.1",
                                     "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1
    assert "memory.image_address is 34,816" in done.output and f"{memory_map.IMAGE_ADDRESS:,}" in done.output


def test_board_path_without_the_package_still_names_it(nets):
    import importlib.util

    if importlib.util.find_spec("spinnaker2") is not None:
        pytest.skip("a spinnaker2 package is importable here")
    _, x, path = nets[0]
    with pytest.raises(run.TargetUnavailable, match="py-spinnaker2"):
        run.run_on_board(path, x, "192.0.2.1")


def test_surface_check_catches_a_name_outside_the_fake(tmp_path):
    source = tmp_path / "uses.py"
    source.write_text("from spinnaker2.mapper import Mapper\nfrom spinnaker2 import snn\nsnn.Population\n"
                      "snn.PopulationView\ndef f(package):\n    return package.hardware.Board\n")
    used = names_used(source)
    assert used == {"mapper.Mapper", "snn.Population", "snn.PopulationView", "hardware.Board"}
    allowed = set(surface().PUBLIC) | set(surface().UNVERIFIED)
    assert used - allowed == {"mapper.Mapper", "snn.PopulationView", "hardware.Board"}


@needs_qemu
def test_emulated_board_without_the_fake_and_a_wrong_key_offset(nets):
    graph, x, path = nets[1]
    plan = application.board_plan(loader.load(path))
    sim_ticks = x.shape[1] + plan.latency
    values = reference.quantize_input(graph, x[:1])[0]
    pes = application.planned_pes(plan, values, sim_ticks, input_atoms=2)
    runs = application.emulate_board(plan, x[:1], pes, sim_ticks)
    record = next(out.record for pe, out in zip(pes, runs) if pe.record_words)
    assert record is not None and len(runs) == len(pes)
    shifted = [application.BoardPE(pe.population, pe.start, pe.stop, pe.key_offset + (pe.population != "input"),
                                   pe.writes, pe.record_words) for pe in pes]  # the PEs send one key off
    with pytest.raises(qemu.QemuError, match="QEMU sent"):
        application.emulate_board(plan, x[:1], shifted, sim_ticks)


def test_cli_board_run_of_a_population_larger_than_the_board_exits_2(fake, tmp_path):
    from click.testing import CliRunner

    from egru_deploy.cli import main

    graph, x = small_graph(0)
    path = write_bundle(graph, tmp_path / "wide")
    placement = path / TARGET_DIR / PLACEMENT_JSON
    doc = json.loads(placement.read_text())
    first = next(p for p in doc["pes"] if p["layer"] == doc["layers"][0]["layer"])
    units = doc["layers"][0]["units"]
    doc["pes"] = [{**first, "units": [u, u + 1]} for u in range(units)] * (BOARD.pes // units + 1)
    placement.write_text(json.dumps(doc))
    np.save(tmp_path / "x.npy", x)
    done = CliRunner().invoke(main, ["run", str(path), "--target", "spinnaker2", "--board", "192.0.2.1",
                                     "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")])
    assert done.exit_code == 2 and len(done.output.strip().splitlines()) == 1, done.output
    assert PLACEMENT_JSON in done.output


@pytest.mark.hardware
@pytest.mark.skipif(not os.environ.get("EGRU_DEPLOY_SPINNAKER2_BOARD"),
                    reason="no SpiNNaker2 board configured (EGRU_DEPLOY_SPINNAKER2_BOARD=IP)")
def test_digits_example_on_a_real_board(digits):
    """Never run here: the first board run (docs/spinnaker2_board.md, checklist step 3)."""
    graph, x, path = digits
    got = run.run_on_board(path, x, os.environ["EGRU_DEPLOY_SPINNAKER2_BOARD"])
    assert np.array_equal(got.int_sequence, reference.run_int(graph, x).int_sequence)
