"""EvNN checkpoints written by other code: every layout variant imports and, run by the float
reference, equals the NumPy spec; the CLI gives the same; corrupt files fail with one line."""
from __future__ import annotations

import argparse
import io
import json
import re

import numpy as np
import pytest
import spec_numpy
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from egru_deploy import ir, reference
from egru_deploy.cli import main
from egru_deploy.converters import evnn
from egru_deploy.errors import UserError
from egru_deploy.model import EGRUNetwork

TOL = 1e-5
TRAINING_ONLY = {"dampening_factor": 0.7, "pseudo_derivative_support": 1.0, "_max_norm": -1.0}
LAYER_PARAMS = ("kernel", "recurrent_kernel", "bias", "recurrent_bias", "thr")
CLASSIFIER = dict(input_size=4, hidden=[6, 5], output=3)
LM_PROJECTION = dict(input_size=4, hidden=[6, 5], output=9, vocab=9, projection=4)


def make_case(seed: int, net_args: dict, use_trace: bool = False, tie: bool = False, steps: int = 12):
    """A well-conditioned random EvNN-layout network and input (see spec_numpy.well_conditioned)."""
    rng = np.random.default_rng(seed)

    def draw():
        net = spec_numpy.random_net(rng, **net_args)
        if tie:  # the readout shares the embedding matrix, as in EvNN's LanguageModel
            net["decoder.decoder.weight" if "decoder.decoder.weight" in net else "fc.weight"] = net["embeddings.weight"]
        return net, spec_numpy.random_input(rng, net, 2, steps), use_trace

    net, x, _, _ = spec_numpy.well_conditioned(draw)
    return net, x


def state_dict(net: dict, rename=lambda key: key, dtype=torch.float32) -> dict:
    """``net`` as EvNN writes it: tensors, keys renamed, and the training-only [1] tensors of each layer."""
    sd = {rename(k): torch.tensor(v, dtype=dtype) for k, v in net.items()}
    for i in range(spec_numpy.layer_count(net)):
        sd.update({rename(f"rnns.{i}.{key}"): torch.tensor([value]) for key, value in TRAINING_ONLY.items()})
    return sd


def spec_output(net: dict, x, use_trace=False, output_mode: str = "sequence", **spec) -> np.ndarray:
    result = spec_numpy.run(net, x, use_trace, **spec)
    assert result["margin"] > 1e-6, "test network too close to a threshold for a float32 comparison"
    sequence = result["output"]
    return {"sequence": sequence, "last": sequence[:, -1], "mean": sequence.mean(axis=1)}[output_mode]


def save(tmp_path, obj, name: str = "ckpt.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def assert_one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def prefix_rename(old: str, new: str):
    return lambda key: new + key[len(old):] if key.startswith(old) else key


def adam_state(sd: dict) -> dict:
    """An optimizer state_dict shaped like torch.optim.Adam's."""
    return {"state": {i: {"step": torch.tensor(12.0), "exp_avg": torch.zeros_like(t), "exp_avg_sq": torch.zeros_like(t)}
                      for i, t in enumerate(sd.values())},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": list(range(len(sd)))}]}


# --------------------------------------------------------------------------- layout variants

def without(net: dict, *keys: str) -> dict:
    return {k: v for k, v in net.items() if k not in keys}


def renamed_readout(name: str):
    return lambda net: (state_dict(net, prefix_rename("fc.", f"{name}.")), net)


def thr_reparam(net):
    """Older EvNN files: thr_reparam = logit(thr)."""
    reparam = {(k + "_reparam" if k.endswith(".thr") else k): (np.log(v / (1 - v)) if k.endswith(".thr") else v)
               for k, v in net.items()}
    return state_dict(reparam), net


def thr_out_of_range(net):
    """Thresholds beyond [0, 1] run clamped, as EvNN clamps them at forward."""
    thr = net["rnns.0.thr"] + np.array([1.5, -1.0, 0, 0, 0, 0], np.float32)
    return state_dict({**net, "rnns.0.thr": thr}), {**net, "rnns.0.thr": np.clip(thr, 0.0, 1.0)}


# name: net -> (checkpoint object, the network the spec should run)
CLASSIFIER_VARIANTS = {
    "bare_rnns": lambda net: (state_dict(net), net),
    "rnn_prefix": lambda net: (state_dict(net, prefix_rename("rnns.", "rnn.")), net),
    "layers_prefix": lambda net: (state_dict(net, prefix_rename("rnns.", "layers.")), net),
    "egru_prefix": lambda net: (state_dict(net, prefix_rename("rnns.", "egru.")), net),
    "dataparallel_module": lambda net: (state_dict(net, lambda k: "module." + k), net),
    "lightning": lambda net: ({"state_dict": state_dict(net, lambda k: "model." + k), "epoch": 3, "global_step": 120,
                               "optimizer_states": [adam_state(state_dict(net))]}, net),
    "model_state_dict": lambda net: ({"model_state_dict": state_dict(net), "optimizer_state_dict":
                                      adam_state(state_dict(net)), "epoch": 7, "loss": 0.25}, net),
    "model_entry": lambda net: ({"model": state_dict(net), "epoch": 1}, net),
    "net_entry": lambda net: ({"net": state_dict(net), "best": True}, net),
    "nested_twice": lambda net: ({"checkpoint": {"state_dict": state_dict(net), "step": 5}, "note": "best"}, net),
    **{f"{name}_readout": renamed_readout(name) for name in ("linear", "classifier", "readout", "output")},
    "readout_without_bias": lambda net: (state_dict(without(net, "fc.bias")),
                                         {**net, "fc.bias": np.zeros_like(net["fc.bias"])}),
    "float64": lambda net: (state_dict(net, dtype=torch.float64), net),
    "thr_reparam": thr_reparam,
    "thr_out_of_range": thr_out_of_range,
}


@pytest.mark.parametrize("variant", sorted(CLASSIFIER_VARIANTS))
def test_classifier_variants_equal_spec(tmp_path, variant):
    net, x = make_case(1, CLASSIFIER)
    checkpoint, spec_net = CLASSIFIER_VARIANTS[variant](net)
    graph = evnn.load(save(tmp_path, checkpoint))
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(spec_net, x), rtol=0, atol=TOL)


@pytest.mark.parametrize("rename", [lambda k: k[len("rnns.0."):], prefix_rename("rnns.0.", "rnn.")],
                         ids=["bare_keys", "rnn_dot"])
def test_single_top_level_layer(tmp_path, rename):
    net, x = make_case(2, dict(input_size=3, hidden=[7]))
    graph = evnn.load(save(tmp_path, state_dict(net, rename)))
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(net, x), rtol=0, atol=TOL)


def test_eleven_layers_ordered_numerically(tmp_path):
    # Distinct widths: a lexical order (rnns.10. before rnns.2.) would not even fit together.
    net, x = make_case(3, dict(input_size=3, hidden=[4, 5, 6, 4, 5, 6, 4, 5, 6, 4, 5], output=2), steps=8)
    graph = evnn.load(save(tmp_path, state_dict(net)))
    assert [layer.hidden for layer in graph.egru_layers] == [4, 5, 6, 4, 5, 6, 4, 5, 6, 4, 5]
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(net, x), rtol=0, atol=TOL)


# EvNN's LanguageModel: embeddings, rnns, decoder.projection and decoder.decoder tied to the embedding.
# The projection has no activation with thr keys (v0.2.0) and a ReLU with thr_reparam keys (pre-0.2).
def lm_projection(net):
    return state_dict(net), net


def lm_projection_pre_0_2(net):
    checkpoint, _ = thr_reparam(net)
    return checkpoint, net


def lm_tied_weight_missing(net):
    return state_dict(without(net, "decoder.decoder.weight")), net


def lm_no_projection(net):
    return state_dict(net, prefix_rename("fc.", "decoder.decoder.")), net


def lm_no_projection_tied_missing(net):
    return state_dict(without(net, "fc.weight"), prefix_rename("fc.", "decoder.decoder.")), net


LM_VARIANTS = {
    "projection_tied_stored_twice": (LM_PROJECTION, lm_projection),
    "projection_pre_0_2_thr_reparam_relu": (LM_PROJECTION, lm_projection_pre_0_2),
    "projection_tied_weight_missing": (LM_PROJECTION, lm_tied_weight_missing),
    "no_projection_tied": (dict(input_size=5, hidden=[6, 5], output=9, vocab=9), lm_no_projection),
    "no_projection_tied_weight_missing": (dict(input_size=5, hidden=[6, 5], output=9, vocab=9),
                                          lm_no_projection_tied_missing),
}


@pytest.mark.parametrize("variant", sorted(LM_VARIANTS))
def test_language_model_variants_equal_spec(tmp_path, variant):
    net_args, build = LM_VARIANTS[variant]
    net, tokens = make_case(4, net_args, tie=True)
    checkpoint, spec_net = build(net)
    graph = evnn.load(save(tmp_path, checkpoint))
    assert graph.input.tokens and isinstance(graph.layers[0], ir.Embedding)
    assert graph.metadata["evnn"]["model"] == "lm"
    relu = "pre_0_2" in variant
    linears = [layer for layer in graph.layers if isinstance(layer, ir.Linear)]
    assert [layer.relu for layer in linears] == ([relu, False] if "decoder.projection.weight" in net else [False])
    np.testing.assert_allclose(reference.run_float(graph, tokens).output,
                               spec_output(spec_net, tokens, projection_relu=relu), rtol=0, atol=TOL)


@pytest.mark.parametrize("activation", ["relu", "none"])
def test_projection_activation_from_the_layout(tmp_path, activation):
    net, tokens = make_case(4, LM_PROJECTION, tie=True)
    for checkpoint in (state_dict(net), thr_reparam(net)[0]):
        graph = evnn.load(save(tmp_path, checkpoint), layout={"projection_activation": activation})
        assert graph.layers[-2].relu == (activation == "relu")
        np.testing.assert_allclose(reference.run_float(graph, tokens).output,
                                   spec_output(net, tokens, projection_relu=activation == "relu"), rtol=0, atol=TOL)


def test_wrapper_metadata_output_mode_and_trace(tmp_path):
    net, x = make_case(5, dict(input_size=4, hidden=[6, 5, 4], output=3), use_trace=True)
    path = save(tmp_path, {"state_dict": state_dict(net), "output_mode": "last", "use_trace": True})
    graph = evnn.load(path)
    assert graph.output_mode == "last" and [layer.use_trace for layer in graph.egru_layers] == [True, True, False]
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(net, x, True, "last"),
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(reference.run_float(evnn.load(path, output_mode="mean"), x).output,
                               spec_output(net, x, True, "mean"), rtol=0, atol=TOL)


def custom_names(net: dict) -> dict:
    """A network under names no automatic rule knows: enc.cell<i>., head., emb.weight."""
    def rename(key):
        key = re.sub(r"^rnns\.(\d+)\.", r"enc.cell\1.", key)
        return key.replace("fc.", "head.").replace("embeddings.weight", "emb.weight")
    return state_dict(net, rename)


CUSTOM_LAYOUT = {"layers": ["enc.cell0.", "enc.cell1."], "readout": "head.", "embedding": "emb.weight"}


def test_explicit_layout_mapping(tmp_path):
    net, tokens = make_case(6, dict(input_size=4, hidden=[6, 5], output=3, vocab=8))
    path = save(tmp_path, {"weights": custom_names(net), "epoch": 2})
    with pytest.raises(UserError) as excinfo:
        evnn.load(path)
    assert "emb.weight" in assert_one_line_error(excinfo) and "layout" in str(excinfo.value)
    graph = evnn.load(path, layout={**CUSTOM_LAYOUT, "state_dict": "weights", "output_mode": "mean"})
    np.testing.assert_allclose(reference.run_float(graph, tokens).output, spec_output(net, tokens, False, "mean"),
                               rtol=0, atol=TOL)


def test_explicit_layout_orders_layers_and_ignores_the_rest():
    net, x = make_case(7, dict(input_size=4, hidden=[6, 5]), use_trace=True)
    sd = state_dict(net, lambda k: k.replace("rnns.0.", "first.").replace("rnns.1.", "second."))
    sd["aux_head.weight"] = torch.ones(2, 5)
    graph = evnn.from_state_dict(sd, layout={"layers": ["first", "second"], "use_trace": True})
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(net, x, True), rtol=0, atol=TOL)


def test_layout_without_layers_overrides_automatic_layout(tmp_path):
    net, x = make_case(14, dict(input_size=4, hidden=[6, 5], output=3), use_trace=True)
    other = {k: v + 1 for k, v in state_dict(net).items()}
    path = save(tmp_path, {"checkpoint": {"model": other, "ema": state_dict(net)}, "epoch": 9})
    with pytest.raises(UserError) as excinfo:
        evnn.load(path)
    assert "checkpoint/model, checkpoint/ema" in assert_one_line_error(excinfo)
    graph = evnn.load(path, layout={"state_dict": "checkpoint/ema", "use_trace": True, "output_mode": "mean"})
    np.testing.assert_allclose(reference.run_float(graph, x).output, spec_output(net, x, True, "mean"),
                               rtol=0, atol=TOL)


def test_egru_network_state_dict_equals_torch(tmp_path):
    """Our own model's file: ``EGRUNetwork.state_dict()`` (0-d training buffers, decoder.* naming)."""
    torch.manual_seed(0)
    model = EGRUNetwork(6, [12, 10], output_size=15, vocab_size=15, projection_size=6, use_trace=True,
                        output_mode="last").eval()
    with torch.no_grad():  # biases start at zero; spread them so that units fire
        for rnn in model.rnns:
            rnn.bias.uniform_(-0.5, 0.5)
    tokens = np.random.default_rng(0).integers(0, 15, (3, 10))
    net = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith(tuple(TRAINING_ONLY))}
    spec_output(net, tokens, True, "last")  # checks the spike margin
    with torch.no_grad():
        expected = model(torch.from_numpy(tokens))[0].numpy()
    graph = evnn.load(save(tmp_path, model.state_dict()), layout={"use_trace": True, "output_mode": "last"})
    np.testing.assert_allclose(reference.run_float(graph, tokens).output, expected, rtol=0, atol=TOL)


# --------------------------------------------------------------------------- CLI

def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def assert_cli_user_error(result):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_cli_emulate_equals_spec(tmp_path):
    net, x = make_case(8, CLASSIFIER)
    ckpt = save(tmp_path, {"model_state_dict": state_dict(net), "epoch": 4})
    np.save(tmp_path / "x.npy", x)
    result = invoke("emulate", ckpt, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), spec_output(net, x), rtol=0, atol=TOL)


def test_cli_emulate_tokens_with_output_mode(tmp_path):
    net, tokens = make_case(9, LM_PROJECTION, tie=True)
    ckpt = save(tmp_path, state_dict(net))
    np.save(tmp_path / "tokens.npy", tokens)
    result = invoke("emulate", ckpt, "--input", tmp_path / "tokens.npy", "--output", tmp_path / "y.npy",
                    "--output-mode", "last")
    assert result.exit_code == 0, result.output
    expected = spec_output(net, tokens, False, "last", projection_relu=False)  # v0.2.0: no ReLU (thr keys)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=0, atol=TOL)


def test_cli_inspect_json(tmp_path):
    net, _ = make_case(10, CLASSIFIER)
    result = invoke("inspect", save(tmp_path, state_dict(net)), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(layer["type"], layer["in"], layer["out"]) for layer in summary["layers"]] == \
        [("EGRU", 4, 6), ("EGRU", 6, 5), ("Linear", 5, 3)]
    assert summary["input"] == {"size": 4, "tokens": False} and summary["output_mode"] == "sequence"


def test_cli_unrecognised_layout_then_explicit_layout(tmp_path):
    net, tokens = make_case(11, dict(input_size=4, hidden=[6, 5], output=3, vocab=8))
    ckpt = save(tmp_path, custom_names(net))
    np.save(tmp_path / "tokens.npy", tokens)
    emulate = ("emulate", ckpt, "--input", tmp_path / "tokens.npy", "--output", tmp_path / "y.npy")
    failed = invoke(*emulate)
    assert_cli_user_error(failed)
    assert "--layout" in failed.stderr and "head.weight" in failed.stderr
    assert not (tmp_path / "y.npy").exists()
    (tmp_path / "layout.json").write_text(json.dumps(CUSTOM_LAYOUT))
    for layout in (json.dumps(CUSTOM_LAYOUT), tmp_path / "layout.json"):
        result = invoke(*emulate, "--layout", layout)
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), spec_output(net, tokens), rtol=0, atol=TOL)
    assert invoke("inspect", ckpt, "--layout", json.dumps(CUSTOM_LAYOUT)).exit_code == 0


# --------------------------------------------------------------------------- bad files

def garbage_bytes(path, net):
    path.write_bytes(b"\x80\x02this is not a checkpoint")


def empty_file(path, net):
    path.write_bytes(b"")


def truncated(path, net):
    buffer = io.BytesIO()
    torch.save(state_dict(net), buffer)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def saved(transform):
    return lambda path, net: torch.save(transform(state_dict(net)), path)


def replaced(key, value):
    return saved(lambda sd: {**sd, key: value})


BAD_FILES = {
    "garbage_bytes": (garbage_bytes, "not a"),
    "empty_file": (empty_file, "not a readable"),
    "truncated": (truncated, "not a readable"),
    "a_list": (saved(lambda sd: list(sd.values())), "got list"),
    "python_object": (saved(lambda sd: {"state_dict": sd, "args": argparse.Namespace(lr=0.1)}), "argparse.Namespace"),
    "numpy_values": (saved(lambda sd: {k: v.numpy() for k, v in sd.items()}), "safe loading"),
    "nan_weight": (replaced("rnns.0.kernel", torch.full((4, 18), float("nan"))), "rnns.0.kernel: contains NaN"),
    "inf_threshold": (replaced("rnns.1.thr", torch.full((5,), float("inf"))), "rnns.1.thr: contains NaN"),
    "float64_overflow": (replaced("fc.bias", torch.full((3,), 1e300, dtype=torch.float64)), "float32 range"),
    "integer_dtype": (replaced("rnns.0.bias", torch.zeros(18, dtype=torch.int64)), "floating-point"),
    "bool_dtype": (replaced("fc.weight", torch.ones(3, 5, dtype=torch.bool)), "floating-point"),
    "wrong_ndim": (replaced("rnns.0.recurrent_kernel", torch.zeros(6, 18, 1)), "rnns.0.recurrent_kernel: expected shape"),
    "wrong_width": (replaced("rnns.0.kernel", torch.zeros(4, 17)), "rnns.0.kernel: expected shape [*, 18]"),
    "layer_size_mismatch": (replaced("rnns.1.kernel", torch.zeros(5, 15)), "rnns.1.kernel: expected shape [6, 15]"),
    "readout_size_mismatch": (replaced("fc.weight", torch.zeros(3, 6)), "fc.weight: expected shape [*, 5]"),
    "empty_layer": (replaced("rnns.1.thr", torch.zeros(0)), "rnns.1.thr: expected shape"),
    "missing_thr": (saved(lambda sd: without(sd, "rnns.1.thr")), "rnns.1.thr: missing"),
    "thr_and_thr_reparam": (saved(lambda sd: {**sd, "rnns.0.thr_reparam": sd["rnns.0.thr"]}), "both thr"),
    "layer_missing_between": (saved(lambda sd: {prefix_rename("rnns.1.", "rnns.2.")(k): v for k, v in sd.items()}),
                              "not consecutive"),
    "two_readouts": (saved(lambda sd: {**sd, "classifier.weight": sd["fc.weight"]}), "several readouts"),
    "bias_without_weight": (saved(lambda sd: without(sd, "fc.weight")), "fc.weight: missing"),
    "projection_without_readout": (saved(lambda sd: {**without(sd, "fc.weight", "fc.bias"),
                                                     "decoder.projection.weight": torch.zeros(4, 5)}), "no readout"),
    "unknown_extra_key": (replaced("encoder.conv.weight", torch.zeros(2, 2)), "keys not understood"),
    "non_tensor_value": (replaced("rnns.0.dampening_factor", 0.7), "expected a tensor, got float"),
    "non_string_key": (saved(lambda sd: {**sd, 3: torch.zeros(1)}), "is not a string"),
    "empty_state_dict": (saved(lambda sd: {}), "empty"),
    "two_candidate_state_dicts": (saved(lambda sd: {"model": sd, "ema": dict(sd)}), "several entries"),
    "bad_output_mode": (saved(lambda sd: {"state_dict": sd, "output_mode": "all"}), "output_mode must be"),
    "bad_use_trace": (saved(lambda sd: {"state_dict": sd, "use_trace": torch.ones(2)}), "use_trace must be"),
    "no_egru_keys": (saved(lambda sd: {"weight": torch.zeros(2, 2)}), "no EGRU layers recognised"),
    "no_egru_anywhere": (saved(lambda sd: {"epoch": 3, "optimizer": {"lr": 0.1}, "model": {"w": 1}}),
                         "no EGRU weights found"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_checkpoints_fail_with_one_line(tmp_path, case):
    write, fragment = BAD_FILES[case]
    net, _ = make_case(12, CLASSIFIER)
    path = tmp_path / "bad.pt"
    write(path, net)
    with pytest.raises(UserError) as excinfo:
        evnn.load(path)
    assert fragment in assert_one_line_error(excinfo)


@pytest.mark.parametrize("case", ["garbage_bytes", "nan_weight", "python_object", "layer_size_mismatch"])
def test_cli_bad_checkpoints_exit_2(tmp_path, case):
    net, x = make_case(12, CLASSIFIER)
    path = tmp_path / "bad.pt"
    BAD_FILES[case][0](path, net)
    np.save(tmp_path / "x.npy", x)
    assert_cli_user_error(invoke("inspect", path))
    assert_cli_user_error(invoke("emulate", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"))
    assert not (tmp_path / "y.npy").exists()


BAD_LAYOUTS = {
    "not_a_dict": (["rnns.0."], "layout must be a dict"),
    "unknown_field": ({"layers": ["rnns.0.", "rnns.1."], "head": "fc."}, "unknown"),
    "layers_not_a_list": ({"layers": "rnns.0."}, "non-empty list"),
    "missing_layer_keys": ({"layers": ["rnns.0.", "rnns.7."]}, "rnns.7.thr: missing"),
    "missing_embedding": ({"layers": ["rnns.0.", "rnns.1."], "embedding": "emb.weight"}, "no such key"),
    "missing_readout": ({"layers": ["rnns.0.", "rnns.1."], "readout": "head."}, "no key head.weight"),
    "wrong_order": ({"layers": ["rnns.1.", "rnns.0."]}, "expected shape"),
    "bad_state_dict_entry": ({"layers": ["rnns.0."], "state_dict": "ema"}, "not a dict entry"),
    "bad_state_dict_path": ({"state_dict": "rnns.0.kernel/x"}, "not a dict entry"),
    "use_trace_not_bool": ({"layers": ["rnns.0.", "rnns.1."], "use_trace": "yes"}, "use_trace must be"),
    "readout_without_layers": ({"readout": "fc."}, "needs \"layers\" too"),
    "output_mode_not_a_string": ({"output_mode": 1}, "must be a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_LAYOUTS))
def test_bad_layouts_fail_with_one_line(case):
    layout, fragment = BAD_LAYOUTS[case]
    net, _ = make_case(12, CLASSIFIER)
    with pytest.raises(UserError) as excinfo:
        evnn.from_state_dict(state_dict(net), layout=layout)
    assert fragment in assert_one_line_error(excinfo)


# --------------------------------------------------------------------------- generated corruption

def base_state_dicts() -> dict[str, dict]:
    rng = np.random.default_rng(13)
    classifier = spec_numpy.random_net(rng, **CLASSIFIER)
    lm = spec_numpy.random_net(rng, **LM_PROJECTION)
    lm["decoder.decoder.weight"] = lm["embeddings.weight"]
    return {"classifier": state_dict(classifier), "language_model": state_dict(lm)}


BASES = base_state_dicts()
MUST_FAIL = ("add_dim", "grow_last_dim", "nan", "inf", "integer", "boolean")  # on a key the model uses
NON_TENSORS = (3, 0.5, "weights", [1.0, 2.0], None, {"a": 1})


def mutate(kind: str, t: torch.Tensor, choice: int):
    if kind == "add_dim":
        return t.unsqueeze(0)
    if kind == "grow_last_dim":
        return torch.cat([t, t[..., :1]], dim=-1)
    if kind in ("nan", "inf"):
        flat = (t if t.is_floating_point() else t.float()).clone().reshape(-1)
        flat[choice % flat.numel()] = float(kind)
        return flat.reshape(t.shape)
    if kind == "integer":
        return t.to(torch.int32)
    if kind == "boolean":
        return t > 0
    if kind == "half":
        return t.half()
    return NON_TENSORS[choice % len(NON_TENSORS)]  # "non_tensor"


@settings(max_examples=50, deadline=None)
@given(base=st.sampled_from(sorted(BASES)),
       mutations=st.lists(st.tuples(st.sampled_from(["drop", *MUST_FAIL, "half", "non_tensor"]),
                                    st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=3))
def test_corrupt_state_dicts_raise_user_errors(tmp_path_factory, base, mutations):
    sd = dict(BASES[base])
    mutated, corrupted, dropped_layer_param = set(), set(), False
    for kind, which, choice in mutations:
        # Each key changes at most once, so a later change cannot undo an earlier one (int, then half).
        keys = sorted(set(sd) - mutated)
        if not keys:
            break
        key = keys[which % len(keys)]
        mutated.add(key)
        if kind == "drop":
            del sd[key]
            dropped_layer_param |= key.startswith("rnns.") and key.rsplit(".", 1)[-1] in LAYER_PARAMS
            continue
        sd[key] = mutate(kind, sd[key], choice)
        used = not key.endswith(tuple(TRAINING_ONLY))
        if kind == "non_tensor" or (kind in MUST_FAIL and used):
            corrupted.add(key)
    path = tmp_path_factory.getbasetemp() / "mutated.pt"
    torch.save(sd, path)
    try:
        graph = evnn.load(path)
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert not corrupted and not dropped_layer_param, f"accepted a corrupt state_dict ({mutations})"
    x = np.zeros((1, 3), np.int64) if graph.input.tokens else np.zeros((1, 3, graph.input.size), np.float32)
    assert np.all(np.isfinite(reference.run_float(graph, x).output))


def valid_checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": BASES["classifier"], "epoch": 1}, buffer)
    return buffer.getvalue()


VALID_BYTES = valid_checkpoint_bytes()


@settings(max_examples=50, deadline=None)
@given(kind=st.sampled_from(["garbage", "truncate", "overwrite"]), data=st.binary(min_size=1, max_size=64),
       position=st.integers(0, 10**6))
def test_corrupt_bytes_exit_2_through_cli(tmp_path_factory, kind, data, position):
    if kind == "garbage":
        content = data
    elif kind == "truncate":
        content = VALID_BYTES[: position % len(VALID_BYTES)]
    else:
        start = position % len(VALID_BYTES)
        content = VALID_BYTES[:start] + data + VALID_BYTES[start + len(data):]
    path = tmp_path_factory.getbasetemp() / "corrupt.pt"
    path.write_bytes(content)
    result = invoke("inspect", path, "--json")
    if result.exit_code == 0:  # an overwrite can land in tensor data and still give a valid model
        json.loads(result.stdout)
    else:
        assert_cli_user_error(result)
