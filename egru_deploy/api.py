"""The Python API: the functions the ``egru-deploy`` command line runs, for notebooks and scripts.

    import egru_deploy
    graph = egru_deploy.load("best_model.pth", layout={"event_agg_method": "mean"}, zoneout=0.2319)
    result = egru_deploy.emulate(graph, x)                   # float reference: result.output, .events
    report = egru_deploy.compile(graph, "loihi2", "bundle/", calibration=x_train)
    result = egru_deploy.emulate("bundle/", x, backend="hwsim")
    scores = egru_deploy.evaluate("bundle/", "fmnist-rows", backend="hwsim", limit=1000)
    egru_deploy.export(graph, "evnn", "model.pt")            # back to EvNN (also "nir", "onnx")

``load`` takes a file or folder path (what the CLI takes), an IR graph, a state_dict, or a live torch
module: an ``evnn_pytorch.EGRU`` layer, one of EvNN's benchmark models (``LanguageModel``,
``EGRUDDVSOptimizedModel``, ``RNNReadoutWrapper``) or any module whose state_dict holds EGRU layers,
or this package's ``EGRUNetwork``. From a module it reads what its state_dict lacks: each EGRU
layer's ``zoneout`` attribute and, for the DVS model, its input max-pool, polarity merge, CNN pools
and ``use_all_timesteps``. Every error is a ``egru_deploy.errors.UserError`` with a one-line message.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from egru_deploy import ir
from egru_deploy.errors import UserError

PathLike = (str, os.PathLike)
BUILTIN_DATASETS = ("digits-train", "digits-test")
# A task split (``fmnist-train``, ``brown-train`` ...) given as calibration data is cut to this much:
# quantization needs ranges, not the whole split (the whole of brown-train as one (10, 97,589)
# calibration run would hold 10 billion logits).
CALIBRATION_SAMPLES = 1024  # classification: samples spread evenly over the split ...
CALIBRATION_SAMPLE_STEPS = 50_000  # ... fewer for long sequences (smnist, T=784: 63 samples), at least 32
CALIBRATION_STEPS = 500  # language model: the first steps of each of the 10 rows (5,000 tokens)
EXPORT_FORMATS = ("nir", "onnx", "evnn")
DVS_CLASSES = ("EGRUDDVSOptimizedModel", "EGRUDDVSModel")


# --------------------------------------------------------------------------- loading

def read_layout(layout, name: str = "layout") -> dict | None:
    """A layout mapping: a dict, or (as the CLI's --layout) JSON text starting with ``{`` or the name
    of a JSON file."""
    if layout is None or isinstance(layout, dict):
        return layout
    if not isinstance(layout, PathLike):
        raise UserError(f"{name}: expected a dict, JSON text or a JSON file, got {type(layout).__name__}")
    from egru_deploy.safe_io import loads_json, read_json

    text = str(layout)
    if isinstance(layout, str) and text.lstrip().startswith("{"):
        doc = loads_json(text, name, UserError)
    else:
        try:
            is_file = Path(layout).is_file()
        except OSError:  # e.g. a name too long for the file system
            is_file = False
        if not is_file:
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise UserError(f"{name}: {shown!r} is neither a JSON object nor a JSON file (no such file)")
        doc = read_json(layout, UserError)
    if not isinstance(doc, dict):
        raise UserError(f"{name}: expected a JSON object mapping roles to state_dict keys")
    return doc


def load(model, layout=None, zoneout=None, output_mode: str | None = None) -> ir.Graph:
    """The float (or, for a bundle or quantized file, integer) IR graph of ``model``.

    ``layout``: the checkpoint layout fields (``converters.evnn``), a dict or JSON. ``zoneout``: EvNN's
    zoneout probability for every EGRU layer (a number) or per layer (a list); it replaces what the
    file or layout says. ``output_mode``: "sequence" | "last" | "mean".
    """
    layout = read_layout(layout)
    graph = _load(model, layout)
    graph = with_zoneout(graph, zoneout, _name(model))
    return with_output_mode(graph, output_mode)


def _name(model) -> str:
    if isinstance(model, PathLike):
        return str(model)
    return f"<{type(model).__name__}>"


def _load(model, layout: dict | None) -> ir.Graph:
    if isinstance(model, ir.Graph):
        if layout:
            raise UserError("layout: applies to checkpoints, not to an IR graph")
        return model
    if isinstance(model, PathLike):
        from egru_deploy.converters import load_model

        return load_model(model, layout=layout)
    if isinstance(model, dict):
        from egru_deploy.converters import evnn

        return evnn.from_state_dict(model, layout=layout, source="<state_dict>")
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        nn = None
    if nn is not None and isinstance(model, nn.Module):
        return _from_module(model, layout)
    raise UserError(f"load: expected a path, an IR graph, a state_dict or a torch module, got {type(model).__name__}")


def _from_module(module, layout: dict | None) -> ir.Graph:
    from egru_deploy.converters import evnn
    from egru_deploy.model import EGRUNetwork

    if isinstance(module, EGRUNetwork):
        from egru_deploy.converters.torch import from_torch

        if layout:
            raise UserError("layout: an EGRUNetwork describes itself; set its use_trace, output_mode and layers' "
                            "zoneout instead")
        return from_torch(module)
    hints = module_layout(module)
    if layout and "layers" in layout:  # an explicit mapping: only what it cannot name
        hints = {k: v for k, v in hints.items() if k == "zoneout"}
    merged = {**hints, **(layout or {})}
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return evnn.from_state_dict(state, layout=merged or None, source=f"<{type(module).__name__}>")


def _egru_modules(module) -> list:
    """EvNN/egru-deploy EGRU layers inside ``module``, in state_dict order."""
    found = []
    for sub in module.modules():
        names = {name for name, _ in sub.named_parameters(recurse=False)}
        if {"kernel", "recurrent_kernel"} <= names:
            found.append(sub)
    return found


def _kind(sub) -> str:
    """A submodule's class name, also for TorchScript'ed ones (EvNN scripts its DVS CNN)."""
    return getattr(sub, "original_name", None) or type(sub).__name__


def module_layout(module) -> dict:
    """The layout fields a live EvNN module tells beyond its state_dict (see the module docstring)."""
    from egru_deploy.converters import evnn

    hints: dict = {}
    zoneout = [float(getattr(sub, "zoneout", 0.0) or 0.0) for sub in _egru_modules(module)]
    if any(zoneout):
        hints["zoneout"] = zoneout[0] if len(set(zoneout)) == 1 else zoneout
    name = type(module).__name__
    if name == "LanguageModel":
        hints["model"] = "lm"
    elif name == "RNNReadoutWrapper":
        hints["model"] = "smnist"
    elif name in DVS_CLASSES:
        hints["model"] = "dvs"
        if hasattr(module, "use_all_timesteps"):
            hints["use_all_timesteps"] = bool(module.use_all_timesteps)
        method = getattr(getattr(module, "event_merger", None), "method", None)
        if isinstance(method, str):
            hints["event_agg_method"] = method
        kernel = getattr(getattr(module, "input_maxpool", None), "kernel_size", None)
        kernel = kernel[0] if isinstance(kernel, tuple) else kernel
        if isinstance(kernel, int) and kernel >= 1:
            plan = None
            conv = getattr(module, "conv", None)
            if conv is not None:
                children = dict(conv.named_children())
                plan = tuple(_kind(children.get(str(i))) == "MaxPool2d" for i in (8, 11))
            sizes = [fs for fs in range(1, evnn.DVS_SENSOR + 1) if evnn.DVS_SENSOR // fs == kernel
                     and (plan is None or evnn._cnn_plan(fs) == plan)]
            if sizes:
                hints["frame_size"] = sizes[-1]
    return hints


def with_zoneout(graph: ir.Graph, zoneout, name: str = "model") -> ir.Graph:
    """``graph`` with EvNN's zoneout probability p on every EGRU layer (a number) or per layer (a list)."""
    if zoneout is None:
        return graph
    from egru_deploy.converters.evnn import check_zoneout

    layers = graph.egru_layers
    values = list(zoneout) if isinstance(zoneout, (list, tuple)) else [zoneout] * len(layers)
    if len(values) != len(layers):
        raise UserError(f"zoneout: expected one probability per EGRU layer ({len(layers)}), got {len(values)}")
    values = [check_zoneout(p, "zoneout") for p in values]
    if graph.quantized:
        raise UserError(f"zoneout: {name} is quantized for {graph.profile!r}; set zoneout on the float model "
                        f"before compiling")
    it = iter(values)
    return graph.with_layers([replace(layer, zoneout=next(it)) if isinstance(layer, ir.EGRU) else layer
                              for layer in graph.layers])


def with_output_mode(graph: ir.Graph, mode: str | None) -> ir.Graph:
    if mode is None:
        return graph
    if mode not in ir.OUTPUT_MODES:
        raise UserError(f"output_mode: expected one of {', '.join(ir.OUTPUT_MODES)}, got {mode!r}")
    return replace(graph, output_mode=mode)


def inspect(model, layout=None, zoneout=None, output_mode: str | None = None) -> dict:
    """``graph.summary()`` of ``model``, plus the converter's ``notes`` (what it decided and why)."""
    graph = load(model, layout, zoneout, output_mode)
    summary = graph.summary()
    notes = graph.metadata.get("evnn", {}).get("notes") if isinstance(graph.metadata, dict) else None
    if notes:
        summary["notes"] = list(notes)
    return summary


# --------------------------------------------------------------------------- data

def split_names() -> tuple[str, ...]:
    """Every built-in data set name: digits-train, digits-test and the task splits (fmnist-test ...)."""
    from egru_deploy import tasks

    return BUILTIN_DATASETS + tuple(tasks.SPLIT_NAMES)


def task_split(name: str, calibration: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A task split name (``egru_deploy.tasks.SPLIT_NAMES``) -> ``(x, y)``; for ``calibration`` cut to
    :data:`CALIBRATION_SAMPLES` samples spread over the split (at most :data:`CALIBRATION_SAMPLE_STEPS`
    sample-steps, at least 32 samples; LM: the first :data:`CALIBRATION_STEPS` steps of each row).
    A missing data package is one line naming it."""
    from egru_deploy import tasks
    from egru_deploy.evaluation import spread

    x, y = tasks.split_arrays(name)
    if not calibration:
        return x, y
    if x.ndim == 2:  # token rows (brown-*)
        return x[:, :CALIBRATION_STEPS], y[:, :CALIBRATION_STEPS]
    idx = spread(len(x), min(CALIBRATION_SAMPLES, max(32, CALIBRATION_SAMPLE_STEPS // x.shape[1])))
    return x[idx], y[idx]


def dataset(value, graph: ir.Graph, labels: bool = False, name: str = "data"):
    """``(x, y or None)`` from an array, an ``(x, y)`` pair, ``FILE.npz`` (keys x[, y]) or a built-in
    split name (digits-train, digits-test, or a task split such as fmnist-train, smnist-test,
    brown-valid: :func:`task_split`, cut for calibration when ``labels`` is False), checked against
    ``graph``; None for None."""
    if value is None:
        return None
    from egru_deploy import data, tasks
    from egru_deploy.reference import InputError, check_input

    if isinstance(value, tuple):
        x, y = value
    elif isinstance(value, np.ndarray):
        x, y = value, None
    elif value in BUILTIN_DATASETS:
        x_train, y_train, x_test, y_test = data.digits_split()
        x, y = (x_train, y_train) if value == "digits-train" else (x_test, y_test)
    elif isinstance(value, str) and value in tasks.SPLIT_NAMES:
        x, y = task_split(value, calibration=not labels)
    elif labels:
        x, y = data.load_split(value)
    else:
        x, y = data.load_inputs(value), None
    where = f"{name} {value}" if isinstance(value, PathLike) else name
    try:
        check_input(graph, x)
    except InputError as e:
        raise UserError(f"{where}: {e.detail}") from None
    if labels:
        if y is None:
            raise UserError(f"{where}: labels needed (an (x, y) pair or a FILE.npz with 'y')")
        y = np.asarray(y)
        if y.max() >= graph.out_size:
            raise UserError(f"{where}: label {y.max()} needs at least {y.max() + 1} model outputs, "
                            f"the model has {graph.out_size}")
    return x, y


def named_files(*values) -> tuple[str, ...]:
    """The values that are existing files or folders (inputs a compile must never replace)."""
    return tuple(str(v) for v in values if isinstance(v, PathLike) and Path(v).exists())


# --------------------------------------------------------------------------- compile, emulate, export

def compile(model, target: str, out_dir, calibration, *, eval_data=None, prune: float = 0.0,  # noqa: A001
            force: bool = False, layout=None, zoneout=None, output_mode: str | None = None,
            source: str | None = None, inputs: tuple = ()) -> dict:
    """Quantize ``model`` for ``target`` ("loihi2" | "spinnaker2") and write a bundle to ``out_dir``.

    ``calibration``: inputs (B, T, ...) as an array, ``FILE.npz`` or a built-in split (digits-train, or
    a task split such as fmnist-train, cut by :func:`task_split`); ``eval_data``: labelled data for the
    report, an ``(x, y)`` pair, ``FILE.npz`` or a built-in split (fmnist-test, brown-test ...). ``force``
    replaces an existing bundle at ``out_dir`` (never another folder). Returns the compile report.
    """
    from egru_deploy.compile import compile_model

    graph = load(model, layout, zoneout, output_mode)
    calibration_x, _ = dataset(calibration, graph, False, "calibration")
    eval_pair = dataset(eval_data, graph, True, "eval_data")
    files = named_files(model, calibration, eval_data, layout) + tuple(inputs)
    return compile_model(graph, target, out_dir, calibration_x, prune, eval_pair,
                         source=source if source is not None else _name(model), inputs=files, force=force)


def emulate(model, x, backend: str = "float", *, layout=None, zoneout=None, output_mode: str | None = None,
            initial_events=None):
    """Run ``model`` on ``x`` and return a ``reference.RunResult`` (``.output``, ``.events`` ...).

    ``backend``: "float" (the float reference of a model, or of a bundle's float graph), "reference"
    (the integer interpreter of a bundle or quantized model), or for a bundle path "hwsim", "lava",
    "qemu". ``initial_events``: per EGRU layer the events before the first step, (B, H) or None
    (EvNN's ``state``: e.g. ``result.final_events()`` of the previous chunk; see the backends).
    """
    from egru_deploy import backends, bundle, reference

    layout = read_layout(layout)
    if isinstance(model, PathLike):
        if not Path(model).exists():
            raise UserError(f"{model}: no such file or directory")
        is_bundle = bundle.is_bundle(model)
        if zoneout is not None and is_bundle:
            raise UserError(f"zoneout: {model} is a compiled bundle; zoneout is fixed when compiling")
        if zoneout is None:
            return backends.run_backend(backend, model, x, output_mode=output_mode, layout=layout,
                                        initial_events=initial_events)
        if backend != "float":
            raise UserError(f"zoneout: backend {backend!r} runs a compiled bundle, whose zoneout was fixed when "
                            f"compiling; --zoneout goes with the float backend or with compile")
        graph = load(model, layout)
    else:
        if backend not in ("float", "reference"):
            raise UserError(f"--backend {backend}: runs a compiled bundle; pass the bundle's path")
        graph = load(model, layout)
    graph = with_output_mode(with_zoneout(graph, zoneout, _name(model)), output_mode)
    if backend == "float":
        if graph.quantized:
            raise UserError(f"{_name(model)}: holds a model quantized for {graph.profile!r}; use backend "
                            f"'reference'")
        return reference.run_float(graph, x, initial_events)
    if not graph.quantized:
        raise UserError(f"{_name(model)}: backend 'reference' runs a quantized model; compile it first")
    return reference.run(graph, x, initial_events)


def evaluate(model, task: str, backend: str = "float", *, split: str = "test", limit: int | None = None,
             chunk: int | None = None, carry: bool | None = None, layout=None, zoneout=None,
             progress: bool = False) -> dict:
    """Score ``model`` (checkpoint, model file, graph or bundle folder) on ``task``'s ``split``.

    ``task``: digits, fmnist-rows, smnist or brown-lm; ``backend`` as for :func:`emulate`. Returns the
    task metric (``accuracy`` or ``perplexity``), activity ``sparsity`` (and per layer), MACs per step
    (``macs_effective``, ``macs_dense``) and ``seconds``. ``limit``: that many samples spread over the
    split, or for the language model the first ``limit`` steps of each of its 10 rows. The language
    model runs as a stream in chunks of ``chunk`` steps (default 70, EvNN's bptt), y carried from chunk
    to chunk with c reset (``carry``: None = where the backend can, i.e. not on lava or qemu).
    Details: ``egru_deploy.evaluation``.
    """
    from egru_deploy import evaluation

    layout = read_layout(layout)
    return evaluation.evaluate(model, task, backend, split=split, limit=limit,
                               chunk=evaluation.LM_CHUNK if chunk is None else chunk, carry=carry,
                               layout=layout, zoneout=zoneout, progress=progress)


def export(model, fmt: str, path, *, layout=None, zoneout=None, output_mode: str | None = None,
           evnn_model: str = "auto") -> dict:
    """Write ``model`` as ``fmt`` ("nir" | "onnx" | "evnn") to ``path`` (atomically).

    "evnn" writes a state_dict for EvNN (``converters.evnn``, Export): ``evnn_model`` chooses the
    layout ("auto", "lm", "dvs", "smnist", "stack", "layer"). Returns ``format``, ``path``,
    ``quantized``, and for evnn the chosen ``model``, ``notes`` and the ``layout`` that loads it back.
    """
    from egru_deploy.converters import EXPORTERS
    from egru_deploy.files import atomic_output

    if fmt not in EXPORTERS:
        raise UserError(f"--format: unknown format {fmt!r} (expected one of {', '.join(EXPORTERS)})")
    graph = load(model, layout, zoneout, output_mode)
    info = {"format": fmt, "path": str(path), "quantized": graph.quantized, "profile": graph.profile}
    if fmt == "evnn":
        from egru_deploy.converters import evnn

        state, extra = evnn.to_state_dict(graph, evnn_model)  # refuses before any file is touched
        with atomic_output(path) as tmp:
            import torch

            torch.save(state, tmp)
        return {**info, **extra}
    with atomic_output(path) as tmp:
        EXPORTERS[fmt](graph, tmp)
    return info
