"""Quantization-aware fine-tuning: ``egru-deploy finetune MODEL --profile loihi2|spinnaker2``
``--task digits|fmnist-rows|smnist`` (the classifiers; :func:`task_data`).

The torch EGRU is fine-tuned with the chip's arithmetic in its forward pass and smooth gradients in
its backward pass (straight-through estimators):

* weights are fake-quantized per matrix exactly as post-training quantization does it
  (``quantize.weight_frac`` + ``quantize.quantize_weights``), through ``torch.nn.utils.parametrize``;
* the gates use the profile's sigmoid/tanh approximations evaluated on the state grid (format F),
  with the gradient of the smooth sigmoid/tanh;
* events are rounded to the profile's event format (E fractional bits) as the neurons emit them;
* zoneout's eval blend is the profile's integer blend (``profiles.zoneout_blend``) on the state grid,
  with the gradient of the float blend (in training mode the torch model applies EvNN's Bernoulli
  zoneout mask instead, as EvNN trains).

With ``prune``, the matrices are pruned gradually (Zhu & Gupta 2017, "To prune, or not to prune"):
after each of the first ``prune_epochs`` epochs every matrix is magnitude-pruned on its own
(``prune.prune_matrix``) to the cubic schedule's sparsity ``prune * (1 - (1 - k / prune_epochs)**3)``;
pruned weights are set to zero, so the masks only grow, and reach exactly ``prune`` after epoch
``prune_epochs``.  The remaining epochs fine-tune with the masks fixed.  ``prune_epochs=0`` prunes
once before fine-tuning instead.  Either way the final zeros are exactly the per-matrix magnitude
rule's, so ``egru-deploy compile --prune`` finds the same masks.  The checkpoint keeps the weights on the quantization grid (EvNN state_dict
layout), so ``egru-deploy compile`` maps them onto exactly the integers the fine-tuning used.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from egru_deploy import ir
from egru_deploy.compile import pipeline
from egru_deploy.converters import load_model
from egru_deploy.converters.torch import from_torch
from egru_deploy.data import DIGITS_OUTPUT_MODE, LAYOUTS, digits_split, evaluate
from egru_deploy.errors import UserError
from egru_deploy.model import EGRU, EGRUNetwork
from egru_deploy.profiles import Profile, get_profile, zoneout_blend
from egru_deploy.prune import PRUNED_FIELDS, prune_matrix
from egru_deploy.quantize import quantize_weights, weight_frac
from egru_deploy.train import _fit, _save_state_dict


class _StraightThrough(torch.autograd.Function):
    # Not ``smooth + (exact - smooth).detach()``: that sum can miss ``exact`` by an ulp, and the
    # forward values must be exactly the integer grid's.
    @staticmethod
    def forward(ctx, smooth, exact):
        return exact.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _straight_through(smooth: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """The value of ``exact`` (taken as a constant) with the gradient of ``smooth``."""
    return _StraightThrough.apply(smooth, exact.detach())


class Gates:
    """A profile's sigmoid and tanh for torch: integer-exact on the state grid, smooth gradients.

    A pre-activation ``a`` is rounded to the grid (``round(a * 2**F)``) and the profile's own integer
    function is applied (``profiles``: the one implementation every integer path uses), so
    ``sigmoid(a / 2**F) == activation.sigmoid(a, F) / 2**F`` for integer ``a``.
    """

    def __init__(self, profile: Profile):
        self.frac = profile.state_frac
        self.activation = profile.activation

    def sigmoid(self, a: torch.Tensor) -> torch.Tensor:
        return _straight_through(torch.sigmoid(a), self._exact(self.activation.sigmoid, a))

    def tanh(self, a: torch.Tensor) -> torch.Tensor:
        return _straight_through(torch.tanh(a), self._exact(self.activation.tanh, a))

    def _exact(self, fn, a: torch.Tensor) -> torch.Tensor:
        grid = torch.round(a.detach().double() * 2.0 ** self.frac).long().cpu().numpy()
        values = fn(grid, self.frac).astype(np.float64) * 2.0 ** -self.frac
        return torch.from_numpy(values).to(device=a.device, dtype=a.dtype)


class EventRounding:
    """Events leave a neuron in format E: ``rshift_round(y, F - E)`` of the state-format value, straight through."""

    def __init__(self, profile: Profile):
        self.frac = profile.event_frac

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        scale = 2.0 ** self.frac
        return _straight_through(y, torch.floor(y.detach() * scale + 0.5) / scale)


class ZoneoutBlend:
    """``EGRU.zoneout_blend`` for a layer of zoneout ``p``: the value of the profile's integer blend of
    ``c`` and ``c'`` rounded to the state grid (``profiles.zoneout_blend``), the gradient of
    ``p * c + (1 - p) * c'``."""

    def __init__(self, profile: Profile, p: float):
        self.frac, self.p, self.gain = profile.state_frac, p, profile.zoneout_gain(p)

    def __call__(self, c: torch.Tensor, c_new: torch.Tensor) -> torch.Tensor:
        scale = 2.0 ** self.frac

        def grid(t: torch.Tensor) -> np.ndarray:
            return torch.round(t.detach().double() * scale).long().cpu().numpy()

        exact = zoneout_blend(grid(c_new), grid(c), self.gain, self.frac).astype(np.float64) / scale
        smooth = self.p * c + (1 - self.p) * c_new
        return _straight_through(smooth, torch.from_numpy(exact).to(device=c_new.device, dtype=c_new.dtype))


def on_weight_grid(w: torch.Tensor, profile: Profile) -> torch.Tensor:
    """The values PTQ gives matrix ``w``: its int mantissas times its per-matrix scale 2**-frac."""
    w_np = w.detach().cpu().numpy()
    frac = weight_frac(w_np, profile)
    mantissas = quantize_weights(w_np, frac, profile)
    return torch.from_numpy(mantissas.astype(np.float64) * 2.0 ** -frac).to(w.dtype)


class WeightFakeQuant(nn.Module):
    """Parametrization: forward on PTQ's grid (:func:`on_weight_grid`), identity gradient."""

    def __init__(self, profile: Profile):
        super().__init__()
        self.profile = profile

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _straight_through(w, on_weight_grid(w, self.profile))


class FixedMask(nn.Module):
    """Parametrization: zero the pruned entries; they get no gradient, so only :class:`GradualPruning` changes the mask."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def cubic_sparsity(step: int, steps: int, final: float) -> float:
    """Zhu & Gupta's schedule: sparsity after pruning step ``step`` of ``steps`` (0 before, ``final`` at the end)."""
    return final * (1.0 - (1.0 - min(step, steps) / steps) ** 3)


class GradualPruning:
    """``train._fit`` epoch callback: after epoch k < ``epochs`` (0-based), prune every matrix of a model
    made by ``make_quantization_aware(..., keep_zeros=True)`` to ``cubic_sparsity(k + 1, epochs, final)``.

    Each matrix is pruned on its own by magnitude (``prune.prune_matrix``) of its masked float weights;
    pruned weights are zeroed, so they are the smallest at the next step and the masks are nested.
    """

    def __init__(self, model: EGRUNetwork, final: float, epochs: int):
        self.matrices = weight_matrices(model)
        self.final, self.epochs = final, epochs

    def prune_to(self, sparsity: float) -> None:
        with torch.no_grad():
            for module, name in self.matrices:
                weights = module.parametrizations[name]
                mask = weights[0].mask
                w = weights.original
                kept = prune_matrix((w * mask).numpy(), sparsity) != 0
                mask.copy_(torch.from_numpy(kept).to(mask.dtype))
                w.mul_(mask)

    def __call__(self, epoch: int) -> None:
        if epoch < self.epochs:
            self.prune_to(cubic_sparsity(epoch + 1, self.epochs, self.final))


# torch module -> the IR layer holding the same matrices under the same names
IR_LAYERS = ((EGRU, ir.EGRU), (nn.Linear, ir.Linear))


def weight_matrices(model: EGRUNetwork) -> list[tuple[nn.Module, str]]:
    """``(module, name)`` of every matrix that PTQ quantizes and pruning prunes."""
    # isinstance, not type(): parametrize swaps a module's class for a generated subclass
    return [(module, name) for module in model.modules() for torch_type, ir_type in IR_LAYERS
            if isinstance(module, torch_type) for name in PRUNED_FIELDS[ir_type]]


def make_quantization_aware(model: EGRUNetwork, profile: Profile, keep_zeros: bool = False) -> EGRUNetwork:
    """Put ``profile``'s arithmetic into ``model`` in place; with ``keep_zeros`` its zero weights stay zero."""
    gates, events = Gates(profile), EventRounding(profile)
    for rnn in model.rnns:
        rnn.sigmoid, rnn.tanh, rnn.event_rounding = gates.sigmoid, gates.tanh, events
        rnn.zoneout_blend = ZoneoutBlend(profile, rnn.zoneout)
    for module, name in weight_matrices(model):
        if keep_zeros:
            parametrize.register_parametrization(module, name, FixedMask((getattr(module, name) != 0).float()))
        parametrize.register_parametrization(module, name, WeightFakeQuant(profile))
    return model


def freeze_on_grid(model: EGRUNetwork) -> EGRUNetwork:
    """Undo :func:`make_quantization_aware`, leaving every weight matrix at its quantized (and masked) value."""
    for rnn in model.rnns:
        rnn.sigmoid, rnn.tanh, rnn.event_rounding, rnn.zoneout_blend = torch.sigmoid, torch.tanh, None, None
    for module, name in weight_matrices(model):
        if parametrize.is_parametrized(module, name):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    # Removing a parametrization registers the parameter anew, at the end: restore EvNN's order, so
    # the checkpoint's keys come in evnn_pytorch.EGRU's order (and nn.Linear's weight, bias).
    for module in model.modules():
        order = EGRU.PARAMETER_ORDER if isinstance(module, EGRU) else ("weight", "bias")
        params = module._parameters
        if set(params) <= set(order):
            ordered = [(name, params[name]) for name in order if name in params]
            params.clear()
            params.update(ordered)
    return model


def network_from_graph(graph: ir.Graph) -> EGRUNetwork:
    """A torch ``EGRUNetwork`` holding a float graph's parameters (the inverse of ``from_torch``)."""
    embedding = next((layer for layer in graph.layers if isinstance(layer, ir.Embedding)), None)
    egrus = graph.egru_layers
    linears = [layer for layer in graph.layers if isinstance(layer, ir.Linear)]
    if [layer.relu for layer in linears] not in ([], [False], [True, False], [False, False]):
        raise UserError("finetune: the readout must be one linear layer, optionally after one projection "
                        "(with or without ReLU)")
    net = EGRUNetwork(input_size=egrus[0].in_size, hidden_sizes=[layer.hidden for layer in egrus],
                      output_size=linears[-1].out_size if linears else None,
                      vocab_size=embedding.vocab if embedding else None,
                      projection_size=linears[0].out_size if len(linears) == 2 else None,
                      use_trace=[layer.use_trace for layer in egrus], output_mode=graph.output_mode,
                      projection_activation="relu" if len(linears) == 2 and linears[0].relu else "none")
    for rnn, layer in zip(net.rnns, egrus):
        rnn.zoneout = layer.zoneout
    params = {}
    if embedding:
        params["embeddings.weight"] = embedding.weight
    for i, layer in enumerate(egrus):
        params.update({f"rnns.{i}.{name}": getattr(layer, name)
                       for name in ("kernel", "recurrent_kernel", "bias", "recurrent_bias", "thr")})
    readouts = ["fc"] if len(linears) == 1 else ["decoder.projection", "decoder.decoder"]
    for prefix, layer in zip(readouts, linears):
        params.update({f"{prefix}.weight": layer.weight, f"{prefix}.bias": layer.bias})
    with torch.no_grad():
        for key, value in params.items():
            net.get_parameter(key).copy_(torch.from_numpy(np.asarray(value, np.float32)))
    return net


def compile_and_evaluate(graph: ir.Graph, profile_name: str, calibration_x: np.ndarray, x: np.ndarray,
                         y: np.ndarray, prune: float = 0.0, output_mode: str = DIGITS_OUTPUT_MODE) -> dict:
    """Task metrics of ``graph`` after ``egru-deploy compile``'s passes, run by the integer reference
    with ``output_mode`` (the task's readout)."""
    for stage in pipeline(profile_name, calibration_x, prune):
        graph = stage.apply(graph)
    return evaluate(graph, x, y, output_mode)


def _digits_layout(graph: ir.Graph) -> str:
    for layout, (_, features) in LAYOUTS.items():
        if features == graph.input.size and not graph.input.tokens:
            return layout
    raise UserError(f"finetune --task digits: the model takes {graph.input.size} input features per step; "
                    f"digits provides {' or '.join(str(f) for _, f in LAYOUTS.values())}")


def finetune_network(graph: ir.Graph, profile: Profile, x: np.ndarray, y: np.ndarray, epochs: int,
                     prune: float = 0.0, prune_epochs: int = 0, seed: int = 0, *, learning_rate: float = 1e-3,
                     activity_weight: float = 2.0, batch_size: int = 32, progress: bool = False) -> EGRUNetwork:
    """Fine-tune a float ``graph`` on ``(x, y)`` with ``profile``'s arithmetic (and pruning, see the module
    docstring); return the network frozen on the weight grid. Seeded; runs on one torch thread."""
    if not 0.0 <= prune < 1.0:
        raise UserError(f"--prune: expected a fraction in [0, 1), got {prune}")
    if not 0 <= prune_epochs <= epochs:
        raise UserError(f"finetune: prune_epochs must lie in [0, epochs={epochs}], got {prune_epochs}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest and bitwise reproducible
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = make_quantization_aware(network_from_graph(graph), profile, keep_zeros=prune > 0)
            pruning = GradualPruning(net, prune, prune_epochs) if prune > 0 else None
            if pruning and not prune_epochs:
                pruning.prune_to(prune)  # one shot, before fine-tuning
            _fit(net, torch.from_numpy(x), torch.from_numpy(y), epochs, activity_weight,
                 learning_rate, batch_size, progress, epoch_end=pruning)
    finally:
        torch.set_num_threads(threads)
    return freeze_on_grid(net)


def task_data(task: str, graph: ir.Graph, train_samples: int | None = None) -> dict:
    """Train, test and calibration data of a QAT task for ``graph`` and the task's output mode.

    digits: ``digits_split`` (calibration = the training split, as ``compile --calibration
    digits-train``). The classification tasks of ``egru_deploy.tasks`` (fmnist-rows, smnist): the
    train and test splits; calibration is what ``compile --calibration <data>-train`` uses
    (``api.task_split``), so the PTQ numbers here are the CLI's. ``train_samples`` keeps that many
    training samples spread over the split.
    """
    from egru_deploy import tasks
    from egru_deploy.evaluation import check_limit, spread

    check_limit(train_samples, "--train-samples")
    classifiers = ["digits"] + [name for name, spec in tasks.TASKS.items() if spec.kind == "classification"]
    if task not in classifiers:
        known = ", ".join(classifiers)
        if task in tasks.TASKS:
            raise UserError(f"finetune --task {task}: quantization-aware fine-tuning covers the classifiers "
                            f"({known}); the language model has no QAT loop")
        raise UserError(f"finetune --task: unknown task {task!r} (expected one of {known})")
    if task == "digits":
        x_train, y_train, x_test, y_test = digits_split(layout=_digits_layout(graph))
        calibration, mode = x_train, DIGITS_OUTPUT_MODE
    else:
        from egru_deploy.api import task_split

        spec = tasks.get_task(task)
        dataset = spec.dataset
        x_train, y_train = task_split(f"{dataset}-train")
        x_test, y_test = task_split(f"{dataset}-test")
        calibration, mode = task_split(f"{dataset}-train", calibration=True)[0], spec.output_mode
        if graph.input.tokens or graph.input.size != x_train.shape[2]:
            raise UserError(f"finetune --task {task}: the model takes {graph.input.size} input "
                            f"{'tokens' if graph.input.tokens else 'features'} per step; {task} provides "
                            f"{x_train.shape[2]} features")
        if graph.out_size < spec.classes:
            raise UserError(f"finetune --task {task}: needs {spec.classes} model outputs, the model has "
                            f"{graph.out_size}")
    idx = spread(len(x_train), train_samples)
    return {"x_train": x_train[idx], "y_train": y_train[idx], "x_test": x_test, "y_test": y_test,
            "calibration": calibration, "output_mode": mode}


def finetune(model: str | os.PathLike | EGRUNetwork, profile_name: str, epochs: int,
             output_path: str | os.PathLike, prune: float = 0.0, seed: int = 0, *, task: str = "digits",
             prune_epochs: int | None = None, learning_rate: float = 1e-3, activity_weight: float = 2.0,
             batch_size: int = 32, train_samples: int | None = None, progress: bool = False) -> dict:
    """Fine-tune ``model`` with ``profile_name``'s arithmetic in the loop and save the checkpoint.

    ``task``: digits or a classification task of ``egru_deploy.tasks`` (fmnist-rows, smnist;
    :func:`task_data`; ``train_samples`` fine-tunes on a subset). With ``prune``, the sparsity ramps up over the first ``prune_epochs`` epochs (default: half
    of ``epochs``; 0 prunes once before fine-tuning). ``activity_weight`` defaults to the training
    recipes' weight, so fine-tuning keeps the trained activity sparsity. Returns test metrics of the
    original float model, of its post-training quantization, and of the fine-tuned model as compiled
    for the profile (each with ``prune`` applied), all measured with the reference interpreters.
    """
    profile = get_profile(profile_name)
    if epochs < 1:
        raise UserError(f"finetune --epochs: expected >= 1, got {epochs}")
    if batch_size < 1:
        raise UserError(f"finetune --batch-size: expected >= 1, got {batch_size}")
    if prune_epochs is None:
        prune_epochs = epochs // 2 if prune else 0
    if not 0.0 <= prune < 1.0:
        raise UserError(f"--prune: expected a fraction in [0, 1), got {prune}")
    graph = from_torch(model) if isinstance(model, EGRUNetwork) else load_model(model)
    if graph.quantized:
        raise UserError(f"finetune: {model} is already quantized; fine-tune a float model")
    d = task_data(task, graph, train_samples)
    graph = replace(graph, output_mode=d["output_mode"])
    started = time.perf_counter()
    net = finetune_network(graph, profile, d["x_train"], d["y_train"], epochs, prune, prune_epochs, seed,
                           learning_rate=learning_rate, activity_weight=activity_weight,
                           batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - started
    _save_state_dict(net, Path(output_path))
    tuned = replace(from_torch(net), output_mode=d["output_mode"])
    x_cal, x_test, y_test = d["calibration"], d["x_test"], d["y_test"]
    return {
        "profile": profile.name, "prune": prune, "task": task,
        "float": evaluate(graph, x_test, y_test, graph.output_mode),
        "ptq": compile_and_evaluate(graph, profile.name, x_cal, x_test, y_test, prune, graph.output_mode),
        "qat": compile_and_evaluate(tuned, profile.name, x_cal, x_test, y_test, prune, graph.output_mode),
        "finetune_seconds": seconds,
        "config": {"epochs": epochs, "prune_epochs": prune_epochs, "seed": seed, "learning_rate": learning_rate,
                   "activity_weight": activity_weight, "batch_size": batch_size,
                   "train_samples": int(len(d["x_train"]))},
    }
