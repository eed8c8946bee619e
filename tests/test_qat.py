"""Quantization-aware fine-tuning: the chip's arithmetic in torch, pruning masks, checkpoints, digits bounds."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from egru_deploy import qat
from egru_deploy.cli import main
from egru_deploy.converters import load_model
from egru_deploy.converters.torch import from_torch
from egru_deploy.data import DIGITS_OUTPUT_MODE, evaluate, load_split
from egru_deploy.errors import UserError
from egru_deploy.ir import EGRU, Linear
from egru_deploy.model import EGRUNetwork
from egru_deploy.profiles import PROFILES, rshift_round, zoneout_blend
from egru_deploy.prune import PRUNED_FIELDS, prune, prune_matrix
from egru_deploy.quantize import quantize, quantize_weights, weight_frac
from egru_deploy.train import _fit

PROFILE_IDS = list(PROFILES)
EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_torch_gates_equal_the_integer_gates_on_the_state_grid(profile):
    p = PROFILES[profile]
    f = p.state_frac
    a = np.arange(-(1 << (f + 5)), 1 << (f + 5))  # every state-grid point in [-32, 32): past all tables
    gates = qat.Gates(p)
    for fn in ("sigmoid", "tanh"):
        got = getattr(gates, fn)(torch.from_numpy(a / 2.0 ** f).float())
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.double().numpy() * 2.0 ** f, getattr(p.activation, fn)(a, f))


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_gate_gradients_are_those_of_the_smooth_functions(profile):
    gates = qat.Gates(PROFILES[profile])
    for fn, smooth in (("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        a = torch.linspace(-6, 6, 97, requires_grad=True)
        b = a.detach().clone().requires_grad_()
        getattr(gates, fn)(a).sum().backward()
        smooth(b).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_fake_quantized_weights_equal_ptq_with_identity_gradient(profile):
    p = PROFILES[profile]
    rng = np.random.default_rng(0)
    for scale in (1e-3, 0.05, 0.7, 3.0):
        w = (rng.standard_normal((24, 40)) * scale).astype(np.float32)
        frac = weight_frac(w, p)
        on_grid = qat.on_weight_grid(torch.from_numpy(w), p).double().numpy()
        np.testing.assert_array_equal(on_grid * 2.0 ** frac, quantize_weights(w, frac, p))
    np.testing.assert_array_equal(qat.on_weight_grid(torch.zeros(3, 4), p).numpy(), 0)
    w = torch.from_numpy(w).requires_grad_()
    (qat.WeightFakeQuant(p)(w) * torch.arange(w.numel()).reshape(w.shape)).sum().backward()
    torch.testing.assert_close(w.grad, torch.arange(w.numel(), dtype=torch.float32).reshape(w.shape))


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_event_rounding_equals_the_integer_event_format(profile):
    p = PROFILES[profile]
    y_state = np.arange(0, 3 << p.state_frac)  # event values in state format F
    y = torch.from_numpy(y_state / 2.0 ** p.state_frac).float()
    events = qat.EventRounding(p)(y).double().numpy() * 2.0 ** p.event_frac
    np.testing.assert_array_equal(events, rshift_round(y_state, p.state_frac - p.event_frac))


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_zoneout_blend_equals_the_integer_blend_with_the_float_gradient(profile):
    p = PROFILES[profile]
    f = p.state_frac
    rng = np.random.default_rng(0)
    c_grid, new_grid = rng.integers(-(3 << f), 3 << f, 500), rng.integers(-(3 << f), 3 << f, 500)
    blend = qat.ZoneoutBlend(p, 0.2319)
    c = torch.from_numpy(c_grid / 2.0 ** f).float().requires_grad_()
    c_new = torch.from_numpy(new_grid / 2.0 ** f).float().requires_grad_()
    out = blend(c, c_new)
    np.testing.assert_array_equal(out.detach().double().numpy() * 2.0 ** f,
                                  zoneout_blend(new_grid, c_grid, p.zoneout_gain(0.2319), f))
    out.sum().backward()
    torch.testing.assert_close(c.grad, torch.full_like(c, 0.2319))
    torch.testing.assert_close(c_new.grad, torch.full_like(c, 1 - 0.2319))


def test_qat_with_zoneout_and_trace_readout_runs_and_keeps_both():
    net = small_network()
    graph = from_torch(net)
    graph = graph.with_layers([replace(layer, zoneout=0.25, use_trace=True) if isinstance(layer, EGRU) else layer
                               for layer in graph.layers])
    rebuilt = qat.network_from_graph(graph)
    assert rebuilt.feeds_trace() == [True] and rebuilt.rnns[0].zoneout == 0.25
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8), dtype=np.float32), rng.integers(0, 10, 64)
    tuned = qat.finetune_network(graph, PROFILES["spinnaker2"], x, y, epochs=1, seed=0)
    assert tuned.rnns[0].zoneout_blend is None and not tuned.training  # frozen, evaluated with the float blend
    back = from_torch(tuned)
    assert [(layer.zoneout, layer.use_trace) for layer in back.egru_layers] == [(0.25, True)]
    metrics = qat.compile_and_evaluate(back, "spinnaker2", x, x[:16], y[:16])
    assert 0.0 <= metrics["accuracy"] <= 1.0


def small_network(seed=0, hidden=16) -> EGRUNetwork:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return EGRUNetwork(8, [hidden], output_size=10, output_mode=DIGITS_OUTPUT_MODE)


def test_masks_stay_fixed_while_the_kept_weights_train():
    net = small_network()
    with torch.no_grad():
        for module, name in qat.weight_matrices(net):
            w = getattr(module, name)
            w.mul_((torch.rand_like(w) > 0.7).float())
    zeros = {(id(m), n): getattr(m, n).detach() == 0 for m, n in qat.weight_matrices(net)}
    before = {(id(m), n): getattr(m, n).detach().clone() for m, n in qat.weight_matrices(net)}
    qat.make_quantization_aware(net, PROFILES["loihi2"], keep_zeros=True)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((64, 8, 8), dtype=np.float32))
    _fit(net, x, torch.from_numpy(rng.integers(0, 10, 64)), 2, 0.1, 1e-2, 16, False)
    qat.freeze_on_grid(net)
    for m, n in qat.weight_matrices(net):
        w = getattr(m, n).detach()
        assert torch.all(w[zeros[id(m), n]] == 0)
        assert not torch.equal(w, before[id(m), n])
    assert set(net.state_dict()) == set(small_network().state_dict())  # no parametrization keys left


def test_cubic_sparsity_schedule():
    assert qat.cubic_sparsity(0, 10, 0.9) == 0.0 and qat.cubic_sparsity(10, 10, 0.9) == pytest.approx(0.9)
    assert qat.cubic_sparsity(12, 10, 0.9) == pytest.approx(0.9)
    steps = [qat.cubic_sparsity(k, 10, 0.9) for k in range(11)]
    assert all(b > a for a, b in zip(steps, steps[1:]))  # increasing,
    assert all(b - a < a - z for z, a, b in zip(steps, steps[1:], steps[2:]))  # fastest at first


def test_gradual_pruning_grows_nested_masks_to_exactly_the_per_matrix_magnitude_rule():
    net = qat.make_quantization_aware(small_network(), PROFILES["spinnaker2"], keep_zeros=True)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((64, 8, 8), dtype=np.float32))
    masks = []

    def record(epoch):
        pruning(epoch)
        masks.append({(id(m), n): m.parametrizations[n][0].mask.clone() for m, n in qat.weight_matrices(net)})

    pruning = qat.GradualPruning(net, 0.9, 3)
    _fit(net, x, torch.from_numpy(rng.integers(0, 10, 64)), 5, 0.1, 1e-2, 16, False, epoch_end=record)
    for before, after in zip(masks, masks[1:]):
        assert all(torch.all(after[k] <= before[k]) for k in before)  # pruned weights stay pruned
    for k, mask in masks[2].items():
        assert int((mask == 0).sum()) == round(0.9 * mask.numel())
        assert torch.equal(masks[-1][k], mask)  # fixed after the schedule
    qat.freeze_on_grid(net)
    for m, n in qat.weight_matrices(net):
        w = getattr(m, n).detach().numpy()
        np.testing.assert_array_equal(prune_matrix(w, 0.9), w)  # compile's re-pruning changes nothing
        assert np.count_nonzero(w) <= w.size - round(0.9 * w.size)


def test_network_from_graph_round_trips():
    net = small_network()
    rebuilt = qat.network_from_graph(from_torch(net))
    for key, value in net.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value, rtol=0, atol=0)


def test_one_epoch_finetune_writes_a_loadable_checkpoint_on_the_grid(tmp_path):
    net = small_network()
    out = tmp_path / "qat.pt"
    result = qat.finetune(net, "loihi2", 1, out, prune=0.5)
    assert {"float", "ptq", "qat"} <= set(result) and 0.0 <= result["qat"]["accuracy"] <= 1.0
    tuned = load_model(out)
    pruned = prune(from_torch(net), 0.5)
    qgraph = quantize(tuned, PROFILES["loihi2"], np.random.default_rng(0).random((8, 8, 8), dtype=np.float32))
    for layer, start, quantized in zip(tuned.layers, pruned.layers, qgraph.layers):
        for name in PRUNED_FIELDS[type(layer)]:
            w = getattr(layer, name)
            assert np.all(w[getattr(start, name) == 0] == 0)  # pruned weights stayed zero
            q = getattr(quantized.quant, name)
            np.testing.assert_array_equal(getattr(quantized, name) * q.scale, w)  # compile's PTQ reproduces them


def test_finetune_rejects_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="profile"):
        qat.finetune(small_network(), "loihi3", 1, tmp_path / "x.pt")
    with pytest.raises(UserError, match="prune"):
        qat.finetune(small_network(), "loihi2", 1, tmp_path / "x.pt", prune=1.0)
    with pytest.raises(UserError, match="input features"):
        qat.finetune(EGRUNetwork(5, [4], output_size=10), "loihi2", 1, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_cli_finetune_writes_a_checkpoint_and_rejects_bad_input_with_one_line(tmp_path):
    model = tmp_path / "small.pt"
    torch.save(small_network().state_dict(), model)
    out = tmp_path / "small_qat.pt"
    ok = CliRunner().invoke(main, ["finetune", str(model), "--profile", "spinnaker2", "--task", "digits",
                                   "--epochs", "1", "--prune", "0.5", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "after QAT" in ok.output and load_model(out).egru_layers[0].hidden == 16
    bad = CliRunner().invoke(main, ["finetune", str(model), "--profile", "loihi2", "--prune", "1.5",
                                    "-o", str(tmp_path / "bad.pt")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "--prune" in bad.output
    assert not (tmp_path / "bad.pt").exists()


# ------------------------------------------------------------------ accuracy on the digits example

@pytest.fixture(scope="module")
def digits():
    x_train, _ = load_split(EXAMPLES / "digits_train.npz")
    x_test, y_test = load_split(EXAMPLES / "digits_test.npz")
    graph = digits_graph("digits_egru.pt")
    return {"x_train": x_train, "x_test": x_test, "y_test": y_test,
            "float": evaluate(graph, x_test, y_test)["accuracy"]}


def digits_graph(name: str):
    return replace(load_model(EXAMPLES / name), output_mode=DIGITS_OUTPUT_MODE)


def drop_pp(digits, name: str, profile: str, prune_amount: float = 0.0) -> float:
    metrics = qat.compile_and_evaluate(digits_graph(name), profile, digits["x_train"], digits["x_test"],
                                       digits["y_test"], prune_amount)
    return 100 * (digits["float"] - metrics["accuracy"])


# PTQ alone: 1 pp on both (Loihi 2's default gates, 8 sigmoid and 4 tanh ReLU chords, were chosen for it:
# benchmarks/bench_loihi2_gates.py). QAT, with the gates in the loop, must bring both within 0.5 pp.
PTQ_DROP_PP = {"loihi2": 1.0, "spinnaker2": 1.0}


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_ptq_drop_on_digits_is_bounded(digits, profile):
    assert drop_pp(digits, "digits_egru.pt", profile) <= PTQ_DROP_PP[profile]


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_shipped_qat_model_drop_on_digits_is_at_most_half_a_pp(digits, profile):
    assert drop_pp(digits, f"digits_egru_qat_{profile}.pt", profile) <= 0.5


# 90 % per-matrix pruning leaves the 8x384 input kernel 307 weights and the 128x10 readout 128.
# Pruning once and then fine-tuning recovered only to 94.2-96.0 % over seeds (float 97.6 %); gradual
# pruning during QAT (the shipped recipe, seed 0) stays within the 2 pp bound over seeds 0-2.
@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_shipped_prune90_qat_model_drop_on_digits_is_at_most_2pp(digits, profile):
    assert drop_pp(digits, f"digits_egru_qat_prune90_{profile}.pt", profile, 0.9) <= 2.0


@pytest.mark.parametrize("name", [f"digits_egru_qat_{p}.pt" for p in PROFILE_IDS]
                         + [f"digits_egru_qat_prune90_{p}.pt" for p in PROFILE_IDS])
def test_shipped_qat_weights_lie_on_their_profiles_grid(digits, name):
    profile = name.removesuffix(".pt").rsplit("_", 1)[1]
    graph = digits_graph(name)
    qgraph = quantize(graph, PROFILES[profile], digits["x_train"])
    for layer, quantized in zip(graph.layers, qgraph.layers):
        assert isinstance(layer, (EGRU, Linear))
        for field in PRUNED_FIELDS[type(layer)]:
            q = getattr(quantized.quant, field)
            np.testing.assert_array_equal(getattr(quantized, field) * q.scale, getattr(layer, field))
