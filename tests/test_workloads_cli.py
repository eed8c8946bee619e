"""The workloads on the command line: train --task, compile --calibration/--eval <split>, evaluate.

Tiny tasks (registered in ``egru_deploy.tasks`` for the test) need no data package; the tests on the
real Fashion-MNIST example skip when its data or checkpoint is missing (scripts/setup_data.sh).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from egru_deploy import api, evaluation, reference, tasks
from egru_deploy.converters import load_model
from egru_deploy.model import EGRUNetwork
from hostile import assert_hostile_case, run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FMNIST = EXAMPLES / "fmnist_rows_egru.pt"


def _ok(result):
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def tiny(monkeypatch):
    """A 3-class classification task (T=4, I=3) and a 20-token language model task, as split names."""
    rng = np.random.default_rng(0)
    data = {s: (rng.random((n, 4, 3), dtype=np.float32), rng.integers(0, 3, n)) for s, n in
            (("train", 24), ("valid", 8), ("test", 12))}
    streams = {s: rng.integers(0, 20, n) for s, n in (("train", 200), ("valid", 60), ("test", 300))}
    monkeypatch.setitem(tasks.TASKS, "tiny", tasks.Task("tiny", "tiny", "classification", "accuracy", "last", 4, 3,
                                                        3, "test", data.__getitem__))
    monkeypatch.setitem(tasks.TASKS, "tinylm", tasks.Task("tinylm", "tinylm", "lm", "perplexity", "sequence", None,
                                                          20, 20, "test", streams.__getitem__))
    for name in ("tiny", "tinylm"):
        for split in ("train", "valid", "test"):
            monkeypatch.setitem(tasks.SPLIT_NAMES, f"{name}-{split}", (name, split))
    return data, streams


def _lm_checkpoint(path: Path) -> Path:
    """A random 2 x 16 EGRU LM over 20 tokens with low thresholds: plenty of events to carry."""
    from egru_deploy.train_tasks import egru_lm

    torch.manual_seed(0)
    net = egru_lm(20, 16, 2)
    for rnn in net.rnns:
        rnn.reset_parameters(thr_mean=0.05)
    torch.save(net.state_dict(), path)
    return path


def _classifier_checkpoint(path: Path, inputs: int, outputs: int) -> Path:
    torch.manual_seed(0)
    torch.save(EGRUNetwork(inputs, [8], output_size=outputs, output_mode="last").state_dict(), path)
    return path


# --------------------------------------------------------------------------- wiring on tiny tasks


def test_train_compile_evaluate_a_tiny_classifier(tiny, tmp_path):
    out = _ok(run(["train", "--task", "tiny", "--hidden", "8", "--layers", "1", "--epochs", "1",
                   "-o", tmp_path / "m.pt"]))
    assert "test accuracy" in out and (tmp_path / "m.pt").is_file()
    _ok(run(["compile", tmp_path / "m.pt", "--target", "spinnaker2", "--output-mode", "last",
             "--calibration", "tiny-train", "--eval", "tiny-test", "-o", tmp_path / "b"]))
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["samples"] == 12 and report["metric"] == "accuracy"
    graph = load_model(str(tmp_path / "m.pt"))
    expected = tasks.evaluate(graph, "tiny-test")
    floats = json.loads(_ok(run(["evaluate", tmp_path / "m.pt", "--task", "tiny", "--json"])))
    assert floats["accuracy"] == expected["accuracy"] and floats["sparsity"] == pytest.approx(expected["sparsity"])
    assert floats["macs_effective"] == pytest.approx(expected["macs_effective"])
    hw = json.loads(_ok(run(["evaluate", tmp_path / "b", "--task", "tiny", "--backend", "hwsim", "--json"])))
    ref = json.loads(_ok(run(["evaluate", tmp_path / "b", "--task", "tiny", "--backend", "reference", "--json"])))
    assert hw["accuracy"] == ref["accuracy"] and hw["sparsity"] == ref["sparsity"] and hw["samples"] == 12
    text = _ok(run(["evaluate", tmp_path / "b", "--task", "tiny", "--backend", "hwsim", "--limit", "5"]))
    assert "5 of 12 samples" in text and "accuracy" in text and "MACs per step" in text


def test_finetune_a_tiny_classifier(tiny, tmp_path):
    model = _classifier_checkpoint(tmp_path / "m.pt", inputs=3, outputs=3)
    out = _ok(run(["finetune", model, "--profile", "loihi2", "--task", "tiny", "--epochs", "1", "--batch-size", "8",
                   "--train-samples", "16", "-o", tmp_path / "q.pt"]))
    assert "after QAT" in out and (tmp_path / "q.pt").is_file()


def test_train_a_tiny_language_model(tiny, tmp_path):
    out = _ok(run(["train", "--task", "tinylm", "--hidden", "8", "--layers", "1", "--epochs", "1",
                   "-o", tmp_path / "lm.pt"]))
    assert "test perplexity" in out
    graph = load_model(str(tmp_path / "lm.pt"))
    assert graph.input.tokens and graph.out_size == 20


def test_limit_spreads_samples_over_the_split():
    np.testing.assert_array_equal(evaluation.spread(10, 3), [0, 4, 9])
    np.testing.assert_array_equal(evaluation.spread(5, None), np.arange(5))
    np.testing.assert_array_equal(evaluation.spread(5, 9), np.arange(5))
    assert len(set(evaluation.spread(1000, 999))) == 999


def test_lm_stream_carries_events_like_chained_reference_runs(tiny, tmp_path):
    """evaluate's stream == reference runs chained by hand with initial_events = final_events()."""
    model = _lm_checkpoint(tmp_path / "lm.pt")
    graph = load_model(str(model))
    x, y = tasks.lm_arrays(tiny[1]["test"])
    chunk = 7

    def chained(run_chunk, carry=True):
        nll, state = 0.0, None
        for start in range(0, x.shape[1], chunk):
            result = run_chunk(x[:, start:start + chunk], state)
            nll += evaluation.log_softmax_nll(result.output, y[:, start:start + chunk])
            state = result.final_events() if carry else None
        return float(np.exp(nll / y.size))

    expected = chained(lambda xc, s: reference.run_float(graph, xc, s))
    got = api.evaluate(str(model), "tinylm", chunk=chunk)
    assert got["carry"] and got["perplexity"] == pytest.approx(expected, rel=1e-12) and got["tokens"] == y.size
    cold = api.evaluate(str(model), "tinylm", chunk=chunk, carry=False)
    assert cold["perplexity"] == pytest.approx(chained(lambda xc, s: reference.run_float(graph, xc, None)), rel=1e-12)
    assert cold["perplexity"] != got["perplexity"]  # the carried events matter on this model
    # Compiled: both hwsims carry integer events exactly as the integer reference does.
    for target in ("loihi2", "spinnaker2"):
        bundle = tmp_path / f"b-{target}"
        api.compile(str(model), target, bundle, "tinylm-train", eval_data="tinylm-test")
        quantized = api.load(str(bundle))
        expected = chained(lambda xc, s: reference.run_int(quantized, xc, s))
        hw = api.evaluate(str(bundle), "tinylm", "hwsim", chunk=chunk)
        assert hw["carry"] and hw["perplexity"] == pytest.approx(expected, rel=1e-12)
        assert hw["sparsity"] == api.evaluate(str(bundle), "tinylm", "reference", chunk=chunk)["sparsity"]
    report = json.loads((tmp_path / "b-spinnaker2" / "report.json").read_text())
    assert report["metric"] == "perplexity" and "perplexity_change_pct" in report
    assert len(report["layer_snr_db_over_time"]) == 2


def test_lm_emulate_returns_logits_per_step(tiny, tmp_path):
    model = _lm_checkpoint(tmp_path / "lm.pt")
    np.save(tmp_path / "tokens.npy", tasks.lm_arrays(tiny[1]["test"])[0][:3, :6])
    _ok(run(["emulate", model, "--input", tmp_path / "tokens.npy", "--output", tmp_path / "y.npy"]))
    assert np.load(tmp_path / "y.npy").shape == (3, 6, 20)  # (B, T, V) logits


def test_lm_evaluate_cli_prints_perplexity_and_the_scheme(tiny, tmp_path):
    model = _lm_checkpoint(tmp_path / "lm.pt")
    out = _ok(run(["evaluate", model, "--task", "tinylm", "--limit", "10", "--chunk", "5"]))
    assert "perplexity" in out and "100 tokens (10 rows x 10 of 29 steps)" in out
    assert "last events y carried" in out


# --------------------------------------------------------------------------- the Fashion-MNIST example


@pytest.fixture(scope="module")
def fmnist_bundle(tmp_path_factory):
    if not FMNIST.is_file():
        pytest.skip(f"{FMNIST.name} not trained yet (scripts/train_workloads.py)")
    if not tasks.available("fmnist-rows"):
        pytest.skip("fmnist-rows data not installed (scripts/setup_data.sh)")
    out = tmp_path_factory.mktemp("fmnist") / "bundle"
    _ok(run(["compile", FMNIST, "--target", "loihi2", "--output-mode", "last", "--calibration", "fmnist-train",
             "--eval", "fmnist-test", "-o", out]))
    return out


def test_evaluate_fmnist_example_float_and_hwsim(fmnist_bundle):
    x, y = tasks.split_arrays("fmnist-test")
    idx = evaluation.spread(len(x), 20)
    floats = json.loads(_ok(run(["evaluate", FMNIST, "--task", "fmnist-rows", "--limit", "20", "--json"])))
    expected = reference.run_float(api.load(str(FMNIST), output_mode="last"), x[idx])
    assert floats["samples"] == 20 and floats["accuracy"] == np.mean(expected.output.argmax(1) == y[idx])
    hw = json.loads(_ok(run(["evaluate", fmnist_bundle, "--task", "fmnist-rows", "--backend", "hwsim",
                             "--limit", "20", "--json"])))
    ref = reference.run_int(api.load(str(fmnist_bundle)), x[idx])
    assert hw["accuracy"] == np.mean(ref.output.argmax(1) == y[idx]) and hw["sparsity"] == ref.sparsity()
    assert 0.5 < hw["sparsity"] < 1.0 and hw["macs_effective"] < hw["macs_dense"]
    report = json.loads((fmnist_bundle / "report.json").read_text())
    assert report["samples"] == 512 and report["runs"]["float"]["accuracy"] > 0.8


# --------------------------------------------------------------------------- bad input: exit 2, one line


def test_bad_workload_input_is_one_line(tiny, tmp_path):
    small = _classifier_checkpoint(tmp_path / "two.pt", inputs=3, outputs=2)  # tiny has 3 classes
    assert_hostile_case(["evaluate", small, "--task", "nope"], tmp_path, "unknown task 'nope'")
    assert_hostile_case(["evaluate", small, "--task", "tiny", "--limit", "0"], tmp_path, "--limit", "got 0")
    assert_hostile_case(["evaluate", small, "--task", "tiny"], tmp_path, "label 2 needs at least 3 model outputs")
    assert_hostile_case(["compile", small, "--target", "loihi2", "--calibration", "tiny-train", "--eval", "tiny-test",
                         "-o", tmp_path / "b"], tmp_path, "label 2 needs at least 3 model outputs")
    assert_hostile_case(["evaluate", small, "--task", "tinylm"], tmp_path, "--task tinylm")
    assert_hostile_case(["evaluate", small, "--task", "tiny", "--backend", "hwsim"], tmp_path, "compiled bundle")
    assert_hostile_case(["evaluate", small, "--task", "tiny", "--split", "dev"], tmp_path, "--split")
    assert_hostile_case(["train", "--task", "nope", "-o", tmp_path / "m.pt"], tmp_path, "unknown task 'nope'")
    assert_hostile_case(["train", "--task", "tiny", "-o", tmp_path / "m.pt"], tmp_path, "--hidden")
    assert_hostile_case(["finetune", small, "--profile", "loihi2", "--task", "brown-lm", "-o", tmp_path / "q.pt"],
                        tmp_path, "no QAT loop")
    assert_hostile_case(["compile", small, "--target", "loihi2", "--calibration", "nope-train", "-o", tmp_path / "b"],
                        tmp_path, "nope-train")
    lm = _lm_checkpoint(tmp_path / "lm.pt")
    assert_hostile_case(["evaluate", lm, "--task", "tinylm", "--chunk", "0"], tmp_path, "--chunk")
