"""Training recipe for the paper-scale workloads of :mod:`egru_deploy.tasks`, EGRU and GRU baseline.

One recipe per kind of task, shared by the EGRU and its same-size GRU baseline (``torch.nn.GRU``):

- Classification (``fmnist-rows``, ``smnist``): a stack of recurrent layers, a linear classifier on the last
  step (or on the mean over steps: the task's output mode). Adam, cosine learning-rate decay over all batches,
  cross-entropy, gradients clipped to norm ``clip``; for the EGRU plus ``activity_weight`` times the activity
  penalty of :func:`egru_deploy.train.activity_penalty` (per layer the mean event magnitude, summed), as
  ``train.py`` does for the digits, but off in epoch 1 and ramped up over epoch 2 (:func:`penalty_ramp`).
- Language model (``brown-lm``): embedding, a stack of layers, a decoder tied to the embedding (its
  weight IS the embedding matrix; embedding size = last hidden size, so no projection). The train
  stream is cut into ``batch_size`` contiguous rows (PTB ``batchify``) and read in chunks of ``bptt``
  steps; the state (EGRU: ``c`` and ``y`` per layer; GRU: ``h``) is carried from chunk to chunk and
  detached between them (truncated BPTT), reset only at the start of an epoch. Activity penalty off for
  the first quarter epoch, then ramped up over half an epoch.

After every epoch the model is scored on the valid split; the checkpoint is the epoch with the best
valid metric. Test metrics come at the end: for EGRU classifiers from the float NumPy reference on the
converted IR graph (the numbers a user of the checkpoint sees); for the LM from the torch model with
state carried along each of the 10 evaluation rows (:data:`egru_deploy.tasks.LM_EVAL_ROWS`), checked
against the NumPy reference on a prefix. Activity sparsity is the fraction of zero events over units,
steps and samples; MACs per step follow :func:`egru_deploy.report.mac_counts` (dense: every weight
every step; effective: only non-zero inputs and events fan out). A GRU's hidden state is dense, so its
effective count differs from its dense one only by zero inputs.

Everything is seeded (``seed`` drives initialisation and batch order; one torch thread), so the same
arguments give the same checkpoint.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from egru_deploy import tasks as task_registry
# Imported here, not where used: a run that takes an hour must not mix module versions (a file edited
# while it trains would otherwise be imported half-way through, beside the old versions of the rest).
from egru_deploy.converters.torch import from_torch
from egru_deploy.errors import UserError
from egru_deploy.files import atomic_output
from egru_deploy.model import EGRU, EGRUNetwork, spike
from egru_deploy.reference import run
from egru_deploy.report import mac_counts
from egru_deploy.train import activity_penalty

# --------------------------------------------------------------------------- models


def egru_layer(rnn: EGRU, x: torch.Tensor, state=None):
    """``rnn`` over time-major ``x`` (T, B, I) from ``state`` = (c, y) (zeros if None).

    The same arithmetic as :meth:`egru_deploy.model.EGRU.forward` (no trace, no zoneout), plus an initial state:
    returns ``(y_seq (T, B, H), (c, y))``. Both ``c`` and ``y`` carry over, so chunks run one after another
    equal one uninterrupted run, as the reference and the chips compute a stream (EvNN's ``initial_events``
    carries only ``y`` and restarts ``c`` at 0). The input projections are split with ``unbind``: indexing
    ``gx_all[t]`` instead costs a full-size zero gradient per step in backward, 70 s per batch at T=784.
    """
    if getattr(rnn, "zoneout", 0.0):
        raise UserError("train_tasks.egru_layer: zoneout is not implemented here; use EGRU.forward")
    batch = x.shape[1]
    h = rnn.hidden_size
    thr = torch.clamp(rnn.thr, 0.0, 1.0)
    gx_all = x @ rnn.kernel + rnn.bias
    if state is None:
        c, y = x.new_zeros(batch, h), x.new_zeros(batch, h)
    else:
        c, y = state
    ys = []
    for gx in gx_all.unbind(0):
        gh = y @ rnn.recurrent_kernel + rnn.recurrent_bias
        z = torch.sigmoid(gx[:, :h] + gh[:, :h])
        r = torch.sigmoid(gx[:, h:2 * h] + gh[:, h:2 * h])
        g = torch.tanh(gx[:, 2 * h:] + r * gh[:, 2 * h:])
        c_new = z * c + (1 - z) * g
        o = spike(c_new - thr, rnn.dampening_factor, rnn.pseudo_derivative_support)
        c = c_new - o * thr
        y = o * c_new
        ys.append(y)
    return torch.stack(ys), (c, y)


def egru_classifier_forward(net: EGRUNetwork, x: torch.Tensor):
    """``net(x)`` for a batch-first classifier without traces (output mode last or mean), via :func:`egru_layer`."""
    x = x.transpose(0, 1)
    events = []
    for rnn in net.rnns:
        x, _ = egru_layer(rnn, x)
        events.append(x)
    return (net.fc(x.mean(0)) if net.output_mode == "mean" else net.fc(x[-1])), events


def egru_lm(vocab: int, hidden: int, layers: int) -> EGRUNetwork:
    """EGRUNetwork LM: embedding [V, H], ``layers`` x H EGRU, readout ``fc`` tied to the embedding."""
    net = EGRUNetwork(input_size=hidden, hidden_sizes=[hidden] * layers, output_size=vocab, vocab_size=vocab,
                      output_mode="sequence")
    net.fc.weight = net.embeddings.weight
    return net


def egru_lm_forward(net: EGRUNetwork, tokens: torch.Tensor, states=None):
    """Tokens (B, T) -> logits (B, T, V), events per layer (T, B, H), new states (one (c, y) per layer)."""
    x = net.embeddings(tokens).transpose(0, 1)
    states = states or [None] * len(net.rnns)
    events, new_states = [], []
    for rnn, state in zip(net.rnns, states):
        x, state = egru_layer(rnn, x, state)
        events.append(x)
        new_states.append(state)
    return net.fc(x).transpose(0, 1), events, new_states


class GRUClassifier(nn.Module):
    """The GRU baseline of a classification task: nn.GRU stack, linear classifier on the last step."""

    def __init__(self, input_size: int, hidden: int, layers: int, classes: int, output_mode: str = "last"):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)
        self.output_mode = output_mode

    def forward(self, x):
        y, _ = self.gru(x)
        return self.fc(y.mean(1) if self.output_mode == "mean" else y[:, -1]), []


class GRULM(nn.Module):
    """The GRU baseline of the LM: embedding, nn.GRU stack, decoder tied to the embedding."""

    def __init__(self, vocab: int, hidden: int, layers: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)
        self.fc.weight = self.embeddings.weight
        nn.init.uniform_(self.embeddings.weight, -0.1, 0.1)

    def forward(self, tokens, state=None):
        y, state = self.gru(self.embeddings(tokens), state)
        return self.fc(y), [], state


def parameter_count(model: nn.Module) -> int:
    """Trained numbers, each shared (tied) tensor once (not EvNN's [1] constants, which take no gradient)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def dense_macs(input_size: int, hidden: int, layers: int, outputs: int, embedding: bool) -> int:
    """MACs per step of a stack with every weight used every step (as report.mac_counts counts)."""
    sizes = [input_size] + [hidden] * layers
    rnn = sum((sizes[i] + hidden) * 3 * hidden for i in range(layers))
    return int(rnn + hidden * outputs)


def gru_effective_macs(x_active: float, hidden: int, layers: int, outputs: int) -> float:
    """A GRU's hidden state is dense: only zero inputs of the first layer save MACs."""
    rnn = (x_active + hidden) * 3 * hidden + (layers - 1) * 2 * hidden * 3 * hidden
    return float(rnn + hidden * outputs)


# --------------------------------------------------------------------------- helpers


def _save(model: nn.Module, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(model.state_dict(), tmp)


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def _schedule(optimizer, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))


def _update(model, loss, optimizer, schedule, clip: float | None) -> None:
    """One optimizer step on ``loss`` (gradient norm clipped to ``clip`` when set), then the schedule."""
    optimizer.zero_grad()
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    schedule.step()


def penalty_ramp(epochs_done: float, warmup: float = 1.0, ramp: float = 1.0) -> float:
    """Factor of the activity weight after ``epochs_done`` (fractional) epochs: 0 for ``warmup`` epochs,
    then linear to 1 over ``ramp`` epochs, then 1. Classifiers: 1 + 1 epochs; the LM: 0.25 + 0.5.

    A fresh EGRU emits almost no events (thresholds start near 0.3); a penalty from the first batch
    silences it for good (measured: fmnist-rows 2x128, 0.000 event rate and chance accuracy).
    """
    return min(max((epochs_done - warmup) / ramp, 0.0), 1.0)


def _event_rate(events) -> float:
    return float(torch.stack([(e != 0).float().mean() for e in events]).mean()) if events else 1.0


# --------------------------------------------------------------------------- classification


def _classify(model, forward, x: torch.Tensor, batch_size: int = 500):
    """(predicted classes, event sparsity) of a torch model on all of x."""
    model.eval()
    preds, zeros, total = [], 0.0, 0
    with torch.no_grad():
        for xb in x.split(batch_size):
            logits, events = forward(xb)
            preds.append(logits.argmax(1))
            zeros += sum(float((e == 0).sum()) for e in events)
            total += sum(e.numel() for e in events)
    return torch.cat(preds), (zeros / total if total else 0.0)


def train_classifier(task_name: str, arch: str, output_path: str | os.PathLike | None, *, hidden: int,
                     layers: int, epochs: int, seed: int = 0, batch_size: int = 128,
                     learning_rate: float = 3e-3, activity_weight: float = 2.0, clip: float = 1.0,
                     input_init: str = "hidden", max_batches: int | None = None) -> dict:
    """Train ``arch`` ("egru" | "gru") on a classification task; save the best-valid state_dict; metrics.

    ``input_init="fan_in"`` draws the EGRU's first input kernel from U(-1/sqrt(I), 1/sqrt(I)) instead of
    model.py's U(-1/sqrt(H), 1/sqrt(H)): with I=1 (smnist) the default leaves the input drive ~0.09 and
    the layer silent; the GRU keeps torch's own initialisation.
    """
    task = task_registry.get_task(task_name)
    if task.kind != "classification":
        raise UserError(f"{task_name} is not a classification task")
    if arch not in ("egru", "gru"):
        raise UserError(f"arch must be egru or gru, got {arch!r}")
    x_train, y_train = (torch.from_numpy(a) for a in task.load("train"))
    x_valid, y_valid = task.load("valid")
    x_test, y_test = task.load("test")
    torch.manual_seed(seed)
    if arch == "egru":
        model = EGRUNetwork(task.input_size, [hidden] * layers, output_size=task.classes,
                            output_mode=task.output_mode)
        if input_init == "fan_in":
            bound = 1.0 / math.sqrt(task.input_size)
            nn.init.uniform_(model.rnns[0].kernel, -bound, bound)
    else:
        model = GRUClassifier(task.input_size, hidden, layers, task.classes, task.output_mode)
        activity_weight = 0.0
    forward = (lambda xb: egru_classifier_forward(model, xb)) if arch == "egru" else model
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    batches = -(-len(x_train) // batch_size)
    if max_batches:
        batches = min(batches, max_batches)
    schedule = _schedule(optimizer, epochs * batches)
    history, best, best_state, train_seconds = [], -1.0, None, 0.0
    _log(f"{task_name} {arch} {layers}x{hidden}: {parameter_count(model):,} parameters, "
         f"{len(x_train)} train samples, {batches} batches/epoch, {epochs} epochs")
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(x_train))
        loss_sum, correct, rate_sum, seen = 0.0, 0, 0.0, 0
        for b, idx in enumerate(order.split(batch_size)):
            if b >= batches:
                break
            logits, events = forward(x_train[idx])
            loss = nn.functional.cross_entropy(logits, y_train[idx])
            if activity_weight:
                loss = loss + activity_weight * penalty_ramp(epoch + b / batches) * activity_penalty(events)
            _update(model, loss, optimizer, schedule, clip)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_train[idx]).sum())
            rate_sum += _event_rate(events) * len(idx)
            seen += len(idx)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        preds, valid_sparsity = _classify(model, forward, torch.from_numpy(x_valid))
        valid_acc = float((preds.numpy() == y_valid).mean())
        history.append({"epoch": epoch + 1, "seconds": seconds, "loss": loss_sum / seen,
                        "train_accuracy": correct / seen, "train_event_rate": rate_sum / seen,
                        "valid_accuracy": valid_acc, "valid_sparsity": valid_sparsity})
        _log(f"{task_name} {arch} epoch {epoch + 1}/{epochs} {seconds:.0f}s loss {loss_sum / seen:.4f} "
             f"train acc {correct / seen:.4f} event rate {rate_sum / seen:.3f} valid acc {valid_acc:.4f} "
             f"valid sparsity {valid_sparsity:.3f}")
        if valid_acc > best:
            best, best_state = valid_acc, copy.deepcopy(model.state_dict())
            if output_path is not None:  # the best checkpoint so far is on disk whatever happens next
                _save(model, Path(output_path))
    model.load_state_dict(best_state)
    model.eval()
    best_epoch = max(history, key=lambda h: h["valid_accuracy"])["epoch"]
    metrics = {"task": task_name, "arch": arch, "metric": task.metric,
               "config": {"hidden": hidden, "layers": layers, "epochs": epochs, "seed": seed,
                          "batch_size": batch_size, "learning_rate": learning_rate,
                          "activity_weight": activity_weight, "clip": clip, "output_mode": task.output_mode,
                          "input_init": input_init if arch == "egru" else "torch", "max_batches": max_batches},
               "parameters": parameter_count(model), "best_epoch": best_epoch, "valid_accuracy": best,
               "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / epochs, "history": history}
    if not _tested(metrics, output_path, f"{task_name} {arch}",
                   lambda: _test_classifier(metrics, model, forward, arch, task, hidden, layers, x_test, y_test)):
        return metrics
    _log(f"{task_name} {arch} test accuracy {metrics['test_accuracy']:.4f} sparsity {metrics['test_sparsity']:.3f} "
         f"MACs/step {metrics['macs_effective']:.0f} of {metrics['macs_dense']}")
    return metrics


def _tested(metrics: dict, output_path, run: str, test) -> bool:
    """Record the checkpoint in ``metrics`` and run ``test()`` (which adds the test metrics).  A failing
    test keeps the run (checkpoint, history), with the error recorded: task_registry.evaluate can score
    it later.  Returns whether the test ran."""
    if output_path is not None:
        metrics["checkpoint"] = str(output_path)
        metrics["checkpoint_bytes"] = Path(output_path).stat().st_size
    try:
        test()
    except Exception as e:  # noqa: BLE001  (see the docstring)
        metrics["evaluation_error"] = f"{type(e).__name__}: {e}"
        _log(f"{run} test evaluation failed: {metrics['evaluation_error']}")
        return False
    return True


def _test_classifier(metrics, model, forward, arch, task, hidden, layers, x_test, y_test) -> None:
    x_active = float(np.count_nonzero(x_test)) / (x_test.shape[0] * x_test.shape[1])
    dense = dense_macs(task.input_size, hidden, layers, task.classes, embedding=False)
    if arch == "egru":
        graph = replace(from_torch(model), output_mode=task.output_mode)
        result = run(graph, x_test)
        macs = mac_counts(graph, x_test, result)
        metrics.update(test_accuracy=float(np.mean(result.output.argmax(1) == y_test)),
                       test_sparsity=result.sparsity(), test_layer_sparsity=result.layer_sparsity(),
                       macs_dense=macs["dense"], macs_effective=macs["effective"], evaluated_by="numpy reference")
        assert macs["dense"] == dense, (macs["dense"], dense)
    else:
        preds, _ = _classify(model, forward, torch.from_numpy(x_test))
        metrics.update(test_accuracy=float((preds.numpy() == y_test).mean()), test_sparsity=0.0,
                       macs_dense=dense, macs_effective=gru_effective_macs(x_active, hidden, layers, task.classes),
                       evaluated_by="torch")


# --------------------------------------------------------------------------- language model


def _lm_step(model, arch: str, tokens, state):
    if arch == "egru":
        return egru_lm_forward(model, tokens, state)
    return model(tokens, state)


def _detach(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return [tuple(s.detach() for s in layer) for layer in state]


def evaluate_lm(model, arch: str, stream: np.ndarray, bptt: int = 200, rows: int = task_registry.LM_EVAL_ROWS,
                keep_events: bool = False) -> dict:
    """Perplexity of ``stream`` cut into ``rows`` rows, state carried along each row; EGRU sparsity/events."""
    x, y = task_registry.lm_arrays(stream, rows)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model.eval()
    nll, count, zeros, total, state = 0.0, 0, 0.0, 0, None
    layer_events = None
    with torch.no_grad():
        for start in range(0, x.shape[1], bptt):
            logits, events, state = _lm_step(model, arch, x[:, start:start + bptt], state)
            target = y[:, start:start + bptt]
            nll += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                     reduction="sum"))
            count += target.numel()
            zeros += sum(float((e == 0).sum()) for e in events)
            total += sum(e.numel() for e in events)
            if keep_events and events:
                chunk = [e.transpose(0, 1).ne(0).numpy() for e in events]  # (B, T, H) bool
                layer_events = chunk if layer_events is None else [np.concatenate([a, b], 1)
                                                                   for a, b in zip(layer_events, chunk)]
    out = {"perplexity": math.exp(nll / count), "cross_entropy": nll / count, "tokens": count,
           "sparsity": zeros / total if total else 0.0}
    if keep_events:
        out["layer_events"] = layer_events
        out["x"] = x.numpy()
    return out


def train_lm(task_name: str, arch: str, output_path: str | os.PathLike | None, *, hidden: int, layers: int,
             epochs: int, seed: int = 0, batch_size: int = 32, bptt: int = 35, learning_rate: float = 2e-3,
             activity_weight: float = 1.0, clip: float = 0.5, max_batches: int | None = None) -> dict:
    """Train ``arch`` ("egru" | "gru") as a word-level LM with truncated BPTT; save the best-valid state_dict."""
    task = task_registry.get_task(task_name)
    if task.kind != "lm":
        raise UserError(f"{task_name} is not a language-model task")
    train_stream, _ = task.load("train")
    valid_stream, _ = task.load("valid")
    test_stream, _ = task.load("test")
    data = torch.from_numpy(task_registry.batchify(train_stream, batch_size))
    vocab = task.classes
    torch.manual_seed(seed)
    if arch == "egru":
        model = egru_lm(vocab, hidden, layers)
    elif arch == "gru":
        model = GRULM(vocab, hidden, layers)
        activity_weight = 0.0
    else:
        raise UserError(f"arch must be egru or gru, got {arch!r}")
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    starts = list(range(0, data.shape[1] - 1, bptt))
    if max_batches:
        starts = starts[:max_batches]
    schedule = _schedule(optimizer, epochs * len(starts))
    _log(f"{task_name} {arch} {layers}x{hidden}: {parameter_count(model):,} parameters, {len(train_stream):,} train "
         f"tokens as {batch_size} rows, {len(starts)} chunks of {bptt}/epoch, {epochs} epochs")
    history, best, best_state, train_seconds = [], math.inf, None, 0.0
    for epoch in range(epochs):
        model.train()
        start_time = time.perf_counter()
        state, nll_sum, rate_sum, n = None, 0.0, 0.0, 0
        for k, start in enumerate(starts):
            inputs = data[:, start:start + bptt]
            targets = data[:, start + 1:start + 1 + bptt]
            inputs = inputs[:, :targets.shape[1]]
            logits, events, state = _lm_step(model, arch, inputs, _detach(state))
            ce = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
            ramp = penalty_ramp(epoch + k / len(starts), warmup=0.25, ramp=0.5)
            loss = ce + activity_weight * ramp * activity_penalty(events) if activity_weight else ce
            _update(model, loss, optimizer, schedule, clip)
            nll_sum += ce.item()
            rate_sum += _event_rate(events)
            n += 1
            if (k + 1) % 100 == 0:
                _log(f"  chunk {k + 1}/{len(starts)} train ppl {math.exp(nll_sum / n):.1f} "
                     f"event rate {rate_sum / n:.3f}")
        seconds = time.perf_counter() - start_time
        train_seconds += seconds
        valid = evaluate_lm(model, arch, valid_stream)
        history.append({"epoch": epoch + 1, "seconds": seconds, "train_perplexity": math.exp(nll_sum / n),
                        "train_event_rate": rate_sum / n, "valid_perplexity": valid["perplexity"],
                        "valid_sparsity": valid["sparsity"]})
        _log(f"{task_name} {arch} epoch {epoch + 1}/{epochs} {seconds:.0f}s train ppl {math.exp(nll_sum / n):.1f} "
             f"valid ppl {valid['perplexity']:.1f} valid sparsity {valid['sparsity']:.3f}")
        if valid["perplexity"] < best:
            best, best_state = valid["perplexity"], copy.deepcopy(model.state_dict())
            if output_path is not None:  # the best checkpoint so far is on disk whatever happens next
                _save(model, Path(output_path))
    model.load_state_dict(best_state)
    if arch == "egru":
        model.fc.weight = model.embeddings.weight  # load_state_dict copies into the shared tensor; keep the tie
    model.eval()
    best_epoch = min(history, key=lambda h: h["valid_perplexity"])["epoch"]
    metrics = {"task": task_name, "arch": arch, "metric": task.metric,
               "config": {"hidden": hidden, "embedding": hidden, "layers": layers, "epochs": epochs, "seed": seed,
                          "batch_size": batch_size, "bptt": bptt, "learning_rate": learning_rate,
                          "activity_weight": activity_weight, "clip": clip, "tied": True,
                          "output_mode": task.output_mode, "max_batches": max_batches},
               "parameters": parameter_count(model), "best_epoch": best_epoch, "valid_perplexity": best,
               "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / epochs, "history": history,
               "evaluated_by": "torch, state carried along 10 rows"}
    if not _tested(metrics, output_path, f"{task_name} {arch}",
                   lambda: _test_lm(metrics, model, arch, test_stream,
                                    dense_macs(hidden, hidden, layers, vocab, embedding=True))):
        return metrics
    _log(f"{task_name} {arch} test ppl {metrics['test_perplexity']:.1f} sparsity {metrics['test_sparsity']:.3f} "
         f"MACs/step {metrics['macs_effective']:.0f} of {metrics['macs_dense']}")
    return metrics


def _test_lm(metrics, model, arch, test_stream, dense) -> None:
    test = evaluate_lm(model, arch, test_stream, keep_events=arch == "egru")
    metrics.update(test_perplexity=test["perplexity"], test_cross_entropy=test["cross_entropy"],
                   test_tokens=test["tokens"], test_sparsity=test["sparsity"])
    if arch == "egru":
        graph = from_torch(model)
        result = SimpleNamespace(layer_events=test.pop("layer_events"))
        macs = mac_counts(graph, test.pop("x"), result)
        assert macs["dense"] == dense, (macs["dense"], dense)
        metrics.update(macs_dense=macs["dense"], macs_effective=macs["effective"],
                       test_layer_sparsity=[1.0 - float(e.mean()) for e in result.layer_events])
        # The torch LM forward must be the model users get: compare with the NumPy reference on a prefix.
        x_check = task_registry.lm_arrays(test_stream)[0][:2, :300]
        with torch.no_grad():
            logits, _, _ = egru_lm_forward(model, torch.from_numpy(x_check))
        metrics["reference_max_abs_diff"] = float(np.abs(run(graph, x_check).output - logits.numpy()).max())
    else:
        metrics.update(macs_dense=dense, macs_effective=float(dense))


# The shipped workloads' recipes (scripts/train_workloads.py, ``egru-deploy train --task``): sizes and
# epochs fit ~1 niced CPU core (one EGRU run <= ~40 min, its GRU baseline <= ~20 min; measured per epoch
# beside other jobs: fmnist-rows EGRU 45-100 s, GRU ~35 s; smnist EGRU ~1-1.7 s per batch of 50;
# brown-lm EGRU ~1 s and GRU ~0.55 s per chunk of 32 x 35 tokens, 872 chunks per epoch).
RECIPES = {
    "fmnist-rows": {"hidden": 128, "layers": 2, "epochs": 15, "batch_size": 128, "learning_rate": 3e-3,
                    "activity_weight": 2.0},
    "smnist": {"hidden": 128, "layers": 1, "epochs": 8, "batch_size": 50, "learning_rate": 3e-3,
               "activity_weight": 2.0, "input_init": "fan_in"},
    "brown-lm": {"hidden": 256, "layers": 2, "epochs": 2, "batch_size": 32, "bptt": 35, "learning_rate": 2e-3,
                 "activity_weight": 1.0},
}


def train_task(task_name: str, arch: str, output_path=None, **options) -> dict:
    """Dispatch on the task's kind: :func:`train_classifier` or :func:`train_lm`."""
    task = task_registry.get_task(task_name)
    fn = train_lm if task.kind == "lm" else train_classifier
    return fn(task_name, arch, output_path, **options)
