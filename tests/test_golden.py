"""Verification ladder, rungs 1-2: the torch model and the float reference equal the golden cases of
the independent NumPy spec (tests/spec_numpy.py, file made by scripts/make_golden.py), and equal
each other on random multi-layer networks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spec_numpy
import torch

from egru_deploy import ir, reference
from egru_deploy.converters.torch import from_torch
from egru_deploy.model import EGRUNetwork

GOLDEN = Path(__file__).parent / "golden" / "egru_cases.npz"
TOL = 1e-5
TRAINING_ONLY = ("dampening_factor", "pseudo_derivative_support", "_max_norm")


def load_golden() -> dict[str, dict[str, np.ndarray]]:
    cases: dict[str, dict[str, np.ndarray]] = {}
    with np.load(GOLDEN, allow_pickle=False) as data:
        for key in data.files:
            name, field = key.split("/", 1)
            cases.setdefault(name, {})[field] = data[key]
    return cases


CASES = load_golden()


def weights(case: dict) -> dict:
    return {k: v for k, v in case.items() if k.startswith(("rnns.", "embeddings.", "decoder.", "fc."))}


def readout_weight(net: dict):
    return net.get("fc.weight", net.get("decoder.decoder.weight"))


def torch_network(net: dict, use_trace: bool, output_mode: str = "sequence") -> EGRUNetwork:
    """An ``EGRUNetwork`` holding the EvNN-layout weights ``net``."""
    hidden = [net[f"rnns.{i}.thr"].shape[0] for i in range(spec_numpy.layer_count(net))]
    readout = readout_weight(net)
    model = EGRUNetwork(
        net["rnns.0.kernel"].shape[0], hidden,
        output_size=readout.shape[0] if readout is not None else None,
        vocab_size=net["embeddings.weight"].shape[0] if "embeddings.weight" in net else None,
        projection_size=net["decoder.projection.weight"].shape[0] if "decoder.projection.weight" in net else None,
        use_trace=use_trace, output_mode=output_mode,
        projection_activation="relu")  # the spec's decoder.projection has a ReLU (EvNN pre-0.2's rule)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in net.items()}, strict=False)
    assert not unexpected and all(k.endswith(TRAINING_ONLY) for k in missing), (missing, unexpected)
    return model.eval()


def run_torch(model: EGRUNetwork, x: np.ndarray):
    with torch.no_grad():
        out, events = model(torch.from_numpy(x))
    counts = [(y != 0).sum(dim=2).T.numpy() for y in events]  # (T, B, H) -> (B, T)
    return out.numpy(), counts


def ir_graph(net: dict, use_trace: bool, output_mode: str = "sequence") -> ir.Graph:
    """The IR of ``net``, built field by field (no converter involved)."""
    layers: list = []
    if "embeddings.weight" in net:
        layers.append(ir.Embedding(net["embeddings.weight"]))
        graph_input = ir.Input(net["embeddings.weight"].shape[0], tokens=True)
    else:
        graph_input = ir.Input(net["rnns.0.kernel"].shape[0])
    count = spec_numpy.layer_count(net)
    for i in range(count):
        p = f"rnns.{i}."
        layers.append(ir.EGRU(net[p + "kernel"], net[p + "recurrent_kernel"], net[p + "bias"],
                              net[p + "recurrent_bias"], net[p + "thr"], use_trace=use_trace and i < count - 1))
    if "decoder.projection.weight" in net:
        layers.append(ir.Linear(net["decoder.projection.weight"], net["decoder.projection.bias"], relu=True))
    for readout in ("decoder.decoder.", "fc."):
        if readout + "weight" in net:
            layers.append(ir.Linear(net[readout + "weight"], net[readout + "bias"]))
    return ir.Graph(graph_input, tuple(layers), output_mode)


def expected_output(sequence: np.ndarray, output_mode: str) -> np.ndarray:
    return {"sequence": sequence, "last": sequence[:, -1], "mean": sequence.mean(axis=1)}[output_mode]


@pytest.mark.parametrize("name", sorted(CASES))
def test_spec_still_gives_golden(name):
    case = CASES[name]
    result = spec_numpy.run(weights(case), case["x"], bool(case["use_trace"]))
    np.testing.assert_allclose(result["output"], case["output"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_float_reference_equals_golden(name):
    case = CASES[name]
    result = reference.run_float(ir_graph(weights(case), bool(case["use_trace"])), case["x"])
    np.testing.assert_allclose(result.output, case["output"], rtol=0, atol=TOL)
    for i, counts in enumerate(result.events):
        np.testing.assert_array_equal(counts, case[f"events.{i}"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_model_equals_golden(name):
    case = CASES[name]
    out, counts = run_torch(torch_network(weights(case), bool(case["use_trace"])), case["x"])
    np.testing.assert_allclose(out, case["output"], rtol=0, atol=TOL)
    for i, layer_counts in enumerate(counts):
        np.testing.assert_array_equal(layer_counts, case[f"events.{i}"])


RANDOM_NETS = {
    "one_layer_sequence": (dict(input_size=5, hidden=[16]), False, "sequence"),
    "three_layers_trace_last": (dict(input_size=8, hidden=[32, 24, 16], output=4), True, "last"),
    "wide_mean": (dict(input_size=3, hidden=[64, 64], output=10), False, "mean"),
    "embedding_projection_relu": (dict(input_size=8, hidden=[16, 12], output=20, vocab=20, projection=8), False,
                                  "sequence"),
    "embedding_trace_mean": (dict(input_size=6, hidden=[10, 9], output=11, vocab=11), True, "mean"),
}


@pytest.mark.parametrize("name", sorted(RANDOM_NETS))
def test_torch_model_equals_float_reference(name):
    net_args, use_trace, output_mode = RANDOM_NETS[name]
    rng = np.random.default_rng(sorted(RANDOM_NETS).index(name))

    def draw():
        net = spec_numpy.random_net(rng, **net_args)
        return net, spec_numpy.random_input(rng, net, 3, 15), use_trace

    net, x, _, spec = spec_numpy.well_conditioned(draw)
    model = torch_network(net, use_trace, output_mode)
    out, counts = run_torch(model, x)
    result = reference.run_float(from_torch(model), x)
    np.testing.assert_allclose(result.output, out, rtol=0, atol=TOL)
    np.testing.assert_allclose(result.output, expected_output(spec["output"], output_mode), rtol=0, atol=TOL)
    for ref_counts, torch_counts in zip(result.events, counts, strict=True):
        np.testing.assert_array_equal(ref_counts, torch_counts)
