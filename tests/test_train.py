"""Digits data, training and the shipped example model."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from egru_deploy import data
from egru_deploy.converters import load_model
from egru_deploy.cli import main
from egru_deploy.errors import UserError
from egru_deploy.model import EGRUNetwork
from egru_deploy.train import train_digits

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_split_is_deterministic_stratified_and_scaled():
    first, second = data.digits_split(), data.digits_split()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    x_train, y_train, x_test, y_test = first
    assert x_train.dtype == x_test.dtype == np.float32 and y_train.dtype == y_test.dtype == np.int64
    assert x_train.shape[1:] == x_test.shape[1:] == (8, 8)
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 450
    assert 0.0 <= min(x_train.min(), x_test.min()) and max(x_train.max(), x_test.max()) <= 1.0
    # stratified: every class holds its share of the test set, to within one sample
    _, y_all = data.digits_sequences()
    expected = np.bincount(y_all) * len(y_test) / len(y_all)
    assert np.all(np.abs(np.bincount(y_test) - expected) <= 1)
    assert not np.array_equal(data.digits_split(seed=1)[3], y_test)


def test_pixel_layout_is_the_same_images_as_rows():
    rows, pixels = data.digits_split()[2], data.digits_split(layout="pixels")[2]
    assert pixels.shape == (450, 64, 1)
    np.testing.assert_array_equal(pixels.reshape(450, 8, 8), rows)
    with pytest.raises(data.DataError, match="layout"):
        data.digits_split(layout="columns")


def test_split_file_round_trip(tmp_path):
    x, y = data.digits_split()[2:]
    data.save_split(tmp_path / "test.npz", x, y)
    x2, y2 = data.load_split(tmp_path / "test.npz")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


GOOD_X = np.zeros((4, 8, 8), np.float32)
GOOD_Y = np.arange(4, dtype=np.int64)
BAD_SPLITS = {
    "missing y": ({"x": GOOD_X}, "missing key"),
    "missing x": ({"y": GOOD_Y}, "missing key"),
    "x 2-D": ({"x": GOOD_X[:, 0], "y": GOOD_Y}, r"shape \(N,T,I\)"),
    "x integer": ({"x": GOOD_X.astype(np.int32), "y": GOOD_Y}, "float32"),
    "x NaN": ({"x": np.full_like(GOOD_X, np.nan), "y": GOOD_Y}, "NaN"),
    "y float": ({"x": GOOD_X, "y": GOOD_Y.astype(np.float32)}, "integer labels"),
    "y too short": ({"x": GOOD_X, "y": GOOD_Y[:3]}, "to match"),
    "y negative": ({"x": GOOD_X, "y": -GOOD_Y - 1}, "negative"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPLITS))
def test_bad_split_file_gives_one_line_error(tmp_path, case):
    arrays, message = BAD_SPLITS[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=message) as err:
        data.load_split(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_unreadable_split_files_give_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    bare = tmp_path / "bare.npy"
    np.save(bare, GOOD_X)
    for path, message in ((tmp_path / "absent.npz", "no such file"), (garbage, "not a readable"),
                          (bare, "single .npy array")):
        with pytest.raises(UserError, match=message) as err:
            data.load_split(path)
        assert "\n" not in str(err.value)


def test_short_training_is_reproducible_and_loadable(tmp_path):
    options = dict(hidden=8, layers=2, epochs=1, seed=3, progress=False)
    summary = train_digits(tmp_path / "a.pt", **options)
    train_digits(tmp_path / "b.pt", **options)
    first, second = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    assert {"rnns.0.kernel", "rnns.1.thr", "fc.weight", "fc.bias"} <= set(first)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not list(tmp_path.glob(".*"))  # written through a temporary file, then renamed
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and 0.0 <= summary["test_sparsity"] <= 1.0
    # EvNN's training constants (_max_norm, dampening_factor, pseudo_derivative_support) are Parameters
    # without gradient; the model's parameters are the others.
    assert summary["parameters"] == sum(p.numel() for p in EGRUNetwork(8, [8, 8], 10).parameters() if p.requires_grad)
    graph = load_model(tmp_path / "a.pt")
    assert [layer.hidden for layer in graph.egru_layers] == [8, 8] and graph.out_size == 10
    x_test, y_test = data.digits_split()[2:]
    assert data.evaluate(graph, x_test, y_test)["accuracy"] == summary["test_accuracy"]


def test_cli_train_reports_metrics(tmp_path):
    result = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "m.pt"), "--hidden", "4", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "activity sparsity" in result.output
    assert (tmp_path / "m.pt").is_file()
    bad = CliRunner().invoke(main, ["train", "-o", str(tmp_path / "n.pt"), "--layers", "0"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "hidden, layers and epochs" in bad.output
    assert not (tmp_path / "n.pt").exists()


def test_shipped_example_reaches_accuracy_and_sparsity_targets():
    graph = load_model(EXAMPLES / "digits_egru.pt")
    x_test, y_test = data.load_split(EXAMPLES / "digits_test.npz")
    np.testing.assert_array_equal(y_test, data.digits_split()[3])  # the held-out split, not training data
    metrics = data.evaluate(graph, x_test, y_test)
    assert metrics["accuracy"] >= 0.93
    assert metrics["sparsity"] >= 0.70
    x_train, y_train = data.load_split(EXAMPLES / "digits_train.npz")
    np.testing.assert_array_equal(y_train, data.digits_split()[1])
