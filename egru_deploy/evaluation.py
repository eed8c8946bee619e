"""``egru-deploy evaluate``: a model or bundle scored on a task's split by any backend.

Tasks are ``digits`` (the bundled scikit-learn digits, :mod:`egru_deploy.data`) and the workloads of
:mod:`egru_deploy.tasks` (``fmnist-rows``, ``smnist``, ``brown-lm``). Every model is run with its
task's output mode. What is reported:

* the task metric: accuracy (classification: argmax of the readout) or perplexity = exp(mean
  cross-entropy of the next token, natural log; the language model);
* activity sparsity: the fraction of zero events over all EGRU units, steps and samples, and per layer;
* multiply-accumulates per step, dense vs effective (``report.mac_counts``: only non-zero inputs and
  events fan out), averaged over samples and steps.

Classification runs the split in batches (at most :data:`BATCH_STEPS` sample-steps each). ``limit``
keeps ``limit`` samples spread evenly over the split (indices ``round(linspace(0, N-1, limit))``), so
a split stored class by class (``smnist``) stays balanced.

The language model is evaluated as a stream, as EvNN's ``benchmarks/lm/eval.py`` does
(docs/evnn_compat.md 3.2): the split's token stream is cut into :data:`tasks.LM_EVAL_ROWS` contiguous
rows (``tasks.lm_arrays``) and read in chunks of ``chunk`` steps (default :data:`LM_CHUNK`, EvNN's
bptt 70); each chunk starts from the previous chunk's last events y per layer
(``initial_events = result.final_events()``) while c and the trace restart at 0 ("y carried, c reset
per chunk"). The float and integer references and both hwsims take initial events; Lava and QEMU
refuse them (the chip's neurons start from y = 0), so on those backends every chunk starts from zero
state unless ``carry=True`` is asked for (then their own one-line refusal). The result says which
(``carry``). ``limit`` keeps the first ``limit`` steps of each row (``10 * limit`` tokens).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from egru_deploy.errors import UserError

LM_CHUNK = 70  # EvNN's bptt for LM evaluation (its README)
BATCH_STEPS = 50_000  # sample-steps per classification batch (a batch of 500 fmnist rows, 63 smnist digits)
MAX_BATCH = 500
CARRY_BACKENDS = ("float", "reference", "hwsim")  # backends that take initial events
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Workload:
    """A task's evaluation data: classification ``x`` (N, T, I), ``y`` (N,); LM ``x``, ``y`` (rows, L)."""

    task: str
    split: str
    kind: str  # "classification" | "lm"
    metric: str  # "accuracy" | "perplexity"
    output_mode: str
    classes: int
    x: np.ndarray
    y: np.ndarray
    total: int  # samples (classification) or steps per row (LM) in the whole split


def task_names() -> tuple[str, ...]:
    from egru_deploy import tasks

    return ("digits", *tasks.TASKS)


def check_limit(limit, name: str = "--limit") -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise UserError(f"{name}: expected a positive number of samples (or LM steps per row), got {limit!r}")
    return int(limit)


def spread(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when ``limit`` is None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.round(np.linspace(0, n - 1, limit)).astype(np.int64)


def workload(task: str, split: str = "test", limit: int | None = None) -> Workload:
    """The evaluation data of ``task``'s ``split`` (rules: the module docstring)."""
    from egru_deploy import tasks

    limit = check_limit(limit)
    if task == "digits":
        from egru_deploy import data

        if split not in ("train", "test"):
            raise UserError(f"--split: digits has train and test splits, got {split!r}")
        x_train, y_train, x_test, y_test = data.digits_split()
        x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
        idx = spread(len(x), limit)
        return Workload("digits", split, "classification", "accuracy", data.DIGITS_OUTPUT_MODE,
                        data.DIGITS_CLASSES, x[idx], y[idx], len(x))
    if task not in tasks.TASKS:
        raise UserError(f"--task: unknown task {task!r} (expected one of {', '.join(task_names())})")
    if split not in SPLITS:
        raise UserError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    spec = tasks.TASKS[task]
    if spec.kind == "lm":
        x, y = tasks.lm_arrays(spec.load(split)[0])
        total = x.shape[1]
        if limit:
            x, y = x[:, :limit], y[:, :limit]
    else:
        x, y = spec.load(split)
        x = x.reshape(len(x), spec.steps, spec.input_size)
        total = len(x)
        idx = spread(len(x), limit)
        x, y = x[idx], y[idx]
    return Workload(task, split, spec.kind, spec.metric, spec.output_mode, spec.classes, x, y, total)


# --------------------------------------------------------------------------- runners


@dataclass
class Runner:
    """``run(x, initial_events) -> RunResult`` of one model on one backend, loaded once."""

    graph: object  # the IR graph that runs (float, or a bundle's integer graph)
    backend: str
    run: object
    name: str


def runner(model, backend: str, output_mode: str, *, layout=None, zoneout=None) -> Runner:
    """Load ``model`` (a checkpoint, model file, bundle folder, IR graph ...) once for ``backend``."""
    from egru_deploy import api, backends, bundle, reference

    if backend not in backends.BACKENDS:
        raise UserError(f"--backend: unknown backend {backend!r} (expected one of {', '.join(backends.BACKENDS)})")
    name = str(model) if isinstance(model, (str, os.PathLike)) else f"<{type(model).__name__}>"
    if isinstance(model, (str, os.PathLike)) and not Path(model).exists():
        raise UserError(f"{model}: no such file or directory")
    if isinstance(model, (str, os.PathLike)) and bundle.is_bundle(model):
        if zoneout is not None:
            raise UserError(f"zoneout: {model} is a compiled bundle; zoneout is fixed when compiling")
        if backend == "float":
            graph = replace(bundle.load_float_graph(model), output_mode=output_mode)
            return Runner(graph, backend, lambda x, init: reference.run_float(graph, x, init), name)
        graph = replace(bundle.load_graph(model), output_mode=output_mode)
        if backend == "reference":
            return Runner(graph, backend, lambda x, init: reference.run(graph, x, init), name)
        if backend == "hwsim":
            return Runner(graph, backend, _hwsim(model, graph, output_mode), name)

        def real(x, init):
            return backends.run_backend(backend, model, x, output_mode, initial_events=init)

        return Runner(graph, backend, _halving(real) if backend == "qemu" else real, name)
    if backend not in ("float", "reference"):
        raise UserError(f"--backend {backend}: runs a compiled bundle; pass the bundle's path "
                        f"(egru-deploy compile MODEL --target ... -o BUNDLE)")
    graph = api.load(model, layout, zoneout, output_mode)
    if backend == "float" and graph.quantized:
        raise UserError(f"{name}: holds a model quantized for {graph.profile!r}; use backend 'reference'")
    if backend == "reference" and not graph.quantized:
        raise UserError(f"{name}: backend 'reference' runs a quantized model; compile it first")
    return Runner(graph, backend, lambda x, init: reference.run(graph, x, init), name)


def _halving(run):
    """QEMU's harness holds a bounded packet stream per PE (4 MiB of board SSRAM): a batch whose stream
    does not fit is run as two halves (recursively), and the results joined."""

    def halving(x, init):
        try:
            return run(x, init)
        except UserError as e:
            if len(x) < 2 or not ("buffer full" in str(e) or "too large" in str(e)):
                raise
        half = len(x) // 2
        parts = [halving(x[:half], _rows(init, slice(0, half))), halving(x[half:], _rows(init, slice(half, None)))]
        return concat_results(parts)

    return halving


def _rows(initial_events, rows: slice):
    return None if initial_events is None else [None if y is None else y[rows] for y in initial_events]


def concat_results(parts: list):
    """The ``RunResult`` of a batch run in parts (samples along axis 0): outputs, events, saturations."""
    from egru_deploy.reference import RunResult

    first = parts[0]

    def cat(values):
        return None if values[0] is None else np.concatenate(values)

    saturations = {}
    for part in parts:
        for key, n in part.saturations.items():
            saturations[key] = saturations.get(key, 0) + n
    return RunResult(output=cat([p.output for p in parts]),
                     events=[np.concatenate(e) for e in zip(*(p.events for p in parts))], hidden=list(first.hidden),
                     saturations=saturations, sequence=cat([p.sequence for p in parts]),
                     int_sequence=cat([p.int_sequence for p in parts]),
                     layer_events=[np.concatenate(e) for e in zip(*(p.layer_events for p in parts))],
                     hardware=dict(first.hardware))


def _hwsim(bundle_dir, graph, output_mode: str):
    """The bundle's bit-accurate emulator with its mapping loaded once (not once per batch)."""
    from egru_deploy import bundle

    target = bundle.read_manifest(bundle_dir).get("target")
    if target == "loihi2":
        from egru_deploy.hwsim import loihi2

        return lambda x, init: loihi2.run(graph, x, initial_events=init).result(graph)
    if target == "spinnaker2":
        from egru_deploy.hwsim import spinnaker2

        system = spinnaker2.load(bundle_dir)
        system = replace(system, graph=replace(system.graph, output_mode=output_mode))
        return lambda x, init: spinnaker2.simulate(system, x, initial_events=init).run
    raise UserError(f"{bundle_dir}: no hwsim emulator for target {target!r}")


# --------------------------------------------------------------------------- evaluation


def _progress(enabled: bool, total: int, what: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    bar = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True, disable=not enabled)
    return bar, total


def check_fits(graph, work: Workload) -> None:
    """The model reads the task's inputs and has an output for every label (one line otherwise)."""
    from egru_deploy.reference import InputError, check_input

    try:
        check_input(graph, work.x[:1])
    except InputError as e:
        raise UserError(f"--task {work.task}: {e.detail}") from None
    top = int(work.y.max())
    if top >= graph.out_size:
        raise UserError(f"--task {work.task}: label {top} needs at least {top + 1} model outputs, "
                        f"the model has {graph.out_size}")


def evaluate(model, task: str, backend: str = "float", *, split: str = "test", limit: int | None = None,
             chunk: int = LM_CHUNK, carry: bool | None = None, batch_size: int | None = None, layout=None,
             zoneout=None, progress: bool = False, work: Workload | None = None) -> dict:
    """Score ``model`` on ``task`` (see the module docstring); returns a JSON-able dict.

    ``carry`` (language model): None = carry y where the backend can (float, reference, hwsim), else
    not; True / False force it. ``work``: a :class:`Workload` already loaded (skips loading the data).
    """
    check_limit(limit)
    if work is None:
        work = workload(task, split, limit)
    run = runner(model, backend, work.output_mode, layout=layout, zoneout=zoneout)
    check_fits(run.graph, work)
    started = time.perf_counter()
    if work.kind == "lm":
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise UserError(f"--chunk: expected a positive number of steps, got {chunk!r}")
        if carry is None:
            carry = backend in CARRY_BACKENDS
        out = _evaluate_lm(run, work, int(chunk), bool(carry), progress)
    else:
        out = _evaluate_classification(run, work, batch_size, progress)
    out.update(task=work.task, split=work.split, backend=backend, model=run.name, metric=work.metric,
               seconds=time.perf_counter() - started, limit=limit)
    return out


def _batch(work: Workload, batch_size: int | None) -> int:
    if batch_size is None:
        return max(1, min(MAX_BATCH, BATCH_STEPS // work.x.shape[1]))
    if batch_size < 1:
        raise UserError(f"batch_size: expected >= 1, got {batch_size}")
    return batch_size


class _Tally:
    """Events and MACs summed over runs (weights: samples x steps)."""

    def __init__(self):
        self.zeros, self.units = None, None
        self.effective, self.dense, self.weight = 0.0, 0, 0

    def add(self, graph, x, result) -> None:
        from egru_deploy.report import mac_counts

        units = [e.size * h for e, h in zip(result.events, result.hidden)]
        zeros = [u - float(e.sum()) for u, e in zip(units, result.events)]
        if self.units is None:
            self.zeros, self.units = zeros, units
        else:
            self.zeros = [a + b for a, b in zip(self.zeros, zeros)]
            self.units = [a + b for a, b in zip(self.units, units)]
        macs = mac_counts(graph, x, result)
        weight = x.shape[0] * x.shape[1]
        self.effective += macs["effective"] * weight
        self.dense = macs["dense"]
        self.weight += weight

    def summary(self) -> dict:
        return {"sparsity": sum(self.zeros) / max(sum(self.units), 1),
                "layer_sparsity": [z / max(u, 1) for z, u in zip(self.zeros, self.units)],
                "macs_effective": self.effective / max(self.weight, 1), "macs_dense": int(self.dense)}


def _evaluate_classification(run: Runner, work: Workload, batch_size: int | None, progress: bool) -> dict:
    batch = _batch(work, batch_size)
    correct, tally = 0, _Tally()
    bar, total = _progress(progress, len(work.x), f"{work.task} {work.split} [{run.backend}] samples")
    with bar:
        job = bar.add_task("samples", total=total)
        for start in range(0, len(work.x), batch):
            xb, yb = work.x[start:start + batch], work.y[start:start + batch]
            result = run.run(xb, None)
            correct += int(np.sum(result.output.argmax(axis=-1) == yb))
            tally.add(run.graph, xb, result)
            bar.update(job, advance=len(xb))
    return {"accuracy": correct / len(work.y), "samples": int(len(work.y)), "split_samples": work.total,
            **tally.summary()}


def log_softmax_nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Sum over all positions of -log softmax(logits)[target] (float64; logits (..., V), targets (...))."""
    z = logits.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    log_norm = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
    picked = np.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
    return float(np.sum(log_norm - picked))


def _evaluate_lm(run: Runner, work: Workload, chunk: int, carry: bool, progress: bool) -> dict:
    rows, steps = work.x.shape
    nll, state, tally = 0.0, None, _Tally()
    bar, total = _progress(progress, rows * steps, f"{work.task} {work.split} [{run.backend}] tokens")
    with bar:
        job = bar.add_task("tokens", total=total)
        for start in range(0, steps, chunk):
            xc, yc = work.x[:, start:start + chunk], work.y[:, start:start + chunk]
            result = run.run(xc, state)
            nll += log_softmax_nll(result.output, yc)
            tally.add(run.graph, xc, result)
            state = result.final_events() if carry else None
            bar.update(job, advance=xc.size)
    tokens = int(work.y.size)
    scheme = (f"stream of {rows} rows in chunks of {chunk} steps, last events y carried from chunk to chunk, "
              f"c and trace reset per chunk (EvNN's LM evaluation)" if carry else
              f"stream of {rows} rows in chunks of {chunk} steps, every chunk from zero state (no carry"
              + (f": {run.backend} refuses initial events)" if run.backend not in CARRY_BACKENDS else ")"))
    return {"perplexity": float(np.exp(nll / tokens)), "cross_entropy": nll / tokens, "tokens": tokens,
            "rows": rows, "steps_per_row": steps, "split_steps_per_row": work.total, "chunk": chunk,
            "carry": carry, "scheme": scheme, **tally.summary()}


def metric_text(result: dict) -> str:
    if result["metric"] == "accuracy":
        return f"accuracy {result['accuracy']:.2%}"
    return f"perplexity {result['perplexity']:.2f}"
