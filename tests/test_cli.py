"""The command line end to end on the bundled example: compile, emulate, inspect; bad input."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from egru_deploy.cli import main

EXAMPLE = "examples/digits_egru.pt"


@pytest.fixture(scope="module")
def test_inputs(tmp_path_factory):
    from egru_deploy.data import load_split

    x, y = load_split("examples/digits_test.npz")
    path = tmp_path_factory.mktemp("inputs") / "x.npy"
    np.save(path, x[:40])
    return path, x[:40], y[:40]


@pytest.fixture(scope="module")
def spinnaker2_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "digits-s2"
    result = CliRunner().invoke(main, ["compile", EXAMPLE, "--target", "spinnaker2", "--calibration",
                                       "examples/digits_train.npz", "--eval", "examples/digits_test.npz",
                                       "--output-mode", "last", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "egru-deploy, version" in result.output


def test_compile_writes_bundle_with_report_and_stages(spinnaker2_bundle):
    names = {p.name for p in spinnaker2_bundle.iterdir()}
    assert {"bundle.json", "graph.json", "weights.npz", "float", "stages", "report.json", "report.png"} <= names
    assert sorted(p.name for p in (spinnaker2_bundle / "stages").iterdir()) == ["00-float", "01-quantize"]
    report = json.loads((spinnaker2_bundle / "report.json").read_text())
    assert report["target"] == "spinnaker2" and report["metric"] == "accuracy"
    assert report["accuracy_drop_pp"] <= 1.0  # the PTQ bound on the digits example
    assert report["runs"]["quantized"]["sparsity"] > 0.7


def test_emulate_reference_and_float_on_bundle(spinnaker2_bundle, test_inputs, tmp_path):
    path, x, y = test_inputs
    outputs = {}
    for backend in ("float", "reference"):
        out = tmp_path / f"{backend}.npy"
        result = CliRunner().invoke(main, ["emulate", str(spinnaker2_bundle), "--input", str(path),
                                           "--output", str(out), "--backend", backend])
        assert result.exit_code == 0, result.output
        assert "activity sparsity" in result.output
        outputs[backend] = np.load(out)
        assert outputs[backend].shape == (40, 10) and outputs[backend].dtype == np.float32
    agree = np.mean(outputs["float"].argmax(1) == outputs["reference"].argmax(1))
    assert agree >= 0.95


def test_inspect_bundle_shows_profile(spinnaker2_bundle):
    result = CliRunner().invoke(main, ["inspect", str(spinnaker2_bundle), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["profile"] == "spinnaker2"


@pytest.mark.parametrize("args, message", [
    (["compile", EXAMPLE, "--target", "loihi2", "--calibration", "nope.npz", "-o", "{out}"], "nope.npz: no such file"),
    (["compile", EXAMPLE, "--target", "loihi2", "--calibration", "{bad_calib}", "-o", "{out}"], "calibration"),
    (["compile", EXAMPLE, "--target", "loihi2", "--calibration", "{empty_calib}", "-o", "{out}"], "empty"),
    (["emulate", EXAMPLE, "--input", "{bad_input}", "--output", "{out}.npy"], "expected shape (B,T,8)"),
    (["emulate", EXAMPLE, "--input", "{test_x}", "--output", "{out}.npy", "--backend", "reference"], "quantized"),
    (["emulate", EXAMPLE, "--input", "{test_x}", "--output", "{out}.npy", "--backend", "warp"], "unknown backend"),
    (["inspect", "missing.pt"], "missing.pt: no such file"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, test_inputs, args, message):
    np.savez(tmp_path / "bad_calib.npz", x=np.zeros((4, 8, 3), np.float32))
    np.savez(tmp_path / "empty_calib.npz", x=np.zeros((0, 8, 8), np.float32))
    np.save(tmp_path / "bad_input.npy", np.zeros((2, 8, 5), np.float32))
    values = {"out": str(tmp_path / "out"), "bad_calib": str(tmp_path / "bad_calib.npz"),
              "empty_calib": str(tmp_path / "empty_calib.npz"), "bad_input": str(tmp_path / "bad_input.npy"),
              "test_x": str(test_inputs[0])}
    result = CliRunner().invoke(main, [a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.npy").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no partial bundle left
