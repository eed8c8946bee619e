"""CNN front-end (EvNN's DVS gesture model with ``--use-cnn``): float reference == torch, the integer
rules of Conv2d/Pool2d, the host/chip split of compiled bundles (hwsim, Lava, QEMU == run_int),
placement in inspect and reports, NIR and ONNX round trips, bad frame inputs."""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from egru_deploy import bundle, reference
from egru_deploy.cli import main
from egru_deploy.ir import EGRU, Conv2d, Graph, Input, Linear, Pool2d
from egru_deploy.profiles import LOIHI2, PROFILES, div_round, latency
from egru_deploy.quantize import quantize

TOL = 1e-5
GOLDEN = Path(__file__).parent / "golden" / "evnn"


def _f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def conv(rng, out, cin, k, stride=1, padding=0, relu=True) -> Conv2d:
    return Conv2d(_f32(rng, out, cin, k, k, scale=1.5 / np.sqrt(cin * k * k)), _f32(rng, out, scale=0.1),
                  stride, padding, relu)


def small_cnn_graph(seed: int = 0, frame=(2, 12, 12), hidden: int = 12, mode: str = "mean") -> Graph:
    """Every front-end layer kind: max pool, conv (stride, padding), average pool (3x3: not a power of
    two), conv, 2x2 average pool (a shift), Linear + ReLU; then EGRU (trace) and a readout."""
    rng = np.random.default_rng(seed)
    front = [Pool2d("max", 2, 2), conv(rng, 4, frame[0], 3, 1, 1), Pool2d("avg", 3, 2, 1),
             conv(rng, 6, 4, 2, 1, 0), Pool2d("avg", 2, 1, 1)]
    shape = frame
    for layer in front:
        shape = layer.out_shape(shape)
    n = int(np.prod(shape))
    front.append(Linear(_f32(rng, 10, n, scale=1.5 / np.sqrt(n)), _f32(rng, 10, scale=0.1), relu=True))
    egru = EGRU(_f32(rng, 10, 3 * hidden, scale=1.5 / np.sqrt(10)), _f32(rng, hidden, 3 * hidden, scale=0.3),
                _f32(rng, 3 * hidden, scale=0.5), _f32(rng, 3 * hidden, scale=0.3),
                rng.uniform(0.05, 0.3, hidden).astype(np.float32), use_trace=True)
    readout = Linear(_f32(rng, 5, hidden, scale=0.5), _f32(rng, 5, scale=0.1))
    return Graph(Input(int(np.prod(frame)), frame=frame), (*front, egru, readout), mode)


def frames(graph: Graph, seed: int = 0, batch: int = 3, steps: int = 6) -> np.ndarray:
    """Event-count-like frames: sparse non-negative counts scaled as the DVS pipeline does (/ 19)."""
    rng = np.random.default_rng(seed + 1000)
    return (rng.poisson(1.5, (batch, steps, *graph.input.frame)) / 19.0).astype(np.float32)


def torch_frontend(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The front-end with torch.nn.functional on (B*T, C, H, W) frames, as EvNN runs its CNN."""
    b, t = x.shape[:2]
    out = torch.from_numpy(x.reshape(b * t, *graph.input.frame))
    for layer in graph.frontend:
        if isinstance(layer, Conv2d):
            out = F.conv2d(out, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias), layer.stride,
                           layer.padding)
        elif isinstance(layer, Pool2d):
            pool = F.max_pool2d if layer.kind == "max" else F.avg_pool2d
            out = pool(out, layer.kernel, layer.stride, layer.padding)
        else:
            out = F.linear(out.reshape(b * t, -1), torch.from_numpy(layer.weight), torch.from_numpy(layer.bias))
        if getattr(layer, "relu", False):
            out = F.relu(out)
    return out.reshape(b, t, -1).numpy()


# --------------------------------------------------------------------------- float reference


@pytest.mark.parametrize("seed", range(4))
def test_float_frontend_equals_torch(seed):
    graph = small_cnn_graph(seed, frame=((1, 11, 13), (2, 12, 12), (3, 9, 16), (2, 16, 15))[seed])
    x = frames(graph, seed) * (1 if seed % 2 else -1)  # negative inputs: max pooling must pad with -inf
    assert np.abs(reference.frontend_float(graph, x) - torch_frontend(graph, x)).max() < TOL


@pytest.mark.parametrize("kind,kernel,stride,padding", [("max", 3, 2, 1), ("max", 2, 3, 0), ("avg", 3, 1, 1),
                                                         ("avg", 4, 4, 2), ("avg", 5, 2, 0)])
def test_pooling_equals_torch(kind, kernel, stride, padding):
    rng = np.random.default_rng(kernel * 10 + stride)
    pool = Pool2d(kind, kernel, stride, padding)
    x = _f32(rng, 7, 17, 14, 3)  # channels-last frames
    got = reference.pool_frames(pool, x)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    want = fn(torch.from_numpy(np.moveaxis(x, -1, 1).copy()), kernel, stride, padding).numpy()
    assert np.abs(np.moveaxis(got, -1, 1) - want).max() < TOL


def dvs_cnn_golden() -> tuple[Graph, dict, dict]:
    """EvNN's DVS CNN golden as IR, built by hand from the checkpoint's ``conv.N`` keys (docs 3.3):
    input max-pool 128 // frame_size, polarity mean (a 1x1 convolution with weights 1/2), the CNN,
    Linear, EGRU feeding its trace on, readout averaged over time."""
    with np.load(GOLDEN / "dvs_cnn.npz", allow_pickle=False) as d:
        golden = {k: d[k] for k in d.files}
    meta = json.loads(str(golden["meta"]))
    sd = {k: v.numpy() for k, v in torch.load(GOLDEN / "dvs_cnn.pth", weights_only=True)["state_dict"].items()}
    fs = meta["hyper"]["frame_size"]

    def cnn(i, stride=1, padding=0):
        return Conv2d(sd[f"conv.{i}.weight"], sd[f"conv.{i}.bias"], stride, padding, relu=True)

    polarity_mean = Conv2d(np.full((1, 2, 1, 1), 0.5, np.float32), np.zeros(1, np.float32))
    layers = [Pool2d("max", 128 // fs, 128 // fs), polarity_mean,
              cnn(0, 4, 2), Pool2d("max", 3, 2), cnn(3, 1, 2), Pool2d("max", 3, 2), cnn(6, 1, 1),
              *([Pool2d("max", 3, 2)] if fs >= 64 else []), cnn(9, 1, 1), *([Pool2d("max", 3, 2)] if fs >= 128 else []),
              cnn(12, 1, 1), Linear(sd["conv.15.weight"], sd["conv.15.bias"]),
              EGRU(sd["layers.0.kernel"], sd["layers.0.recurrent_kernel"], sd["layers.0.bias"],
                   sd["layers.0.recurrent_bias"], sd["layers.0.thr"], use_trace=True, zoneout=meta["hyper"]["zoneout"]),
              Linear(sd["fc.weight"], sd["fc.bias"])]
    return Graph(Input(2 * 128 * 128, frame=(2, 128, 128)), tuple(layers), "mean"), golden, meta


def test_dvs_cnn_golden_front_end_and_logits():
    graph, golden, _ = dvs_cnn_golden()
    x = golden["inputs"]
    assert np.abs(reference.frontend_float(graph, x) - golden["inputs.egru0"]).max() < TOL
    result = reference.run_float(graph, x)
    assert np.abs(result.output - golden["out.logits"]).max() < TOL


def test_dvs_cnn_golden_quantized(capsys):
    """Float vs integer on the golden DVS CNN: the front-end's integer output tracks the float one and
    the logits stay close (the golden holds only 2 sequences, so logit error rather than accuracy)."""
    graph, golden, _ = dvs_cnn_golden()
    x = golden["inputs"]
    rf = reference.run_float(graph, x)
    front = reference.frontend_float(graph, x)
    for profile in PROFILES.values():
        q = quantize(graph, profile, x)
        ri = reference.run_int(q, x)
        front_q = q.egru_layers[0].quant.input.to_float(reference.quantize_input(q, x))
        front_err = np.abs(front_q - front).max() / np.abs(front).max()
        logit_err = np.abs(ri.output - rf.output).max() / np.abs(rf.output).max()
        with capsys.disabled():
            print(f"\n[dvs_cnn {profile.name}] front-end max rel err {front_err:.4f}, logits max rel err "
                  f"{logit_err:.4f}, argmax agree {np.mean(ri.output.argmax(1) == rf.output.argmax(1)):.0%}, "
                  f"saturations {ri.saturations}")
        assert front_err < 0.05 and logit_err < 0.25
        assert not ri.saturations


@pytest.mark.parametrize("shape", ["5d", "4d", "flat3d", "flat2d"])
def test_frame_input_layouts(shape):
    graph = small_cnn_graph(1)
    x = frames(graph, 1, batch=1)
    given = {"5d": x, "4d": x[0], "flat3d": x.reshape(1, x.shape[1], -1), "flat2d": x[0].reshape(x.shape[1], -1)}[shape]
    assert np.array_equal(reference.run_float(graph, given).output, reference.run_float(graph, x).output)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 2, 12, 11), np.float32), r"expected frames \(B,T,2,12,12\) or \(T,2,12,12\), or flattened "
                                              r"\(B,T,288\) or \(T,288\), got \(2, 3, 2, 12, 11\)"),
    (np.zeros((2, 3, 287), np.float32), r"got \(2, 3, 287\)"),
    (np.zeros((2, 3, 2, 12, 12), np.int64), r"expected float32 frames .* got dtype int64"),
    (np.full((1, 2, 2, 12, 12), np.nan, np.float32), r"contains NaN or inf"),
])
def test_bad_frame_input_is_one_line(bad, match):
    with pytest.raises(reference.InputError, match=match) as e:
        reference.run_float(small_cnn_graph(), bad)
    assert "\n" not in str(e.value)


def test_cli_bad_frame_shape_exits_2_with_one_line(tmp_path):
    from egru_deploy.converters import onnx as onnx_converter

    path = tmp_path / "model.onnx"
    onnx_converter.export(small_cnn_graph(), path)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 2, 12, 13), np.float32))
    res = CliRunner().invoke(main, ["emulate", str(path), "--input", str(tmp_path / "x.npy"),
                                    "--output", str(tmp_path / "y.npy")])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "--input" in res.output and "(1, 3, 2, 12, 13)" in res.output


# --------------------------------------------------------------------------- integer rules


def test_div_round_is_round_half_up_and_the_shift_for_powers_of_two():
    x = np.arange(-200, 201)
    for n in (1, 2, 3, 4, 5, 7, 9, 16, 25):
        want = [int(np.floor(Fraction(int(v), n) + Fraction(1, 2))) for v in x]
        assert div_round(x, n).tolist() == want
        assert ((2 * x + n) // (2 * n)).tolist() == want  # the formula the docstring states


def test_integer_pooling_is_exact():
    rng = np.random.default_rng(3)
    x = rng.integers(-1000, 1000, (4, 9, 10, 3))
    max_pool = reference.pool_frames(Pool2d("max", 3, 2, 1), x)
    want = F.max_pool2d(torch.from_numpy(np.moveaxis(x, -1, 1).astype(np.float64)), 3, 2, 1).numpy()
    assert max_pool.dtype == np.int64 and np.array_equal(np.moveaxis(max_pool, -1, 1), want)
    avg = reference.pool_frames(Pool2d("avg", 3, 3, 1), x)
    sums = F.avg_pool2d(torch.from_numpy(np.moveaxis(x, -1, 1).astype(np.float64)), 3, 3, 1).numpy() * 9
    assert np.array_equal(np.moveaxis(avg, -1, 1), div_round(np.round(sums).astype(np.int64), 9))


def test_integer_conv_is_a_linear_over_windows():
    """A quantized Conv2d equals ``linear_int`` of a Linear holding the same weights, window by window."""
    graph = quantize(small_cnn_graph(2), LOIHI2, frames(small_cnn_graph(2), 2))
    conv_layer = graph.layers[1]
    rng = np.random.default_rng(0)
    x = rng.integers(-300, 300, (2, 6, 6, 2))
    sat: dict = {}
    got = reference.int_layer(LOIHI2, conv_layer, x[None], sat)[0]
    as_linear = Linear(conv_layer.weight.reshape(conv_layer.weight.shape[0], -1), conv_layer.bias,
                       conv_layer.relu, conv_layer.quant)
    windows = reference.conv_windows(conv_layer, x)
    assert np.array_equal(got, reference.linear_int(LOIHI2, as_linear, windows, {}))


@pytest.mark.parametrize("profile", PROFILES)
def test_quantized_front_end_tracks_float(profile):
    graph = small_cnn_graph(3)
    x = frames(graph, 3, batch=8)
    q = quantize(graph, PROFILES[profile], x)
    assert [type(a) for a in q.layers] == [type(b) for b in graph.layers]
    assert all(a == b for a, b in zip(q.layers, graph.layers) if isinstance(a, Pool2d))
    front = reference.frontend_float(graph, x)
    front_q = q.egru_layers[0].quant.input.to_float(reference.quantize_input(q, x))
    assert np.abs(front_q - front).max() < 0.05 * np.abs(front).max()
    ri, rf = reference.run_int(q, x), reference.run_float(graph, x)
    assert np.abs(ri.output - rf.output).max() < 0.2 * np.abs(rf.output).max()


# --------------------------------------------------------------------------- targets: host front-end, chip rest


@pytest.fixture(scope="module")
def cnn_bundles(tmp_path_factory):
    from egru_deploy.compile import compile_model

    graph = small_cnn_graph(4)
    x = frames(graph, 4, batch=4, steps=5)
    root = tmp_path_factory.mktemp("frontend")
    made = {}
    for target in ("loihi2", "spinnaker2"):
        report = compile_model(graph, target, root / target, x, source="small_cnn")
        made[target] = (root / target, report)
    return graph, x, made


def assert_same_run(got, want):
    assert np.array_equal(got.int_sequence, want.int_sequence)
    assert np.array_equal(got.output, want.output)
    assert all(np.array_equal(a, b) for a, b in zip(got.events, want.events))
    assert all(np.array_equal(a, b) for a, b in zip(got.layer_events, want.layer_events))
    assert {k: v for k, v in got.saturations.items() if v} == {k: v for k, v in want.saturations.items() if v}


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_hwsim_runs_host_front_end_then_chip_bit_exact(cnn_bundles, target):
    from egru_deploy.backends import run_backend

    _, x, made = cnn_bundles
    path, _ = made[target]
    graph = bundle.load_graph(path)
    want = reference.run_int(graph, x)
    assert np.count_nonzero(want.layer_events[0]) > 0
    assert_same_run(run_backend("hwsim", path, x), want)
    assert latency(graph, PROFILES[target]) == 2  # EGRU and readout hops only: the front-end is the host's


def test_front_end_saturations_are_counted_on_the_host(cnn_bundles):
    from egru_deploy.hwsim import loihi2 as hwsim

    _, x, made = cnn_bundles
    graph = bundle.load_graph(made["loihi2"][0])
    x_big = x * 4000  # drives the first convolution past its output format
    want = reference.run_int(graph, x_big)
    assert any(k.startswith("layer1.") for k in want.saturations)
    assert_same_run(hwsim.emulate(graph, x_big), want)


@pytest.mark.parametrize("target", ["loihi2", "spinnaker2"])
def test_report_and_resources_say_where_layers_run(cnn_bundles, target, capsys):
    from egru_deploy.report import print_resources

    graph, _, made = cnn_bundles
    path, report = made[target]
    placement = report["resources"]["layer_placement"]
    n_front = len(graph.frontend)
    assert [p["placement"] for p in placement] == ["host"] * n_front + ["chip"] * 2
    assert placement[1] == {"layer": 1, "type": "Conv2d", "placement": "host"}
    saved = json.loads((path / "report.json").read_text())
    assert saved["resources"]["layer_placement"] == placement
    print_resources(report["resources"])
    out = capsys.readouterr().out
    out = re.sub(r"[\s│┃]+", " ", out)  # rich wraps long cells over several lines
    assert "layers on the host" in out and "Pool2d (layer 0), Conv2d (layer 1)" in out and f"EGRU (layer {n_front})" in out
    assert "host front-end MACs per step" in out
    if target == "spinnaker2":  # the chip's input population is the front-end's output, not the frame
        placement_json = json.loads((path / "spinnaker2" / "placement.json").read_text())
        assert placement_json["input_size"] == graph.egru_layers[0].in_size


def test_inspect_shows_placement(cnn_bundles):
    _, _, made = cnn_bundles
    path, _ = made["spinnaker2"]
    res = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert [e["placement"] for e in summary["layers"]][:2] == ["host", "host"]
    assert summary["layers"][-2]["placement"] == "chip" and summary["input"]["frame"] == [2, 12, 12]
    res = CliRunner().invoke(main, ["inspect", str(path)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "runs on" in res.output and "host" in res.output and "chip" in res.output
    assert "run on the host when compiled for a chip" in " ".join(res.output.split())  # rich wraps lines


def test_lava_runs_host_front_end_then_network_bit_exact(cnn_bundles):
    from egru_deploy.errors import TargetUnavailable
    from egru_deploy.targets.loihi2 import lava_compat

    try:
        lava_compat.import_lava()
    except TargetUnavailable as e:
        pytest.skip(f"Lava not importable: {e}")
    from egru_deploy.backends import run_backend

    _, x, made = cnn_bundles
    path, _ = made["loihi2"]
    x = x[:1, :4]  # one short sequence: Lava runs ~0.4 s per sequence
    assert_same_run(run_backend("lava", path, x), reference.run_int(bundle.load_graph(path), x))


def test_qemu_runs_host_front_end_then_pe_programs_bit_exact(cnn_bundles):
    from egru_deploy.targets.spinnaker2 import build, qemu

    if not (build.toolchain_available() and qemu.qemu_available()):
        pytest.skip("arm-none-eabi-gcc / qemu-system-arm not installed (scripts/setup_arm.sh)")
    from egru_deploy.backends import run_backend

    _, x, made = cnn_bundles
    path, _ = made["spinnaker2"]
    x = x[:2, :4]
    _, _, checks = qemu.check_bundle(path, x)
    assert checks and all(check.equal for check in checks), [c.mismatch for c in checks if not c.equal]
    got = run_backend("qemu", path, x)
    assert np.array_equal(got.output, reference.run_int(bundle.load_graph(path), x).output)


# --------------------------------------------------------------------------- NIR and ONNX


@pytest.mark.parametrize("case", ["small0", "small1", "dvs_cnn"])
def test_nir_round_trip(tmp_path, case):
    import nir

    from egru_deploy.converters import nir as nir_converter
    from test_nir import assert_same_graph

    graph = dvs_cnn_golden()[0] if case == "dvs_cnn" else small_cnn_graph(int(case[-1]))
    path = tmp_path / "model.nir"
    nir_converter.export(graph, path)
    nodes = nir_converter.read_nir(path).nodes
    kinds = {type(node).__name__ for node in nodes.values()}
    assert {"Conv2d", "MaxPool2d", "Flatten"} <= kinds and isinstance(nodes["conv0"], nir.Conv2d)
    assert isinstance(nodes["pool0"], nir_converter.MaxPool2d)  # NIR 1.0.8 has no max pooling: extension node
    if case != "dvs_cnn":
        assert isinstance(nodes["pool1"], nir.AvgPool2d)
    assert_same_graph(graph, nir_converter.load(path))


def test_nir_frames_into_a_vector_node_need_a_flatten(tmp_path):
    import nir

    from egru_deploy.converters import nir as nir_converter
    from egru_deploy.errors import ConversionError

    g = nir_converter.to_nir(small_cnn_graph())
    nodes = {k: v for k, v in g.nodes.items() if k != "flatten"}
    edges = [(a, b) for a, b in g.edges if "flatten" not in (a, b)] + [("pool2", "linear0")]
    with pytest.raises(ConversionError, match=r"node 'linear0': expected a Conv2d, AvgPool2d, MaxPool2d or a "
                                              r"Flatten \(frames \[6, 3, 3\] reach it\), got Affine"):
        nir_converter.from_nir(nir.NIRGraph(nodes=nodes, edges=edges, metadata=g.metadata, type_check=False))


@pytest.mark.parametrize("seed,mode", [(0, "sequence"), (1, "last"), (2, "mean")])
def test_onnx_float_equals_reference_and_round_trips(tmp_path, seed, mode):
    import onnx

    from egru_deploy.converters import onnx as onnx_converter
    from test_nir import assert_same_graph
    from test_onnx import run_onnx

    graph = small_cnn_graph(seed, mode=mode)
    path = tmp_path / "model.onnx"
    onnx_converter.export(graph, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {"Conv", "MaxPool", "AveragePool"} <= {node.op_type for node in model.graph.node}
    for batch, steps in ((3, 6), (1, 2)):  # dynamic batch and length: frames reshaped inside the graph
        x = frames(graph, seed, batch, steps)
        assert np.abs(run_onnx(model, x) - reference.run_float(graph, x).output).max() < TOL
    assert_same_graph(graph, onnx_converter.load(path))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("seed", [0, 3])
def test_onnx_quantized_equals_run_int_exactly(tmp_path, profile, seed):
    import onnx

    from egru_deploy.converters import onnx as onnx_converter
    from test_nir import assert_same_graph
    from test_onnx import run_onnx

    graph = small_cnn_graph(seed)
    x = frames(graph, seed)
    q = quantize(graph, PROFILES[profile], x)
    path = tmp_path / "q.onnx"
    onnx_converter.export(q, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    for data in (x, x * 300, frames(graph, seed + 1, 2, 3)):  # x * 300 saturates the front-end
        assert np.array_equal(run_onnx(model, data), reference.run_int(q, data).output)
    assert_same_graph(q, onnx_converter.load(path))


def test_onnx_golden_dvs_cnn_float_and_integer():
    from egru_deploy.converters import onnx as onnx_converter
    from test_onnx import run_onnx

    graph, golden, _ = dvs_cnn_golden()
    x = golden["inputs"]
    assert np.abs(run_onnx(onnx_converter.to_onnx(graph), x) - golden["out.logits"]).max() < TOL
    q = quantize(graph, PROFILES["loihi2"], x)
    assert np.array_equal(run_onnx(onnx_converter.to_onnx(q), x), reference.run_int(q, x).output)


def test_cli_compile_and_emulate_a_cnn_model(tmp_path):
    """The commands users run: export, compile with frame calibration/eval files, emulate on hwsim."""
    from egru_deploy import data

    graph = small_cnn_graph(5)
    x = frames(graph, 5, batch=6, steps=4)
    model = tmp_path / "cnn.onnx"
    runner = CliRunner()
    from egru_deploy.converters import onnx as onnx_converter

    onnx_converter.export(graph, model)
    data.save_split(tmp_path / "eval.npz", x, np.arange(6) % 5)
    np.save(tmp_path / "x.npy", x)
    res = runner.invoke(main, ["compile", str(model), "--target", "loihi2", "--calibration", str(tmp_path / "eval.npz"),
                               "--eval", str(tmp_path / "eval.npz"), "-o", str(tmp_path / "b")], terminal_width=200)
    assert res.exit_code == 0, res.output
    table = re.sub(r"[\s│┃]+", " ", res.output)  # rich wraps long cells over several lines
    assert "layers on the host" in table and "Pool2d (layer 0), Conv2d (layer 1), Pool2d (layer 2)" in table
    res = runner.invoke(main, ["emulate", str(tmp_path / "b"), "--input", str(tmp_path / "x.npy"),
                               "--output", str(tmp_path / "y.npy"), "--backend", "hwsim"])
    assert res.exit_code == 0, res.output
    q = bundle.load_graph(tmp_path / "b")
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference.run_int(q, x).output)
