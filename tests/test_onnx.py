"""ONNX export/import: the checker, onnxruntime against the float and integer references, round
trips, dynamic batch and sequence length, bad files, the CLI."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper
from test_nir import CONFIGS, assert_same_graph, config_graph, random_inputs

from egru_deploy import ir, reference
from egru_deploy.cli import main
from egru_deploy.converters import load_model
from egru_deploy.converters import onnx as onnx_converter
from egru_deploy.errors import ConversionError
from egru_deploy.profiles import PROFILES
from egru_deploy.quantize import quantize

TOL = 1e-5
EXAMPLE = Path(__file__).parents[1] / "examples" / "digits_egru.pt"


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = session(model)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", CONFIGS)
def test_float_export_checks_and_equals_reference(tmp_path, name):
    graph = config_graph(name, seed=7)
    path = tmp_path / "model.onnx"
    onnx_converter.export(graph, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    for batch, steps in ((3, 12), (1, 5)):  # one file, any batch size and sequence length
        x = random_inputs(graph, seed=7, batch=batch, steps=steps)
        ref = reference.run_float(graph, x)
        out = run_onnx(model, x)
        assert out.shape == ref.output.shape and out.dtype == np.float32
        assert np.abs(out - ref.output).max() < TOL
    assert_same_graph(graph, onnx_converter.load(path))


@pytest.mark.parametrize("mode", ["sequence", "last", "mean"])
def test_digits_data_every_output_mode(mode):
    """Real inputs (scikit-learn digits, 8 rows of 8 pixels) through a digits-shaped classifier."""
    torch = pytest.importorskip("torch")
    from egru_deploy.converters.torch import from_torch
    from egru_deploy.data import digits_split
    from egru_deploy.model import EGRUNetwork

    torch.manual_seed(0)
    graph = from_torch(EGRUNetwork(8, [32, 16], output_size=10, use_trace=True, output_mode=mode))
    x = digits_split()[2][:64]
    ref = reference.run_float(graph, x)
    assert np.abs(run_onnx(onnx_converter.to_onnx(graph), x) - ref.output).max() < TOL


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="examples/digits_egru.pt not shipped in this checkout")
def test_shipped_digits_example():
    from egru_deploy.data import DIGITS_OUTPUT_MODE, digits_split

    graph = replace(load_model(EXAMPLE), output_mode=DIGITS_OUTPUT_MODE)
    x = digits_split()[2]
    assert np.abs(run_onnx(onnx_converter.to_onnx(graph), x) - reference.run_float(graph, x).output).max() < TOL


# --------------------------------------------------------------------------- quantized graphs


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("name", ["2layer-trace-last", "3layer-tokens-proj-mean", "trace-readout-zoneout"])
def test_quantized_export_equals_integer_reference_exactly(tmp_path, profile, name):
    graph = config_graph(name, seed=11)
    x = random_inputs(graph, seed=11, batch=4, steps=16)
    qgraph = quantize(graph, PROFILES[profile], x)
    path = tmp_path / "model.onnx"
    onnx_converter.export(qgraph, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ref = reference.run_int(qgraph, x)
    assert np.array_equal(run_onnx(model, x), ref.output)
    assert_same_graph(qgraph, onnx_converter.load(path))
    if not graph.input.tokens:  # far outside the calibrated range: saturating sums stay exact
        loud = x * 1e4
        ref = reference.run_int(qgraph, loud)
        assert ref.saturations
        assert np.array_equal(run_onnx(model, loud), ref.output)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_activation_lowering_is_exact_over_the_state_range(profile):
    """Sigmoid and tanh of every integer in +-10 in the state format (all pieces, clamps, table ends)."""
    p = PROFILES[profile]
    arith = onnx_converter._IntArithmetic(p)
    initializers = {}
    b = onnx_converter._Builder("act", initializers)
    outputs = [b.op("Identity", arith.sigmoid(b, "a"), out="sigmoid"), b.op("Identity", arith.tanh(b, "a"), out="tanh")]
    int64 = onnx.TensorProto.INT64
    graph = helper.make_graph(b.nodes, "activations", [helper.make_tensor_value_info("a", int64, [None])],
                              [helper.make_tensor_value_info(o, int64, [None]) for o in outputs],
                              initializer=list(initializers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_converter.OPSET)])
    onnx.checker.check_model(model, full_check=True)
    a = np.arange(-10 << p.state_frac, (10 << p.state_frac) + 1, dtype=np.int64)
    sig, tanh = session(model).run(None, {"a": a})
    assert np.array_equal(sig, p.activation.sigmoid(a, p.state_frac))
    assert np.array_equal(tanh, p.activation.tanh(a, p.state_frac))


# --------------------------------------------------------------------------- bad input


def _tampered(tmp_path, change) -> Path:
    model = onnx_converter.to_onnx(config_graph("2layer-trace-last"))
    change(model)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    return path


def _scan_body(model, layer: int) -> onnx.GraphProto:
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    return scans[layer].attribute[0].g


def _set_op(node: onnx.NodeProto, op_type: str) -> None:
    node.op_type = op_type


def _replace_initializer(model, name: str, array: np.ndarray) -> None:
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(array, name))


def _drop_initializer(model, name: str) -> None:
    kept = [t for t in model.graph.initializer if t.name != name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _set_prop(model, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = value


def _set_layer_field(model, layer: int, field: str, value) -> None:
    import json

    doc = json.loads({p.key: p.value for p in model.metadata_props}[onnx_converter.META_GRAPH])
    doc["layers"][layer][field] = value
    _set_prop(model, onnx_converter.META_GRAPH, json.dumps(doc))


BAD_MODELS = {
    "changed op in the step": (
        lambda m: _set_op(next(n for n in _scan_body(m, 1).node if n.op_type == "Sigmoid"), "Relu"),
        r"node 'layers\.1\.step/Sigmoid\d+': expected Sigmoid\(.*got Relu"),
    "wrong weight shape": (
        lambda m: _replace_initializer(m, "layers.0.kernel", np.zeros((5, 20), np.float32)),
        r"layer 0: EGRU\.kernel: expected shape \(5, 21\), got \(5, 20\)"),
    "missing weight": (lambda m: _drop_initializer(m, "layers.1.thr"), r"array 'layers\.1\.thr' missing"),
    "missing edge": (lambda m: m.graph.node[-1].input.__setitem__(0, "elsewhere"),
                     r"node 'main/Gather\d+': expected Gather\("),
    "extra node": (lambda m: m.graph.node.append(helper.make_node("Relu", ["output"], ["relu"], name="extra")),
                   r"node 'extra' \(Relu\): unexpected"),
    "changed constant": (lambda m: _replace_initializer(m, "const.float32.0.0", np.float32(0.5)),
                         r"constant 'const\.float32\.0\.0' differs"),
    "broken metadata": (lambda m: _set_prop(m, onnx_converter.META_GRAPH, "{not json"),
                        r"metadata_props 'egru_deploy\.graph' is not valid JSON"),
    "foreign model": (lambda m: m.ClearField("metadata_props"), r"not an EGRU exported by egru-deploy"),
    "zoneout the step does not apply": (lambda m: _set_layer_field(m, 0, "zoneout", 0.5),
                                        r"initializer 'const\.float32\.0\.5' missing"),  # the blend's p
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_bad_models_raise_one_line_conversion_errors(tmp_path, case):
    change, message = BAD_MODELS[case]
    path = _tampered(tmp_path, change)
    with pytest.raises(ConversionError, match=message) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07\x12\xff" + bytes(range(200)))
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        onnx_converter.load(path)


# --------------------------------------------------------------------------- CLI


def test_cli_export_float_and_quantized(tmp_path):
    graph = config_graph("3layer-tokens-proj-mean", seed=2)
    x = random_inputs(graph, seed=2)
    qgraph = quantize(graph, PROFILES["spinnaker2"], x)
    ir.save(graph, tmp_path / "float")
    ir.save(qgraph, tmp_path / "quantized")
    runner = CliRunner()
    for source, expected in (("float", reference.run_float(graph, x)), ("quantized", reference.run_int(qgraph, x))):
        out = tmp_path / f"{source}.onnx"
        result = runner.invoke(main, ["export", str(tmp_path / source), "--format", "onnx", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert np.abs(run_onnx(onnx.load(str(out)), x) - expected.output).max() <= (TOL if source == "float" else 0)
    result = runner.invoke(main, ["inspect", str(tmp_path / "quantized.onnx"), "--json"])
    assert result.exit_code == 0 and '"profile": "spinnaker2"' in result.output
    result = runner.invoke(main, ["export", str(tmp_path / "quantized"), "--format", "nir",
                                  "-o", str(tmp_path / "q.nir")])
    assert result.exit_code == 2 and "NIR holds float weights only" in result.output
    assert not list(tmp_path.glob("*.nir*")) and not list(tmp_path.glob(".*partial*"))
