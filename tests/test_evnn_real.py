"""Real EvNN models (issue 11): every golden of tests/golden/evnn/ -- the checkpoint exactly as EvNN's
benchmark script saves it, outputs from the real EvNN 0.2.0 kernel -- imports through the converter
and, run by the float reference, gives EvNN's outputs (1e-5) and events (equal). The user supplies
only what the checkpoint lacks (zoneout, --use-output-trace, the DVS run's arguments). Exports back to
EvNN have the goldens' keys, order, shapes and dtypes and import back to the same outputs; the
Python API loads live modules; bad inputs fail with one line naming the key.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import spec_numpy
import torch
from hostile import assert_hostile_case, run
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import egru_deploy
from egru_deploy import api, ir, reference
from egru_deploy.converters import evnn, load_model
from egru_deploy.errors import UserError
from egru_deploy.model import EGRU as TorchEGRU
from egru_deploy.model import EGRUNetwork

GOLDEN = Path(__file__).parent / "golden" / "evnn"
EXAMPLE = Path(__file__).parents[1] / "examples" / "digits_egru.pt"
TOL = 1e-5
LAYER_KEYS = ["_max_norm", "kernel", "recurrent_kernel", "bias", "recurrent_bias", "dampening_factor",
              "pseudo_derivative_support", "thr"]


def golden(case: str) -> dict:
    with np.load(GOLDEN / f"{case}.npz", allow_pickle=False) as data:
        out = {key: data[key] for key in data.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def checkpoint(case: str) -> Path:
    return GOLDEN / golden(case)["meta"]["checkpoint_file"]


def saved_state_dict(case: str) -> dict:
    sd = torch.load(checkpoint(case), map_location="cpu", weights_only=True)
    return sd["state_dict"] if "state_dict" in sd else sd


def batch_major(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(1, 0, 2))  # EvNN's time-major (T, B, H) -> (B, T, H)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def lm_log_probs(result: reference.RunResult) -> np.ndarray:
    """EvNN's LanguageModel output: log_softmax of (B*T, V) rows b*T + t."""
    b, t, v = result.output.shape
    return log_softmax(result.output).reshape(b * t, v)


def assert_events(result: reference.RunResult, g: dict, prefix: str = "", time_major: bool = False) -> None:
    for k, y in enumerate(result.layer_events):
        o = g[f"{prefix}layer{k}.o"]
        o = batch_major(o) if time_major else o
        np.testing.assert_array_equal(y != 0, o != 0)
        np.testing.assert_allclose(y, batch_major(g[f"{prefix}layer{k}.y"]) if time_major else g[f"{prefix}layer{k}.y"],
                                   rtol=0, atol=TOL)


# What a real user has to give beside each checkpoint (it is not in the state_dict), from the golden's meta.
def user_layout(case: str) -> dict | None:
    hyper = golden(case)["meta"]["hyper"]
    if case.startswith("dvs"):
        layout = {"event_agg_method": hyper["event_agg_method"], "zoneout": hyper["zoneout"]}
        if hyper["use_cnn"]:
            layout["frame_size"] = hyper["frame_size"]  # the CNN pools by frame size: not inferable
        if hyper["use_all_timesteps"]:
            layout["use_all_timesteps"] = True
        return layout
    if case.startswith("smnist"):
        return {"use_output_trace": hyper["use_output_trace"]}
    if hyper.get("zoneout"):
        return {"zoneout": hyper["zoneout"]}
    return None


CASES = sorted(p.stem for p in GOLDEN.glob("*.npz"))


def test_every_golden_is_covered():
    assert set(CASES) == {"egru_layer", "egru_layer_thr_clamp", "egru_zoneout_eval", "egru_stacked", "lm_tied",
                          "lm_projection", "lm_old_projection_relu", "lm_two_chunks", "dvs_flat", "dvs_cnn",
                          "smnist_output_trace"}


# --------------------------------------------------------------------------- goldens: float reference == EvNN

@pytest.mark.parametrize("case", ["egru_layer", "egru_layer_thr_clamp", "egru_zoneout_eval"])
def test_bare_layer_equals_evnn(case):
    g = golden(case)
    graph = evnn.load(checkpoint(case), layout=user_layout(case))
    assert graph.metadata["evnn"]["model"] == "layer"
    x = batch_major(g["inputs"])
    result = reference.run_float(graph, x)
    np.testing.assert_allclose(result.output, batch_major(g["out.y"]), rtol=0, atol=TOL)
    np.testing.assert_array_equal(result.output != 0, batch_major(g["out.o"]) != 0)
    traced = evnn.load(checkpoint(case), layout={**(user_layout(case) or {}), "use_trace": [True]})
    np.testing.assert_allclose(reference.run_float(traced, x).output, batch_major(g["out.trace"]), rtol=0, atol=TOL)


def test_thresholds_are_clamped_as_evnn_does_in_place():
    g = golden("egru_layer_thr_clamp")
    graph = evnn.load(checkpoint("egru_layer_thr_clamp"))
    np.testing.assert_array_equal(graph.egru_layers[0].thr, g["clamped_thr"])


def test_layer_with_initial_events_equals_evnn_state():
    g = golden("egru_layer")
    graph = evnn.load(checkpoint("egru_layer"))
    result = reference.run_float(graph, batch_major(g["inputs"]), initial_events=[g["inputs.y0"][0]])
    np.testing.assert_allclose(result.output, batch_major(g["with_y0.y"]), rtol=0, atol=TOL)
    np.testing.assert_array_equal(result.output != 0, batch_major(g["with_y0.o"]) != 0)


def test_zoneout_from_layout_cli_and_api_agree_with_evnn(tmp_path):
    g = golden("egru_zoneout_eval")
    x = batch_major(g["inputs"])
    without = reference.run_float(evnn.load(checkpoint("egru_zoneout_eval")), x)
    np.testing.assert_allclose(without.output, batch_major(g["contrast.y_without_zoneout"]), rtol=0, atol=TOL)
    graph = egru_deploy.load(checkpoint("egru_zoneout_eval"), zoneout=0.25)
    assert [layer.zoneout for layer in graph.egru_layers] == [0.25]
    np.testing.assert_allclose(egru_deploy.emulate(graph, x).output, batch_major(g["out.y"]), rtol=0, atol=TOL)
    np.save(tmp_path / "x.npy", x)
    for option in (["--zoneout", "0.25"], ["--layout", '{"zoneout": 0.25}']):
        result = run(["emulate", checkpoint("egru_zoneout_eval"), "--input", tmp_path / "x.npy",
                      "--output", tmp_path / "y.npy", *option])
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), batch_major(g["out.y"]), rtol=0, atol=TOL)


def test_stack_passes_events_y_on():
    g = golden("egru_stacked")
    graph = evnn.load(checkpoint("egru_stacked"))
    assert graph.metadata["evnn"]["model"] == "stack" and not any(layer.use_trace for layer in graph.egru_layers)
    result = reference.run_float(graph, batch_major(g["inputs"]))
    np.testing.assert_allclose(result.output, batch_major(g["out.y"]), rtol=0, atol=TOL)
    assert_events(result, g, time_major=True)


@pytest.mark.parametrize("case", ["lm_tied", "lm_projection", "lm_old_projection_relu"])
def test_language_model_equals_evnn(case):
    g = golden(case)
    graph = evnn.load(checkpoint(case))
    assert graph.metadata["evnn"]["model"] == "lm" and graph.output_mode == "sequence"
    projection = [layer for layer in graph.layers if isinstance(layer, ir.Linear)][:-1]
    # v0.2.0 (thr): projection without ReLU; pre-0.2 (thr_reparam): with ReLU.
    assert [layer.relu for layer in projection] == ([True] if case == "lm_old_projection_relu" else
                                                    [False] if case == "lm_projection" else [])
    result = reference.run_float(graph, g["inputs"])
    np.testing.assert_allclose(lm_log_probs(result), g["out.log_probs"], rtol=0, atol=TOL)
    for k, y_last in enumerate(result.final_events()):
        np.testing.assert_allclose(y_last, g[f"out.new_states.{k}"][0], rtol=0, atol=TOL)
    assert_events(result, g)


def test_projection_activation_override_gives_the_other_rule():
    g = golden("lm_projection")
    relu = evnn.load(checkpoint("lm_projection"), layout={"projection_activation": "relu"})
    assert relu.layers[-2].relu
    assert np.abs(lm_log_probs(reference.run_float(relu, g["inputs"])) - g["out.log_probs"]).max() > 1e-3
    old = golden("lm_old_projection_relu")
    none = evnn.load(checkpoint("lm_old_projection_relu"), layout={"projection_activation": "none"})
    assert not none.layers[-2].relu
    assert np.abs(lm_log_probs(reference.run_float(none, old["inputs"])) - old["out.log_probs"]).max() > 1e-3


def test_language_model_over_bptt_chunks_carries_y_as_evnn_eval():
    g = golden("lm_two_chunks")
    bptt = g["meta"]["hyper"]["bptt"]
    graph = egru_deploy.load(checkpoint("lm_two_chunks"))
    state = None
    for n in range(2):
        result = egru_deploy.emulate(graph, g["inputs"][:, n * bptt:(n + 1) * bptt], initial_events=state)
        np.testing.assert_allclose(lm_log_probs(result), g[f"chunk{n}.out.log_probs"], rtol=0, atol=TOL)
        assert_events(result, g, prefix=f"chunk{n}.")
        state = result.final_events()
    one_pass = lm_log_probs(reference.run_float(graph, g["inputs"]))
    np.testing.assert_allclose(one_pass, g["contrast.one_pass_log_probs"], rtol=0, atol=TOL)


def dvs_args_file(tmp_path: Path, case: str) -> Path:
    """The run's args.json as dvs128.py's opts.store_args writes it (here from the golden's hyper)."""
    hyper = golden(case)["meta"]["hyper"]
    args = {"rnn_type": "egru", **{k: hyper[k] for k in ("frame_size", "event_agg_method", "flatten_frame", "use_cnn",
                                                         "use_all_timesteps", "zoneout", "units", "num_layers")},
            "learning_rate": 0.001, "data": "/data", "logdir": "/logs"}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args, indent=2))
    return path


@pytest.mark.parametrize("case", ["dvs_flat", "dvs_cnn"])
@pytest.mark.parametrize("given", ["fields", "dvs_args"])
def test_dvs_gesture_model_equals_evnn(tmp_path, case, given):
    g = golden(case)
    layout = user_layout(case) if given == "fields" else {"dvs_args": str(dvs_args_file(tmp_path, case))}
    graph = evnn.load(checkpoint(case), layout=layout)
    hyper = g["meta"]["hyper"]
    assert graph.metadata["evnn"]["model"] == "dvs"
    assert graph.input.frame == (2, 128, 128)
    assert all(layer.use_trace for layer in graph.egru_layers)  # the last layer's trace goes into fc too
    assert [layer.zoneout for layer in graph.egru_layers] == [hyper["zoneout"]] * hyper["num_layers"]
    assert graph.output_mode == ("mean" if hyper["use_all_timesteps"] else "last")
    result = reference.run_float(graph, g["inputs"])
    np.testing.assert_allclose(result.output, g["out.logits"], rtol=0, atol=TOL)
    if hyper["use_all_timesteps"]:  # mean_t fc(trace_t), step by step as EvNN's linear_out
        np.testing.assert_allclose(result.sequence, g["out.linear_out"], rtol=0, atol=TOL)
    assert_events(result, g)
    for k, y in enumerate(result.layer_events):  # EvNN's output_gate (B, layers, T, H) holds o
        np.testing.assert_array_equal(y != 0, g["out.output_gate"].transpose(2, 1, 0, 3)[:, k] != 0)


def test_dvs_front_end_is_evnns_pipeline():
    cnn = evnn.load(checkpoint("dvs_cnn"), layout=user_layout("dvs_cnn"))
    kinds = [(type(layer).__name__, getattr(layer, "kernel", None), getattr(layer, "stride", None),
              getattr(layer, "padding", None)) for layer in cnn.frontend]
    # MaxPool2d(128 // 32), polarity mean (1x1), conv.0 + pool, conv.3 + pool, conv.6, conv.9, conv.12 (frame 32:
    # no pools after conv.6 / conv.9), conv.15.
    assert kinds == [("Pool2d", 4, 4, 0), ("Conv2d", 1, 1, 0), ("Conv2d", 11, 4, 2), ("Pool2d", 3, 2, 0),
                     ("Conv2d", 5, 1, 2), ("Pool2d", 3, 2, 0), ("Conv2d", 3, 1, 1), ("Conv2d", 3, 1, 1),
                     ("Conv2d", 3, 1, 1), ("Linear", None, None, None)]
    np.testing.assert_array_equal(cnn.frontend[1].weight.reshape(-1), [0.5, 0.5])
    assert [layer.relu for layer in cnn.frontend if isinstance(layer, ir.Conv2d)] == [False] + [True] * 5
    flat = evnn.load(checkpoint("dvs_flat"), layout=user_layout("dvs_flat"))
    assert [(type(layer).__name__, getattr(layer, "kernel", None)) for layer in flat.frontend] == \
        [("Pool2d", 16), ("Conv2d", 1)]
    diff = evnn.load(checkpoint("dvs_flat"), layout={**user_layout("dvs_flat"), "event_agg_method": "diff"})
    np.testing.assert_array_equal(diff.frontend[1].weight.reshape(-1), [1.0, -1.0])
    for frame_size, pools in ((64, 3), (128, 4)):  # pools after conv.6 from 64, after conv.9 from 128
        sd = saved_state_dict("dvs_cnn")
        graph = evnn.from_state_dict(sd, layout={"frame_size": frame_size, "event_agg_method": "mean"})
        assert sum(isinstance(layer, ir.Pool2d) for layer in graph.frontend) == pools + (frame_size < 128)


def test_polarity_mean_as_1x1_convolution_is_bit_exact_with_torch_mean():
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 30, (4, 6, 2, 16, 16)) / np.float32(19.0)).astype(np.float32)
    frames[0, 0, :, 0, 0] = [1e-38, 3e38]  # extremes: halving stays exact unless subnormal
    merge = evnn._merge_layer("mean")[0]
    out = reference.float_layer(merge, reference.channels_last(frames))[..., 0]
    expected = torch.mean(torch.from_numpy(frames).reshape(24, 2, 16, 16).float(), dim=1).numpy().reshape(4, 6, 16, 16)
    np.testing.assert_array_equal(out, expected)
    diff = reference.float_layer(evnn._merge_layer("diff")[0], reference.channels_last(frames))[..., 0]
    np.testing.assert_array_equal(diff, frames[:, :, 0] - frames[:, :, 1])


def test_dvs_mean_readout_equals_readout_of_mean_trace():
    """use_all_timesteps: mean_t fc(trace_t) (what EvNN computes) == fc(mean_t trace_t) up to rounding."""
    g = golden("dvs_cnn")
    sd = saved_state_dict("dvs_cnn")
    trace = g["layer0.trace"].astype(np.float64)
    w, b = sd["fc.weight"].double().numpy(), sd["fc.bias"].double().numpy()
    np.testing.assert_allclose(trace.mean(axis=1) @ w.T + b, g["out.logits"], rtol=0, atol=TOL)


def test_smnist_readout_reads_the_last_layers_trace_or_events():
    g = golden("smnist_output_trace")
    graph = evnn.load(checkpoint("smnist_output_trace"), layout=user_layout("smnist_output_trace"))
    assert graph.metadata["evnn"]["model"] == "smnist" and graph.output_mode == "last"
    assert [layer.use_trace for layer in graph.egru_layers] == [False, True]
    result = reference.run_float(graph, g["inputs"])
    np.testing.assert_allclose(result.output, g["out.logits"], rtol=0, atol=TOL)
    np.testing.assert_allclose(result.sequence, g["out.readout_sequence"], rtol=0, atol=TOL)
    assert_events(result, g)
    on_events = reference.run_float(evnn.load(checkpoint("smnist_output_trace")), g["inputs"])  # no --use-output-trace
    sd = saved_state_dict("smnist_output_trace")
    expected = g["out.rnn_out"][:, -1].astype(np.float64) @ sd["hidden2out.weight"].double().numpy().T \
        + sd["hidden2out.bias"].double().numpy()
    np.testing.assert_allclose(on_events.output, expected, rtol=0, atol=TOL)
    listed = evnn.load(checkpoint("smnist_output_trace"), layout={"use_trace": [False, True]})
    np.testing.assert_allclose(reference.run_float(listed, g["inputs"]).output, g["out.logits"], rtol=0, atol=TOL)


def test_spec_numpy_reproduces_evnn_zoneout_initial_y_and_trace():
    """The independent NumPy spec also gives EvNN's numbers (zoneout blend, initial y)."""
    for case, zoneout, y0, key in (("egru_zoneout_eval", 0.25, None, "out"),
                                   ("egru_layer", 0.0, "inputs.y0", "with_y0")):
        g = golden(case)
        sd = saved_state_dict(case)
        y, trace, _ = spec_numpy.egru_layer(batch_major(g["inputs"]).astype(np.float64),
                                            *(sd[k].double().numpy() for k in spec_numpy_params()),
                                            zoneout=zoneout, y0=g[y0][0] if y0 else None)
        np.testing.assert_allclose(y, batch_major(g[f"{key}.y"]), rtol=0, atol=1e-6)
        np.testing.assert_allclose(trace, batch_major(g[f"{key}.trace"]), rtol=0, atol=1e-6)
    g = golden("smnist_output_trace")
    net = {f"rnns.{k}.{p}": v.numpy() for k in range(2) for p, v in
           ((p, saved_state_dict("smnist_output_trace")[f"rnn.rnns.{k}.rnn.{p}"]) for p in spec_numpy_params())}
    sd = saved_state_dict("smnist_output_trace")
    net.update({"fc.weight": sd["hidden2out.weight"].numpy(), "fc.bias": sd["hidden2out.bias"].numpy()})
    out = spec_numpy.run(net, g["inputs"], use_trace=[False, True])["output"]
    np.testing.assert_allclose(out[:, -1], g["out.logits"], rtol=0, atol=1e-6)


def spec_numpy_params():
    return ("kernel", "recurrent_kernel", "bias", "recurrent_bias", "thr")


# --------------------------------------------------------------------------- export back to EvNN

@pytest.mark.parametrize("case", CASES)
def test_export_has_the_goldens_keys_and_imports_back_equal(tmp_path, case):
    g = golden(case)
    layout = user_layout(case)
    args = ["export", checkpoint(case), "--format", "evnn", "-o", tmp_path / "m.pt"]
    result = run(args + (["--layout", json.dumps(layout)] if layout else []))
    assert result.exit_code == 0, result.output
    exported = torch.load(tmp_path / "m.pt", weights_only=True)
    original = saved_state_dict(case)
    assert list(exported) == list(original)  # EvNN's keys in EvNN's order (what strict loading needs)
    for key, tensor in original.items():
        assert exported[key].shape == tensor.shape and exported[key].dtype == tensor.dtype, key
        atol = 1e-5 if key.endswith("thr_reparam") else 0  # pre-0.2: logit(thr) again, one float32 rounding
        np.testing.assert_allclose(exported[key].numpy(), tensor.clamp(0, 1).numpy() if key.endswith(".thr")
                                   or key == "thr" else tensor.numpy(), rtol=0, atol=atol, err_msg=key)
    if "embeddings.weight" in exported:  # tied: one tensor under both names, as EvNN saves it
        assert exported["embeddings.weight"].data_ptr() == exported["decoder.decoder.weight"].data_ptr()
    back = result.stdout.split("to load it back: --layout ")
    back_layout = json.loads(back[1].strip().strip("'")) if len(back) > 1 else None
    original_graph = evnn.load(checkpoint(case), layout=layout)
    again = evnn.load(tmp_path / "m.pt", layout=back_layout)
    assert structure(again) == structure(original_graph)
    x = g["inputs"] if not case.startswith("egru") else batch_major(g["inputs"])
    np.testing.assert_allclose(reference.run_float(again, x).output, reference.run_float(original_graph, x).output,
                               rtol=0, atol=TOL)


def structure(graph: ir.Graph) -> dict:
    """``graph.summary()`` without threshold statistics (pre-0.2's logit round trip moves thr by an ulp)."""
    summary = graph.summary()
    for layer in summary["layers"]:
        layer.pop("thr", None)
    return summary


def test_exported_layers_load_strictly_into_an_evnn_shaped_layer(tmp_path):
    """model.EGRU has evnn_pytorch.EGRU's parameters (names, order, shapes, kinds): each exported layer
    loads strictly, and the golden's own layer file loads into it and runs EvNN's numbers."""
    golden_keys = list(saved_state_dict("egru_layer"))
    assert golden_keys == LAYER_KEYS
    layer = TorchEGRU(12, 16)
    assert list(layer.state_dict()) == golden_keys
    assert [(n, p.requires_grad) for n, p in layer.named_parameters()] == \
        [(k, k not in ("_max_norm", "dampening_factor", "pseudo_derivative_support")) for k in golden_keys]
    layer.load_state_dict(saved_state_dict("egru_layer"), strict=True)
    g = golden("egru_layer")
    with torch.no_grad():
        y, trace = layer.eval()(torch.from_numpy(g["inputs"]))
    np.testing.assert_allclose(y.numpy(), g["out.y"], rtol=0, atol=TOL)
    api.export(EXAMPLE, "evnn", tmp_path / "digits.pt")
    exported = torch.load(tmp_path / "digits.pt", weights_only=True)
    assert list(exported) == [f"rnns.0.{k}" for k in LAYER_KEYS] + ["fc.weight", "fc.bias"]
    TorchEGRU(8, 128).load_state_dict({k[len("rnns.0."):]: v for k, v in exported.items() if k.startswith("rnns.0.")},
                                      strict=True)
    net = EGRUNetwork(8, [128], output_size=10)
    net.load_state_dict(exported, strict=True)


def test_our_checkpoints_have_evnns_layer_keys_and_older_ones_still_load(tmp_path):
    torch.manual_seed(0)
    net = EGRUNetwork(4, [6, 5], output_size=3)
    sd = net.state_dict()
    for i, h in enumerate((6, 5)):
        assert [k for k in sd if k.startswith(f"rnns.{i}.")] == [f"rnns.{i}.{k}" for k in LAYER_KEYS]
        assert sd[f"rnns.{i}._max_norm"].tolist() == [-1.0] and sd[f"rnns.{i}.dampening_factor"].shape == (1,)
    old = {k: (v.reshape(()) if k.endswith(("dampening_factor", "pseudo_derivative_support")) else v)
           for k, v in sd.items() if not k.endswith("_max_norm")}  # this package's checkpoints before issue 11
    fresh = EGRUNetwork(4, [6, 5], output_size=3)
    fresh.load_state_dict(old, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), sd.values()))
    torch.save(old, tmp_path / "old.pt")
    assert evnn.load(tmp_path / "old.pt").summary() == evnn.from_state_dict(sd).summary()


def test_initialisation_is_evnn_v0_2_0s():
    torch.manual_seed(1)
    layer = TorchEGRU(200, 300, thr_mean=0.2, weight_initialization_gain=2.0)
    thr = layer.thr.detach().numpy()
    assert 0 < thr.min() and thr.max() < 1 and abs(thr.mean() - 0.2) < 0.03  # Beta(0.75, 3), mean 0.2
    for w, fan_out in ((layer.kernel, 200), (layer.recurrent_kernel, 300)):  # torch's fans of [in, 3H]: 3H, in
        expected = 2.0 * np.sqrt(2.0 / (900 + fan_out))
        assert abs(float(w.detach().std()) - expected) < 0.05 * expected
    assert not layer.bias.any() and not layer.recurrent_bias.any()
    with pytest.raises(ValueError, match="thr_mean"):
        TorchEGRU(2, 2, thr_mean=1.0)


def test_projection_activation_survives_the_round_trip(tmp_path):
    graph = evnn.load(checkpoint("lm_old_projection_relu"))
    info = api.export(graph, "evnn", tmp_path / "old.pt")
    assert info["model"] == "lm" and "thr_reparam" in "".join(torch.load(tmp_path / "old.pt", weights_only=True))
    assert evnn.load(tmp_path / "old.pt").layers[-2].relu
    stack = api.export(graph, "evnn", tmp_path / "stack.pt", evnn_model="stack")
    assert stack["layout"]["projection_activation"] == "relu"
    assert evnn.load(tmp_path / "stack.pt", layout=stack["layout"]).summary() == graph.summary()


def test_export_refuses_quantized_graphs_and_layouts_that_do_not_fit(tmp_path):
    from egru_deploy.profiles import PROFILES
    from egru_deploy.quantize import quantize

    graph = evnn.load(checkpoint("egru_stacked"))
    x = batch_major(golden("egru_stacked")["inputs"])
    with pytest.raises(UserError, match="quantized for 'loihi2'; EvNN runs float weights"):
        api.export(quantize(graph, PROFILES["loihi2"], x), "evnn", tmp_path / "q.pt")
    for model, fragment in (("lm", "no token embedding"), ("dvs", "not one Linear"), ("smnist", "readout"),
                            ("layer", "one EGRU layer")):
        with pytest.raises(UserError, match=fragment) as e:
            api.export(graph, "evnn", tmp_path / "m.pt", evnn_model=model)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "q.pt").exists()


# --------------------------------------------------------------------------- the Python API

class MergeEvents:  # benchmarks/dvs_gesture/utils.py (not a module: no keys)
    def __init__(self, method: str):
        self.method = method


class EGRUDDVSOptimizedModel(nn.Module):
    """EvNN's DVS model's attributes in its registration order (the layers: model.EGRU, EvNN's parameters)."""

    def __init__(self, hyper: dict, channels=(64, 192, 384, 256, 256, 512)):
        super().__init__()
        fs = hyper["frame_size"]
        self.use_all_timesteps = hyper["use_all_timesteps"]
        self.input_maxpool = nn.MaxPool2d(kernel_size=128 // fs)
        self.event_merger = MergeEvents(hyper["event_agg_method"])
        if hyper["use_cnn"]:
            c1, c2, c3, c4, c5, out = channels
            conv = nn.Sequential(nn.Conv2d(1, c1, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                                 nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                                 nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
                                 nn.MaxPool2d(3, 2) if fs >= 64 else nn.Identity(),
                                 nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
                                 nn.MaxPool2d(3, 2) if fs >= 128 else nn.Identity(),
                                 nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(c5, out))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.conv = torch.jit.script(conv)
            inputs = out
        else:
            self.conv = None
            inputs = (128 // (128 // fs)) ** 2
        n = hyper["units"]
        self.layers = nn.ModuleList(TorchEGRU(inputs if i == 0 else n, n, batch_first=True, zoneout=hyper["zoneout"])
                                    for i in range(hyper["num_layers"]))
        self.fc = nn.Linear(n, 11)


class RNNWrapper(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn


class RNNMultiLayerWrapper(nn.Module):
    def __init__(self, rnns):
        super().__init__()
        self.rnns = nn.ModuleList(rnns)


class RNNReadoutWrapper(nn.Module):
    def __init__(self, rnn, output_size, hidden):
        super().__init__()
        self.rnn = rnn
        self.hidden2out = nn.Linear(hidden, output_size)


@pytest.mark.parametrize("case", ["dvs_flat", "dvs_cnn"])
def test_api_loads_a_live_dvs_model_reading_its_attributes(tmp_path, case):
    g = golden(case)
    hyper = g["meta"]["hyper"]
    module = EGRUDDVSOptimizedModel(hyper, tuple(g["meta"]["cnn"]["channels_here"]) if hyper["use_cnn"] else ())
    module.load_state_dict(saved_state_dict(case), strict=True)
    graph = egru_deploy.load(module)  # zoneout, frame size, merge and use_all_timesteps from the module
    assert graph.summary() == evnn.load(checkpoint(case), layout=user_layout(case)).summary()
    np.testing.assert_allclose(egru_deploy.emulate(graph, g["inputs"]).output, g["out.logits"], rtol=0, atol=TOL)
    info = egru_deploy.export(graph, "evnn", tmp_path / "back.pth")  # and back into the module, strictly
    assert info["model"] == "dvs"
    module.load_state_dict(torch.load(tmp_path / "back.pth", weights_only=True), strict=True)


def test_api_loads_live_smnist_layer_and_network_modules():
    g = golden("smnist_output_trace")
    layers = [RNNWrapper(TorchEGRU(1 if i == 0 else 16, 16, batch_first=True)) for i in range(2)]
    module = RNNReadoutWrapper(RNNMultiLayerWrapper(layers), 10, 16)
    module.load_state_dict(saved_state_dict("smnist_output_trace"), strict=True)
    graph = egru_deploy.load(module, layout={"use_output_trace": True})
    np.testing.assert_allclose(egru_deploy.emulate(graph, g["inputs"]).output, g["out.logits"], rtol=0, atol=TOL)
    module.load_state_dict(evnn.to_state_dict(graph)[0], strict=True)
    layer = TorchEGRU(10, 16, zoneout=0.25)
    layer.load_state_dict(saved_state_dict("egru_zoneout_eval"), strict=True)
    z = golden("egru_zoneout_eval")
    np.testing.assert_allclose(egru_deploy.emulate(layer, batch_major(z["inputs"])).output, batch_major(z["out.y"]),
                               rtol=0, atol=TOL)
    net = EGRUNetwork(12, [16])
    net.rnns[0].load_state_dict(saved_state_dict("egru_layer"))
    net.rnns[0].zoneout = 0.1
    from_net = egru_deploy.load(net)
    assert from_net.egru_layers[0].zoneout == 0.1
    assert egru_deploy.load(net.state_dict()).summary()["layers"][0]["parameters"] == \
        from_net.summary()["layers"][0]["parameters"]


def test_api_compile_emulate_and_export_are_the_clis(tmp_path):
    from egru_deploy.compile import compile_model  # the submodule is still importable by name

    assert callable(compile_model) and egru_deploy.compile is api.compile
    g = golden("egru_stacked")
    x = batch_major(g["inputs"])
    report = egru_deploy.compile(checkpoint("egru_stacked"), "spinnaker2", tmp_path / "bundle", x)
    assert report["target"] == "spinnaker2"
    quantized = load_model(tmp_path / "bundle")
    np.testing.assert_array_equal(egru_deploy.emulate(tmp_path / "bundle", x, backend="reference").output,
                                  reference.run(quantized, x).output)
    np.save(tmp_path / "x.npy", x)
    result = run(["emulate", tmp_path / "bundle", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                  "--backend", "reference"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), reference.run(quantized, x).output)
    summary = egru_deploy.inspect(checkpoint("lm_projection"))
    assert any("no activation" in note for note in summary["notes"])
    shown = run(["inspect", checkpoint("lm_projection")])
    assert "no activation" in shown.stdout and "v0.2.0" in shown.stdout
    info = egru_deploy.export(checkpoint("egru_stacked"), "onnx", tmp_path / "m.onnx")
    assert info["format"] == "onnx" and (tmp_path / "m.onnx").is_file()


# --------------------------------------------------------------------------- layout detection

def evnn_layer(rng, i: int, h: int) -> dict:
    return {"_max_norm": torch.tensor([-1.0]),
            "kernel": torch.tensor(rng.normal(0, 0.3, (i, 3 * h)), dtype=torch.float32),
            "recurrent_kernel": torch.tensor(rng.normal(0, 0.3, (h, 3 * h)), dtype=torch.float32),
            "bias": torch.zeros(3 * h), "recurrent_bias": torch.zeros(3 * h), "dampening_factor": torch.tensor([0.7]),
            "pseudo_derivative_support": torch.tensor([1.0]), "thr": torch.full((h,), 0.3)}


def benchmark_state_dict(rng, kind: str, layers: int, hidden: int, inputs: int, wrapper: str) -> dict:
    """A state_dict with the keys (and order) of an EvNN model ``kind``, wrapped as ``wrapper`` says."""
    sd = {}
    if kind == "lm":
        sd["embeddings.weight"] = torch.tensor(rng.normal(0, 1, (20, inputs)), dtype=torch.float32)
        sd["decoder.decoder.weight"] = sd["embeddings.weight"]
        sd["decoder.decoder.bias"] = torch.zeros(20)
    sizes = [inputs] + [hidden] * layers
    if kind == "lm":
        sizes[-1] = inputs
    prefix = {"lm": "rnns.{}.", "dvs": "layers.{}.", "smnist": "rnn.rnns.{}.rnn.", "stack": "rnns.{}."}[kind]
    for i in range(layers):
        sd.update({prefix.format(i) + k: v for k, v in evnn_layer(rng, sizes[i], sizes[i + 1]).items()})
    if kind in ("dvs", "stack"):
        classes = 11 if kind == "dvs" else 3
        sd["fc.weight"], sd["fc.bias"] = torch.zeros(classes, hidden), torch.zeros(classes)
    if kind == "smnist":
        sd["hidden2out.weight"], sd["hidden2out.bias"] = torch.zeros(10, hidden), torch.zeros(10)
    if wrapper == "module":
        sd = {"module." + k: v for k, v in sd.items()}
    if wrapper == "dict":
        sd = {"epoch": 3, "state_dict": sd, "optimizer_state_dict": {"state": {}, "param_groups": []}}
    return sd


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["lm", "dvs", "smnist", "stack"]), layers=st.integers(1, 3), hidden=st.integers(2, 9),
       frame=st.sampled_from([2, 4, 8]), channels=st.sampled_from([1, 2]),
       wrapper=st.sampled_from(["", "module", "dict"]),
       seed=st.integers(0, 2**16))
def test_automatic_layout_is_told_by_the_keys(kind, layers, hidden, frame, channels, wrapper, seed):
    rng = np.random.default_rng(seed)
    inputs = frame * frame * channels if kind == "dvs" else int(rng.integers(1, 7))
    sd = benchmark_state_dict(rng, kind, layers, hidden, inputs, wrapper)
    if kind == "dvs":  # without CNN the keys also fit a plain stack: one field decides
        with pytest.raises(UserError, match='"model": "dvs"') as e:
            evnn.from_state_dict(sd)
        assert "\n" not in str(e.value) and '"model": "stack"' in str(e.value)
        stack = evnn.from_state_dict(sd, layout={"model": "stack"})
        assert stack.metadata["evnn"]["model"] == "stack" and not any(layer.use_trace for layer in stack.egru_layers)
        layout = {"event_agg_method": "none"} if channels == 2 else {"event_agg_method": "diff"}
        graph = evnn.from_state_dict(sd, layout=layout)
        assert graph.input.frame == (2, 128, 128) and graph.frontend[0].kernel == 128 // frame
        assert len(graph.frontend) == (1 if channels == 2 else 2)
        assert all(layer.use_trace for layer in graph.egru_layers) and graph.output_mode == "last"
        if channels == 1:  # 'mean' or 'diff': only the run's arguments say
            with pytest.raises(UserError, match="event_agg_method is not in the checkpoint"):
                evnn.from_state_dict(sd, layout={"model": "dvs"})
        else:  # two channels: 'none', told by the input size
            assert evnn.from_state_dict(sd, layout={"model": "dvs"}).summary() == graph.summary()
            with pytest.raises(UserError, match="'mean' gives 1 channel"):
                evnn.from_state_dict(sd, layout={"event_agg_method": "mean"})
        return
    graph = evnn.from_state_dict(sd)
    assert graph.metadata["evnn"]["model"] == kind
    assert graph.output_mode == {"smnist": "last"}.get(kind, "sequence")
    assert not any(layer.use_trace for layer in graph.egru_layers)
    assert len(graph.egru_layers) == layers
    traced = evnn.from_state_dict(sd, layout={"use_trace": True, "use_output_trace": True})
    assert [layer.use_trace for layer in traced.egru_layers] == [True] * layers


@settings(max_examples=30, deadline=None)
@given(inputs=st.integers(1, 300), outputs=st.integers(1, 14), hidden=st.integers(2, 6))
def test_layers_fc_is_refused_exactly_when_a_dvs_frame_fits(inputs, outputs, hidden):
    rng = np.random.default_rng(inputs)
    sd = {f"layers.0.{k}": v for k, v in evnn_layer(rng, inputs, hidden).items()}
    sd.update({"fc.weight": torch.zeros(outputs, hidden), "fc.bias": torch.zeros(outputs)})
    frame = any(inputs == c * (128 // k) ** 2 and 128 % k == 0 for k in (1, 2, 4, 8, 16, 32, 64, 128) for c in (1, 2))
    if outputs == 11 and frame:
        with pytest.raises(UserError, match="fit two layouts"):
            evnn.from_state_dict(sd)
    else:
        assert evnn.from_state_dict(sd).metadata["evnn"]["model"] == "stack"


# --------------------------------------------------------------------------- bad input: one line naming the key

def planted(tmp_path: Path, sd: dict, name: str = "m.pth") -> Path:
    path = tmp_path / name
    torch.save(sd, path)
    return path


def cnn_state_dict() -> dict:
    return dict(saved_state_dict("dvs_cnn"))


DVS_OK = '{"frame_size": 32, "event_agg_method": "mean"}'
BAD_CASES = {
    "zoneout_one": (lambda p: ["inspect", checkpoint("egru_layer"), "--zoneout", "1.0"], ["--zoneout", "[0, 1)"]),
    "zoneout_negative": (lambda p: ["inspect", checkpoint("egru_layer"), "--zoneout", "-0.1"], ["--zoneout"]),
    "zoneout_nan": (lambda p: ["emulate", checkpoint("egru_layer"), "--input", p / "x.npy", "--output", p / "y.npy",
                               "--zoneout", "nan"], ["--zoneout"]),
    "zoneout_export": (lambda p: ["export", checkpoint("egru_layer"), "--format", "evnn", "-o", p / "m.pt",
                                  "--zoneout", "2"], ["--zoneout"]),
    "zoneout_compile": (lambda p: ["compile", checkpoint("egru_layer"), "--target", "loihi2", "-o", p / "b",
                                   "--calibration", p / "c.npz", "--zoneout", "1"], ["--zoneout"]),
    "layout_zoneout": (lambda p: ["inspect", checkpoint("egru_layer"), "--layout", '{"zoneout": 1.5}'],
                       ["layout zoneout", "[0, 1)"]),
    "layout_zoneout_bool": (lambda p: ["inspect", checkpoint("egru_layer"), "--layout", '{"zoneout": true}'],
                            ["layout zoneout"]),
    "layout_zoneout_list": (lambda p: ["inspect", checkpoint("egru_stacked"), "--layout", '{"zoneout": [0.1, 0.2]}'],
                            ["zoneout", "one probability per EGRU layer (3)"]),
    "unknown_cnn_layer": (lambda p: ["inspect", planted(p, {**cnn_state_dict(), "conv.1.weight": torch.zeros(2)}),
                                     "--layout", DVS_OK], ["conv.1.weight", "not a layer of EvNN's DVS CNN"]),
    "cnn_kernel_size": (lambda p: ["inspect", planted(p, {**cnn_state_dict(),
                                                          "conv.0.weight": torch.zeros(8, 1, 7, 7)}),
                                   "--layout", DVS_OK], ["conv.0.weight", "expected shape [*, 1, 11, 11]"]),
    "cnn_two_channels": (lambda p: ["inspect", planted(p, {**cnn_state_dict(),
                                                           "conv.0.weight": torch.zeros(8, 2, 11, 11)}),
                                    "--layout", DVS_OK], ["conv.0.weight"]),
    "cnn_linear_4d": (lambda p: ["inspect", planted(p, {**cnn_state_dict(),
                                                        "conv.15.weight": torch.zeros(32, 16, 1, 1)}),
                                 "--layout", DVS_OK], ["conv.15.weight"]),
    "cnn_missing_conv": (lambda p: ["inspect", planted(p, {k: v for k, v in cnn_state_dict().items()
                                                           if not k.startswith("conv.9.")}), "--layout", DVS_OK],
                         ["conv.9.weight: missing"]),
    "cnn_without_frame_size": (lambda p: ["inspect", checkpoint("dvs_cnn"), "--layout", '{"event_agg_method": "mean"}'],
                               ["frame_size", "26-32", "128"]),
    "cnn_without_agg_method": (lambda p: ["inspect", checkpoint("dvs_cnn")], ["event_agg_method"]),
    "cnn_agg_none": (lambda p: ["inspect", checkpoint("dvs_cnn"), "--layout",
                                '{"frame_size": 32, "event_agg_method": "none"}'], ["event_agg_method", "'none'"]),
    "agg_bool": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout", '{"event_agg_method": "bool"}'],
                 ["event_agg_method", "'bool'"]),
    "ambiguous_dvs_or_stack": (lambda p: ["inspect", checkpoint("dvs_flat")],
                               ["fit two layouts", '"model": "dvs"', '"model": "stack"']),
    "wrong_frame_size": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout",
                                    '{"frame_size": 16, "event_agg_method": "mean"}'], ["frame_size 16", "64 inputs"]),
    "frame_size_not_int": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout", '{"frame_size": "8"}'],
                           ["frame_size"]),
    "dvs_fields_on_lm": (lambda p: ["inspect", checkpoint("lm_tied"), "--layout", '{"frame_size": 8}'],
                         ["frame_size", "DVS gesture model", "needs layers.<l>.*"]),
    "dvs_fields_with_another_model": (lambda p: ["inspect", checkpoint("lm_tied"), "--layout",
                                                 '{"frame_size": 8, "model": "lm"}'], ["frame_size", "not model 'lm'"]),
    "model_mismatch": (lambda p: ["inspect", checkpoint("egru_stacked"), "--layout", '{"model": "dvs"}'],
                       ["model", "layers.<l>.*"]),
    "model_unknown": (lambda p: ["inspect", checkpoint("egru_stacked"), "--layout", '{"model": "gru"}'], ["model"]),
    "model_with_layers": (lambda p: ["inspect", checkpoint("egru_stacked"), "--layout",
                                     '{"model": "lm", "layers": ["rnns.0."]}'], ["model", "layers"]),
    "dvs_args_missing": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout",
                                    json.dumps({"dvs_args": str(p / "nope.json")})], ["nope.json", "no such file"]),
    "dvs_args_use_cnn": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout", json.dumps(
        {"dvs_args": str(write_json(p / "args.json", {"use_cnn": True, "event_agg_method": "mean"}))})], ["use_cnn"]),
    "dvs_args_not_egru": (lambda p: ["inspect", checkpoint("dvs_flat"), "--layout", json.dumps(
        {"dvs_args": str(write_json(p / "args.json", {"rnn_type": "lstm"}))})], ["rnn_type 'lstm'"]),
    "use_trace_list_length": (lambda p: ["inspect", checkpoint("egru_stacked"), "--layout", '{"use_trace": [true]}'],
                              ["use_trace", "one entry per EGRU layer (3)"]),
    "use_output_trace_contradiction": (lambda p: ["inspect", checkpoint("smnist_output_trace"), "--layout",
                                                  '{"use_trace": [false, false], "use_output_trace": true}'],
                                       ["use_output_trace", "contradicts"]),
    "projection_activation": (lambda p: ["inspect", checkpoint("lm_projection"), "--layout",
                                         '{"projection_activation": "gelu"}'], ["projection_activation"]),
    "export_wrong_evnn_model": (lambda p: ["export", checkpoint("egru_stacked"), "--format", "evnn", "-o", p / "m.pt",
                                           "--evnn-model", "lm"], ["not EvNN's LanguageModel", "no token embedding"]),
    "zoneout_on_a_bundle_backend": (lambda p: ["emulate", checkpoint("egru_layer"), "--input", p / "x.npy",
                                               "--output", p / "y.npy", "--backend", "hwsim", "--zoneout", "0.1"],
                                    ["zoneout", "hwsim"]),
}


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_2_with_one_line_naming_the_key(tmp_path, case):
    make, fragments = BAD_CASES[case]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 12), np.float32))
    np.savez(tmp_path / "c.npz", x=np.zeros((1, 3, 12), np.float32))
    args = make(tmp_path)
    assert_hostile_case(args, tmp_path, *fragments)
