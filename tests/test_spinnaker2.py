"""SpiNNaker2 target: mapping, images, routing, hwsim == spec, C PE program on QEMU == hwsim, board path."""
from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from egru_deploy import bundle, ir, reference
from egru_deploy.errors import TargetUnavailable
from egru_deploy.hwsim import spinnaker2 as hwsim
from egru_deploy.ir import EGRU, EGRUQuant, Graph, Input, Linear, LinearQuant, QType
from egru_deploy.profiles import SPINNAKER2, latency
from egru_deploy.targets.spinnaker2 import build, images, qemu
from egru_deploy.targets.spinnaker2.compile import IMAGES_JSON, PLACEMENT_JSON, TARGET_DIR, compile_spinnaker2
from egru_deploy.targets.spinnaker2.mapping import Board, MappingError, map_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_qemu = pytest.mark.skipif(not (build.toolchain_available() and qemu.qemu_available()),
                                reason="arm-none-eabi-gcc / qemu-system-arm not installed (scripts/setup_arm.sh)")
needs_gcc = pytest.mark.skipif(not build.toolchain_available(),
                               reason="arm-none-eabi-gcc not installed (scripts/setup_arm.sh)")
F = SPINNAKER2.state_frac
QEMU_SEEDS = range(12)
ZONEOUT = (0.0, 0.3, 0.55, 0.15)  # EvNN's eval blend, per random net


def random_int_graph(seed: int) -> tuple[Graph, np.ndarray]:
    """A small quantized spinnaker2 graph (1-2 EGRU layers, optional readout) and float inputs.

    Weights are int8 with some rows/columns pruned to zero; thresholds are low so units fire; any layer,
    the last one too, may send its trace on (into the readout, or to the host); zoneout is
    ``ZONEOUT[seed % 4]`` (set without drawing from the seed's random stream); seed 5 drives inputs and
    biases to the ends of their ranges so every saturation counter is exercised.
    """
    rng = np.random.default_rng(seed)
    in_size, steps = int(rng.integers(3, 9)), int(rng.integers(20, 40))
    extreme = seed == 5
    layers, size, in_q = [], in_size, QType(32, 8)
    for depth in range(int(rng.integers(1, 3))):
        h = int(rng.integers(6, 26))
        density = rng.choice([1.0, 0.5, 0.15])

        def weights(rows, cols):
            return (rng.integers(-127, 128, (rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.int8)

        bias_peak = (1 << 31) - 1 if extreme else 1 << (F - 1)
        quant = EGRUQuant(kernel=QType(8, 7), recurrent_kernel=QType(8, 8), bias=QType(32, F),
                          recurrent_bias=QType(32, F), thr=QType(32, F), input=in_q)
        layers.append(EGRU(kernel=weights(size, 3 * h), recurrent_kernel=weights(h, 3 * h),
                           bias=rng.integers(-bias_peak, bias_peak, 3 * h),
                           recurrent_bias=rng.integers(-(1 << (F - 2)), 1 << (F - 2), 3 * h),
                           thr=rng.integers(0, 1 << (F - 2), h), use_trace=bool(rng.random() < 0.4),
                           zoneout=ZONEOUT[seed % len(ZONEOUT)], quant=quant))
        size, in_q = h, QType(32, F)
    if rng.random() < 0.7:
        out = int(rng.integers(2, 7))
        layers.append(Linear(weight=rng.integers(-127, 128, (out, size)).astype(np.int8),
                             bias=rng.integers(-1024, 1024, out), relu=bool(rng.random() < 0.3),
                             quant=LinearQuant(weight=QType(8, 7), bias=QType(12 if extreme else 32, 10),
                                               input=in_q, output=QType(12 if extreme else 32, 10))))
    graph = Graph(Input(in_size), tuple(layers), str(rng.choice(["sequence", "last", "mean"])), profile="spinnaker2")
    x = rng.normal(0, 1e7 if extreme else 1.5, (3, steps, in_size)).astype(np.float32)
    return graph, x


def write_bundle(graph: Graph, directory: Path, target: str = "spinnaker2", **options) -> Path:
    with bundle.writing(directory) as tmp:
        ir.save(graph, tmp)
        if target == "spinnaker2":
            compile_spinnaker2(graph, tmp, None, **options)
        bundle.write_manifest(tmp, target, graph.profile)
    return directory


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Seeded nets compiled with small PE slices, so layers span several PEs."""
    root = tmp_path_factory.mktemp("s2")
    made = {}
    for seed in QEMU_SEEDS:
        graph, x = random_int_graph(seed)
        made[seed] = (graph, x, write_bundle(graph, root / f"net{seed}", max_units_per_pe=int(4 + seed % 9)))
    return made


# --------------------------------------------------------------------------- mapping and images


def test_images_fit_and_match_the_size_model(bundles):
    import json

    for graph, _, path in bundles.values():
        placement = json.loads((path / TARGET_DIR / PLACEMENT_JSON).read_text())
        image_map = json.loads((path / TARGET_DIR / IMAGES_JSON).read_text())
        capacity = placement["memory"]["image_capacity"]
        for pe in placement["pes"]:
            entry = image_map[str(pe["index"])]
            blob = (path / TARGET_DIR / entry["file"]).read_bytes()
            assert len(blob) == pe["image_bytes"] == entry["bytes"] <= capacity
            spans = sorted(entry["sections"].values())
            assert all(a[0] + a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap
            header = dict(zip([n for n, _ in images.HEADER_FIELDS], images.HEADER.unpack_from(blob)))
            assert header["magic"] == images.MAGIC and header["n_units"] == pe["units"][1] - pe["units"][0]
        layers = [p["layer"] for p in placement["pes"]]
        assert layers == sorted(layers)


def test_csr_is_chosen_where_it_saves_memory():
    rng = np.random.default_rng(0)
    graph, _ = random_int_graph(1)
    layer = graph.layers[0]
    sparse = np.where(rng.random((200, 3 * layer.hidden)) < 0.1, 5, 0).astype(np.int8)
    pruned = replace(layer, kernel=sparse, quant=layer.quant)
    mapping = map_graph(replace(graph, input=Input(200), layers=(pruned, *graph.layers[1:])), build.measure())
    pe = mapping.pes[0]
    assert pe.x_format in ("csr8", "csr16") and pe.x_nnz == np.count_nonzero(sparse)
    cols = 3 * layer.hidden
    assert images.choose_format(200, cols, 200 * cols) == "dense"


def test_lookup_parameters_reproduce_the_spec_index():
    lut = SPINNAKER2.activation
    probe = np.arange(-(1 << 20), 1 << 20, 37)
    for fn in ("sigmoid", "tanh"):
        offset, shift = images.lut_parameters(lut, fn, F)
        mine = np.clip((probe + offset) >> shift, 0, (1 << lut.index_bits) - 1)
        assert np.array_equal(mine, lut.index(probe, fn, F))


def test_routing_reaches_exactly_the_consumers_across_chips(tmp_path):
    graph, x = random_int_graph(7)
    small = Board(pes_per_chip=2)  # forces a placement over more than one row of the chip mesh
    mapping = map_graph(graph, build.measure(), small, max_units_per_pe=2)
    assert mapping.chips_used > small.mesh[0]
    assert max(len(e) for e in mapping.routing.values()) <= small.routing_entries
    system = hwsim.System(graph, mapping.to_json())
    hwsim.check_routing(system)
    assert np.array_equal(hwsim.simulate(system, x).run.int_sequence, reference.run_int(graph, x).int_sequence)
    broken = mapping.to_json()
    broken["routing"][str(mapping.pes[-1].chip)] = []
    with pytest.raises(hwsim.RoutingError):
        hwsim.check_routing(hwsim.System(graph, broken))


def test_routing_table_limit_is_enforced():
    graph, _ = random_int_graph(3)
    with pytest.raises(MappingError, match=r"routing table needs \d+ entries but a SpiNNaker2 router holds 1"):
        map_graph(graph, build.measure(), Board(pes_per_chip=3, routing_entries=1), max_units_per_pe=2)


def test_layer_too_large_for_the_board_is_refused_with_numbers():
    graph, _ = random_int_graph(0)
    tiny = Board(pes_per_chip=2, chips=1)
    with pytest.raises(MappingError, match=r"does not fit the board: its [\d,]+ PEs bring the model to [\d,]+ PEs "
                                           r"but a board has 2 \(1 chips x 2 PEs\)"):
        map_graph(graph, build.measure(), tiny, max_units_per_pe=1)


def test_unit_larger_than_a_pe_is_refused_at_compile_time():
    graph, _ = random_int_graph(0)
    layer = graph.layers[0]
    rows = 40_000  # dense int8 column triple of 120 KB > any PE image
    wide = replace(layer, kernel=np.ones((rows, 3 * layer.hidden), np.int8))
    with pytest.raises(MappingError, match=r"unit 0 alone needs [\d,]+ bytes but a PE image holds"):
        map_graph(replace(graph, input=Input(rows), layers=(wide, *graph.layers[1:])), build.measure())


@needs_gcc
def test_program_memory_is_measured_and_oversize_image_fails_the_link():
    memory = build.measure()
    assert memory.measured and memory.code_bytes <= 32 * 1024  # code stays in the first 32 KB (memory_map.py)
    assert memory.image_capacity >= build.DEFAULT_MEMORY.image_capacity  # defaults stay conservative
    build.link(bytes(memory.image_capacity))  # exactly full links
    with pytest.raises(build.BuildError, match="overflowed"):
        build.link(bytes(memory.image_capacity + 8))


# --------------------------------------------------------------------------- hwsim == spec


@pytest.mark.parametrize("seed", QEMU_SEEDS)
def test_hwsim_equals_run_int(bundles, seed):
    graph, x, path = bundles[seed]
    got = hwsim.simulate(hwsim.load(path), x)
    want = reference.run_int(graph, x)
    assert np.array_equal(got.run.int_sequence, want.int_sequence)
    assert np.array_equal(got.run.output, want.output)
    assert got.run.saturations == want.saturations
    assert all(np.array_equal(a, b) for a, b in zip(got.run.layer_events, want.layer_events))
    assert got.latency == latency(graph, SPINNAKER2)
    assert got.estimates["time_per_step_us"]["150MHz"] > 0
    if seed == 5:
        assert {k.split(".")[1] for k in want.saturations} >= {"accumulator", "state", "output"}


def test_hwsim_counts_synaptic_ops_by_format(bundles):
    graph, x, path = bundles[2]
    result = hwsim.simulate(hwsim.load(path), x)
    first = [p for p in result.pes if p.layer == graph.layers.index(graph.egru_layers[0])]
    received_x = int(np.count_nonzero(reference.quantize_input(graph, x)))
    assert all(p.packets_received >= received_x for p in first)
    assert sum(p.packets_sent for p in result.pes) > 0


def test_initial_events_hwsim_takes_them_qemu_and_board_refuse(bundles):
    from egru_deploy.errors import UserError
    from egru_deploy.targets.spinnaker2 import run

    graph, x, path = bundles[9]
    rng = np.random.default_rng(9)
    y0 = [rng.integers(0, 1 << F, (x.shape[0], layer.hidden)) * (rng.random((x.shape[0], layer.hidden)) < 0.5)
          for layer in graph.egru_layers]
    got, want = hwsim.run_bundle(path, x, initial_events=y0), reference.run_int(graph, x, y0)
    assert np.array_equal(got.int_sequence, want.int_sequence) and got.saturations == want.saturations
    assert not np.array_equal(got.int_sequence, reference.run_int(graph, x).int_sequence)
    for call, where in ((lambda: qemu.run_bundle(path, x, initial_events=y0), "PE program under QEMU"),
                        (lambda: run.run_on_board(path, x, "192.0.2.1", initial_events=y0), "SpiNNaker2 board run")):
        with pytest.raises(UserError, match=f"{where}: initial events are not supported") as error:
            call()
        assert "\n" not in str(error.value)


def wide_sparse_graph() -> tuple[Graph, np.ndarray]:
    """An EGRU of 100 units (300 gate columns) and a readout of 600 units, 15 % dense: one PE each, both
    wider than 256 columns, so both take csr8b (1-byte indices in 256-column banks)."""
    rng = np.random.default_rng(12)

    def weights(rows, cols):
        return (rng.integers(-127, 128, (rows, cols)) * (rng.random((rows, cols)) < 0.15)).astype(np.int8)

    h, out = 100, 600
    egru = EGRU(kernel=weights(6, 3 * h), recurrent_kernel=weights(h, 3 * h),
                bias=rng.integers(-(1 << (F - 1)), 1 << (F - 1), 3 * h),
                recurrent_bias=rng.integers(-(1 << (F - 2)), 1 << (F - 2), 3 * h),
                thr=rng.integers(0, 1 << (F - 2), h), use_trace=True, zoneout=0.3,
                quant=EGRUQuant(kernel=QType(8, 7), recurrent_kernel=QType(8, 8), bias=QType(32, F),
                                recurrent_bias=QType(32, F), thr=QType(32, F), input=QType(32, 8)))
    readout = Linear(weight=weights(out, h), bias=rng.integers(-1024, 1024, out), relu=False,
                     quant=LinearQuant(weight=QType(8, 7), bias=QType(32, 10), input=QType(32, F),
                                       output=QType(32, 10)))
    graph = Graph(Input(6), (egru, readout), "sequence", profile="spinnaker2")
    return graph, rng.normal(0, 1.5, (2, 24, 6)).astype(np.float32)


def test_banked_csr_is_chosen_past_256_columns():
    graph, _ = wide_sparse_graph()
    pes = map_graph(graph, build.measure()).pes
    assert [(pe.x_format, pe.h_format) for pe in pes] == [("csr8b", "csr8b"), ("csr8b", None)]
    for rows, cols, nnz in ((100, 300, 4500), (100, 600, 9000)):
        sizes = {f: sum(images.weight_bytes(f, rows, cols, nnz).values()) for f in ("csr8b", "csr16")}
        assert sizes["csr8b"] < sizes["csr16"]
    assert images.choose_format(100, 1000, 100) == "csr16"  # very sparse, 4 banks: their pointers cost more
    assert images.choose_format(100, 256, 10) == "csr8"
    w = np.zeros((3, 600), np.int8)
    w[0, [1, 300, 599]], w[2, [0, 256]] = (1, 2, 3), (4, 5)
    ptr, idx, val = (np.frombuffer(b, t) for b, t in zip(images.WeightSlice(w).sections("csr8b"), ("<u2", "u1", "i1")))
    assert ptr.tolist() == [0, 1, 1, 2, 3, 3, 4, 5, 5, 5]  # banks x rows + 1, bank-major
    assert idx.tolist() == [1, 0, 44, 0, 87] and val.tolist() == [1, 4, 2, 5, 3]


# --------------------------------------------------------------------------- C PE program on QEMU


@needs_qemu
def test_qemu_pe_programs_equal_hwsim_bit_for_bit(bundles):
    checked = 0
    for seed in QEMU_SEEDS:
        _, x, path = bundles[seed]
        _, _, checks = qemu.check_bundle(path, x)
        for check in checks:
            assert check.equal, check.mismatch
        checked += len(checks)
    assert checked >= 2 * len(QEMU_SEEDS)


@needs_qemu
def test_qemu_equals_hwsim_and_spec_on_banked_csr(tmp_path):
    graph, x = wide_sparse_graph()
    path = write_bundle(graph, tmp_path / "wide")
    got = hwsim.simulate(hwsim.load(path), x)
    want = reference.run_int(graph, x)
    assert np.array_equal(got.run.int_sequence, want.int_sequence) and got.run.saturations == want.saturations
    assert sum(p.packets_sent for p in got.pes) > 0
    _, _, checks = qemu.check_bundle(path, x)
    assert len(checks) == 2 and all(check.equal for check in checks), [c.mismatch for c in checks]


@needs_qemu
def test_qemu_backend_returns_the_spec_output(bundles):
    from egru_deploy.backends import run_backend

    graph, x, path = bundles[4]
    got = run_backend("qemu", path, x)
    assert np.array_equal(got.output, reference.run_int(graph, x).output)


@needs_qemu
def test_hung_qemu_run_is_killed_and_reported(bundles, monkeypatch):
    monkeypatch.setattr(qemu, "QEMU_COMMAND", (*qemu.QEMU_COMMAND, "-S"))  # CPU never starts: a hang
    _, x, path = bundles[0]
    with pytest.raises(qemu.QemuError, match=r"did not finish within 0.5 s and was killed"):
        qemu.check_bundle(path, x, pes=[0], timeout_s=0.5)


@needs_qemu
@pytest.mark.skipif(not (EXAMPLES / "digits_egru.pt").is_file(), reason="examples/digits_egru.pt not built yet")
def test_digits_example_on_qemu(tmp_path):
    """The bundled trained model through the real compile command's pipeline, then every PE on QEMU."""
    from egru_deploy.compile import compile_model
    from egru_deploy.converters import load_model

    calibration = np.load(EXAMPLES / "digits_train.npz")["x"][:64].astype(np.float32)
    x = np.load(EXAMPLES / "digits_test.npz")["x"][:4].astype(np.float32)
    report = compile_model(load_model(EXAMPLES / "digits_egru.pt"), "spinnaker2", tmp_path / "digits", calibration)
    assert report["resources"]["summary"]["pes"] >= 2
    _, result, checks = qemu.check_bundle(tmp_path / "digits", x)
    assert all(c.equal for c in checks), [c.mismatch for c in checks if not c.equal]
    graph = bundle.load_graph(tmp_path / "digits")
    assert np.array_equal(result.run.output, reference.run_int(graph, x).output)


# --------------------------------------------------------------------------- board path and bundles


def test_board_path_names_py_spinnaker2_and_points_to_emulate(bundles):
    from egru_deploy.targets.spinnaker2 import run

    if importlib.util.find_spec("spinnaker2") is not None:
        pytest.skip("py-spinnaker2 is installed here")
    _, x, path = bundles[0]
    with pytest.raises(TargetUnavailable) as error:
        run.run_on_board(path, x, "192.0.2.1")
    message = str(error.value)
    assert "py-spinnaker2" in message and "emulate BUNDLE --backend hwsim|qemu" in message and "\n" not in message


def test_bundle_for_another_target_is_refused(tmp_path):
    graph, x = random_int_graph(0)
    path = write_bundle(graph, tmp_path / "other", target="loihi2")
    with pytest.raises(bundle.BundleError, match="compiled for target 'loihi2', not 'spinnaker2'"):
        hwsim.load(path)


def test_cli_emulate_and_run(bundles, tmp_path):
    from click.testing import CliRunner

    from egru_deploy.cli import main

    graph, x, path = bundles[2]
    np.save(tmp_path / "x.npy", x)
    backends = ["hwsim", "qemu"] if qemu.qemu_available() and build.toolchain_available() else ["hwsim"]
    for backend in backends:
        done = CliRunner().invoke(main, ["emulate", str(path), "--input", str(tmp_path / "x.npy"),
                                         "--output", str(tmp_path / f"{backend}.npy"), "--backend", backend])
        assert done.exit_code == 0, done.output
        assert np.array_equal(np.load(tmp_path / f"{backend}.npy"), reference.run_int(graph, x).output)
    done = CliRunner().invoke(main, ["run", str(path), "--target", "spinnaker2", "--board", "192.0.2.1",
                                     "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "b.npy")])
    assert done.exit_code == 2 and "py-spinnaker2" in done.output and len(done.output.strip().splitlines()) == 1
