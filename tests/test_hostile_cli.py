"""Hostile and careless command lines: output folders and files, empty and mismatched data.

Every case: exit 2, one stderr line naming the file or option, no traceback, and nothing created,
changed or removed under the case's temporary folder (``tests/hostile.py``).
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hostile import assert_hostile_case, assert_one_line_error, run, snapshot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODEL = EXAMPLES / "digits_egru.pt"
TRAIN = EXAMPLES / "digits_train.npz"
TEST = EXAMPLES / "digits_test.npz"


def _compile_args(out, model=MODEL, *extra):
    return ["compile", model, "--target", "spinnaker2", "--calibration", TRAIN, "--output-mode", "last",
            "-o", out, *extra]


@pytest.fixture
def user_folder(tmp_path):
    """A folder of a user's own files, which no compile may replace."""
    folder = tmp_path / "thesis"
    (folder / "chapter").mkdir(parents=True)
    (folder / "notes.txt").write_text("five years of work")
    (folder / "chapter" / "1.tex").write_text("\\section{EGRU}")
    return folder


@pytest.fixture
def inputs(tmp_path):
    x = np.load(TEST)["x"][:4]
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


# --------------------------------------------------------------------------- compile -o

@pytest.mark.parametrize("force", [False, True])
def test_compile_never_replaces_a_folder_that_is_not_a_bundle(tmp_path, user_folder, force):
    line = assert_hostile_case(_compile_args(user_folder, MODEL, *(["--force"] if force else [])), tmp_path,
                               str(user_folder), "not a bundle")
    assert "--force" not in line  # forcing does not apply to a user's folder


def test_compile_refuses_the_working_folder_and_its_parents(tmp_path, user_folder):
    assert_hostile_case(_compile_args(".", MODEL, "--force"), tmp_path, "working folder", cwd=user_folder)
    assert_hostile_case(_compile_args("..", MODEL, "--force"), tmp_path, "working folder",
                        cwd=user_folder / "chapter")


def test_compile_refuses_a_folder_holding_an_input(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODEL, models / "m.pt")
    (models / "bundle.json").write_text("{}")  # even a folder that looks like a bundle
    assert_hostile_case(_compile_args(models, models / "m.pt", "--force"), tmp_path, "holds the input")
    assert_hostile_case(_compile_args(tmp_path, models / "m.pt", "--force"), tmp_path, "holds the input")


def test_compile_refuses_a_file_and_a_symlink_as_out_dir(tmp_path, user_folder):
    (tmp_path / "file").write_text("x")
    assert_hostile_case(_compile_args(tmp_path / "file"), tmp_path, "not a folder")
    (tmp_path / "link").symlink_to(user_folder)
    assert_hostile_case(_compile_args(tmp_path / "link", MODEL, "--force"), tmp_path, "not a folder")


def test_compile_replaces_an_existing_bundle_only_with_force(tmp_path):
    out = tmp_path / "bundle"
    assert run(_compile_args(out)).exit_code == 0
    assert_hostile_case(_compile_args(out), tmp_path, str(out), "--force")
    (out / "marker").write_text("old")
    result = run(_compile_args(out, MODEL, "--force"))
    assert result.exit_code == 0, result.output
    assert (out / "bundle.json").is_file() and not (out / "marker").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]  # no partial or old copy left


def test_failed_compile_leaves_no_created_folders(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((2, 8, 3), np.float32))
    argv = ["compile", MODEL, "--target", "loihi2", "--calibration", bad, "-o", tmp_path / "new" / "deep" / "b"]
    assert_hostile_case(argv, tmp_path, "--calibration", str(bad))


# --------------------------------------------------------------------------- output files

@pytest.mark.parametrize("command", ["emulate", "export"])
def test_output_file_paths_that_cannot_be_written(tmp_path, inputs, command):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    cases = [(tmp_path / "adir", "is a folder"),
             (tmp_path / "afile" / "out.npy", "is a file, not a folder"),
             (Path("/proc/egru-deploy-test/out.npy"), "cannot create folder")]
    for output, message in cases:
        if command == "emulate":
            argv = ["emulate", MODEL, "--input", inputs, "--output", output]
        else:
            argv = ["export", MODEL, "--format", "onnx", "-o", output]
        assert_hostile_case(argv, tmp_path, str(output), message)


def test_failed_write_removes_the_folders_it_created(tmp_path, inputs):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 8, 5), np.float32))
    assert_hostile_case(["emulate", MODEL, "--input", bad, "--output", tmp_path / "a" / "b" / "y.npy"], tmp_path,
                        f"--input {bad}", "expected shape")


# --------------------------------------------------------------------------- data that does not fit

@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """A tiny EvNN-layout language model (tied decoder) as a checkpoint file."""
    g = torch.Generator().manual_seed(0)
    v, e, h = 12, 6, 5
    sd = {"embeddings.weight": torch.randn(v, e, generator=g),
          "rnns.0.kernel": torch.randn(e, 3 * h, generator=g), "rnns.0.recurrent_kernel": torch.randn(h, 3 * h),
          "rnns.0.bias": torch.zeros(3 * h), "rnns.0.recurrent_bias": torch.zeros(3 * h),
          "rnns.0.thr": torch.full((h,), 0.3), "decoder.projection.weight": torch.randn(e, h),
          "decoder.projection.bias": torch.zeros(e), "decoder.decoder.bias": torch.zeros(v)}
    path = tmp_path_factory.mktemp("lm") / "lm.pt"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("backend", ["float", "reference"])
def test_empty_inputs_are_refused_on_every_backend(tmp_path, token_model, backend, request):
    if backend == "reference":
        model = tmp_path / "bundle"
        assert run(_compile_args(model)).exit_code == 0
    else:
        model = MODEL
    cases = {"no-samples.npy": np.zeros((0, 8, 8), np.float32), "no-steps.npy": np.zeros((3, 0, 8), np.float32)}
    for name, x in cases.items():
        np.save(tmp_path / name, x)
        assert_hostile_case(["emulate", model, "--input", tmp_path / name, "--output", tmp_path / "y.npy",
                             "--backend", backend], tmp_path, f"--input {tmp_path / name}")
    for name, tokens in {"tokens-no-steps.npy": np.zeros((2, 0), np.int64),
                         "tokens-no-samples.npy": np.zeros((0, 4), np.int64)}.items():
        np.save(tmp_path / name, tokens)
        if backend == "float":
            assert_hostile_case(["emulate", token_model, "--input", tmp_path / name, "--output", tmp_path / "y.npy"],
                                tmp_path, f"--input {tmp_path / name}", "0")


def test_empty_input_prints_no_warnings(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.float32))
    result = run(["emulate", MODEL, "--input", tmp_path / "empty.npy", "--output", tmp_path / "y.npy"])
    line = assert_one_line_error(result, "0 samples")
    assert "Warning" not in result.output and line in result.output


def test_eval_labels_are_checked_against_the_model(tmp_path):
    x = np.load(TEST)["x"][:6]
    cases = {"labels-too-big.npz": (x, np.array([0, 1, 2, 3, 4, 10])),
             "wrong-features.npz": (np.zeros((6, 8, 5), np.float32), np.zeros(6, np.int64)),
             "no-samples.npz": (x[:0], np.zeros(0, np.int64))}
    for name, (xs, ys) in cases.items():
        np.savez(tmp_path / name, x=xs, y=ys)
    for name, message in [("labels-too-big.npz", "label 10"), ("wrong-features.npz", "expected shape"),
                          ("no-samples.npz", "")]:
        argv = _compile_args(tmp_path / "b", MODEL, "--eval", tmp_path / name)
        line = assert_hostile_case(argv, tmp_path, str(tmp_path / name), message)
        assert line.startswith(f"error: --eval {tmp_path / name}") or "no-samples" in line


def test_calibration_errors_name_the_option_and_file(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 8, 2), np.float32))
    assert_hostile_case(["compile", MODEL, "--target", "loihi2", "--calibration", tmp_path / "c.npz",
                         "-o", tmp_path / "b"], tmp_path, f"--calibration {tmp_path / 'c.npz'}")


def test_successful_commands_touch_nothing_but_their_outputs(tmp_path, inputs):
    before = snapshot(tmp_path)
    assert run(["emulate", MODEL, "--input", inputs, "--output", tmp_path / "o" / "y.npy"]).exit_code == 0
    after = snapshot(tmp_path)
    assert set(after) - set(before) == {"o", "o/y.npy"} and all(after[k] == v for k, v in before.items())


# --------------------------------------------------------------------------- bundles and messages

def test_bundle_parts_linked_out_of_the_bundle_are_refused(tmp_path, inputs):
    from hostile import assert_no_secret, plant_secret

    outside = tmp_path / "elsewhere"
    plant_secret(outside)
    bundle = tmp_path / "bundle"
    assert run(_compile_args(bundle)).exit_code == 0
    shutil.copytree(bundle / "float", outside / "float")
    shutil.rmtree(bundle / "float")
    (bundle / "float").symlink_to(outside / "float")
    assert_hostile_case(["emulate", bundle, "--input", inputs, "--output", tmp_path / "y.npy"], tmp_path,
                        "outside the graph directory")
    (bundle / "bundle.json").rename(outside / "bundle.json")
    (bundle / "bundle.json").symlink_to(outside / "bundle.json")
    assert_hostile_case(["inspect", bundle], tmp_path, "outside the bundle")
    assert_no_secret(tmp_path / "bundle")


def test_a_newline_in_a_file_cannot_split_the_error_line(tmp_path):
    sd = torch.load(MODEL, weights_only=True)
    sd["evil\nerror: forged second line"] = torch.zeros(2)
    torch.save(sd, tmp_path / "m.pt")
    line = assert_hostile_case(["inspect", tmp_path / "m.pt"], tmp_path, "evil")
    assert "forged second line" in line


@pytest.mark.parametrize("layout, message", [
    ("x" * 5000, "no such file"),
    ("[" * 100000, "no such file"),
    ("{" + '"a":' * 1 + "[" * 100000, "not valid JSON"),
    ('{"layers": 3}', "layers"),
])
def test_bad_layout_values_give_one_line(tmp_path, layout, message):
    assert_hostile_case(["inspect", MODEL, "--layout", layout], tmp_path, "--layout" if "JSON" in message or
                        "no such" in message else "", message)


def test_outputs_get_the_usual_permissions(tmp_path, inputs):
    import os

    mask = os.umask(0o022)
    try:
        assert run(["emulate", MODEL, "--input", inputs, "--output", tmp_path / "y.npy"]).exit_code == 0
        assert run(_compile_args(tmp_path / "b")).exit_code == 0
    finally:
        os.umask(mask)
    assert (tmp_path / "y.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o755
