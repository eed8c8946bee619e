"""EvNN checkpoints (PyTorch state_dicts) <-> float IR.

Everything EvNN's own code trains and saves imports exactly: a bare ``evnn_pytorch.EGRU`` layer,
stacks of layers, and the language, DVS gesture and sMNIST models of EvNN's ``benchmarks/``, as
their scripts save them, plus this package's own ``EGRUNetwork`` checkpoints. ``export`` writes a
float graph back as a state_dict those classes load. docs/evnn_compat.md cites the EvNN code every
rule below comes from; tests/golden/evnn/ holds EvNN's own outputs for each model.

Reading a file
--------------
``load(path)`` reads the file with ``torch.load(path, map_location="cpu", weights_only=True)`` only,
so a hostile pickle cannot run code; its format (a torch.save zip archive or a legacy pickle) is told
by its bytes, not its suffix (``.pt``, ``.pth``, ``.cpt``, ``.ckpt`` or any other name), and errors
never repeat torch's advice to turn safe loading off. A tensor whose strides make elements share
storage (a saved ``expand()``) is refused. The file holds either a bare state_dict (EvNN's language
model, sMNIST and DVS ``best_model.pth``) or a dict wrapping one (``state_dict`` beside ``epoch`` and
``optimizer_state_dict`` in DVS' ``egru-Epoch-<e>-Acc-<a>.pth``; ``model_state_dict``, ``model``,
``net`` ... in other code): the weights are the one nested dict, at any depth up to 3, with EGRU keys.
The dict that directly wraps them may carry ``output_mode`` ("sequence" | "last" | "mean") and
``use_trace`` (bool), which are honoured. Every value of the state_dict must be a tensor.

Layer keys
----------
An EGRU layer is a prefix ``P`` with ``P+kernel`` [I, 3H], ``P+recurrent_kernel`` [H, 3H], ``P+bias``
and ``P+recurrent_bias`` [3H], and ``P+thr`` [H] (EvNN v0.2.0; clamped to [0, 1] as its forward does,
in place) or ``P+thr_reparam`` [H] (pre-0.2: thr = sigmoid(thr_reparam)). ``P+_max_norm``,
``P+dampening_factor`` and ``P+pseudo_derivative_support`` only shape training: they do not change the
forward pass; their values are kept in the graph's metadata so that ``export`` writes them back.
Zoneout p is not in a state_dict: see the layout field ``zoneout``.

Automatic layout
----------------
A prefix shared by every key (``module.`` from DataParallel, ``model.`` from Lightning, ...) is set
aside first; the names below are relative to what is left. The keys then say which model it is:

1. EvNN's ``LanguageModel`` (``benchmarks/lm``, ``EGRU_best_model.cpt``): ``embeddings.weight``
   [V, E], layers ``rnns.<l>.`` and ``decoder.decoder.`` (``bias`` [V]; ``weight`` is the tied
   embedding, stored twice or only once), optionally ``decoder.projection.`` ([E, H] + bias).
   Token input -> embedding -> layers, each layer's events y to the next, the last layer's y ->
   [projection] -> decoder: logits per step (output mode "sequence"; EvNN's log_softmax and its
   (B*T, V) row order are left to the user). The projection's activation is not in the file:
   layers with ``thr_reparam`` are pre-0.2, whose decoder applies ReLU; layers with ``thr`` are taken
   as v0.2.0, whose decoder has none. The branch ``adamw-and-simpler-thresholds`` of
   pascalkuthe/EvNN has ``thr`` and the ReLU: for its files give ``projection_activation: "relu"``.
2. EvNN's ``EGRUDDVSOptimizedModel`` (``benchmarks/dvs_gesture``, ``best_model.pth``,
   ``egru-Epoch-<e>-Acc-<a>.pth``): layers ``layers.<l>.``, ``fc.`` [11, H], and with ``--use-cnn``
   the CNN ``conv.{0,3,6,9,12,15}.``. The input is one (2, 128, 128) event-count frame per step,
   (B, T, 2, 128, 128), as the data pipeline makes it (counts / data_max, outside the model); then
   MaxPool2d(128 // frame_size) (kernel = stride; none when 1); the polarity merge (event_agg_method
   "mean": a 1x1 Conv2d with weights 0.5, 0.5 and no bias, bit-exact with torch.mean over the two
   channels; "diff": weights 1, -1; "none": both channels kept); then either the frame flattened
   (C, H, W) or EvNN's CNN: Conv2d(k 11, stride 4, padding 2) + ReLU (``conv.0``), MaxPool2d(3, 2),
   Conv2d(k 5, padding 2) + ReLU (``conv.3``), MaxPool2d(3, 2), Conv2d(k 3, padding 1) + ReLU
   (``conv.6``), MaxPool2d(3, 2) if frame_size >= 64, Conv2d(k 3, padding 1) + ReLU (``conv.9``),
   MaxPool2d(3, 2) if frame_size >= 128, Conv2d(k 3, padding 1) + ReLU (``conv.12``), Flatten,
   Linear (``conv.15``). Any other ``conv.`` key, kernel size or input channel count is refused.
   Every layer's trace (not its events) goes to the next layer, and the last layer's trace into
   ``fc``. Output: ``fc`` at the last step ("last"), or with use_all_timesteps the mean over the
   steps of ``fc(trace_t)`` ("mean"). frame_size, event_agg_method, use_all_timesteps and zoneout
   are in the run's args.json, not in the checkpoint (DVS fields below). Without the CNN the frame
   follows from the first layer's input size (C * n * n: C = 2 means "none"; C = 1 "mean" or
   "diff", which must be given); with it, frame_size must be given unless only one fits. Without
   ``conv.`` keys, ``layers.<l>.`` + ``fc.`` [11, H] with an input size that such a frame gives also
   fits a plain stack (4.): the file is refused unless ``model`` or a DVS field decides.
3. EvNN's sMNIST ``RNNReadoutWrapper`` (``benchmarks/smnist``, ``egurc-<epoch>.pt``): layers
   ``rnn.rnns.<l>.rnn.`` and ``hidden2out.`` [O, H]. Events y onward; the readout reads the last
   layer's y, or its trace with ``use_output_trace`` (the run's --use-output-trace, not in the
   file); output mode "last" (EvNN's ``hidden2out(...)[:, -1]``).
4. A stack, for anything else: layers under one numbered prefix (``rnns.0.``, ``rnn.0.``,
   ``layers.0.``, ``egru.0.`` ...; all layer prefixes follow one pattern and are ordered by their
   numbers, ``rnns.10.`` after ``rnns.9.``), or one bare layer (no prefix, or ``rnn.``); events y
   onward; optional ``embeddings.weight`` [V, E] (token input); optional readout, the one of
   ``decoder.decoder.``, ``fc.``, ``linear.``, ``classifier.``, ``readout.``, ``output.``,
   ``hidden2out.`` that exists (``weight`` [O, in], optional ``bias`` [O], zeros when absent), after
   ``decoder.projection.`` if present (activation as in 1.); output mode "sequence". When the readout
   has a ``bias`` [V] but no ``weight`` and the file has an embedding [V, in], the readout uses the
   embedding matrix (weight tying). This is also ``egru_deploy.model.EGRUNetwork``'s layout.

Every other key is an error in automatic mode: a part egru-deploy silently dropped would change what
the model computes.

Layout fields
-------------
``layout`` (Python) or ``--layout`` (CLI, a JSON object or a JSON file). Every field is optional.

Naming the parts (an explicit mapping, for files of other code), for example
``{"layers": ["enc.cell0.", "enc.cell1."], "readout": "head.", "embedding": "emb.weight"}``:

- ``layers``: EGRU layer prefixes, input side first; each holds the layer keys above (a missing
  trailing ``.`` is added). With ``layers`` the mapping is explicit: names are full keys of the
  state_dict (nothing is set aside), only the parts named below are read, and other keys are ignored.
- ``embedding``: the key of the [V, E] token embedding (needs ``layers``).
- ``projection``: prefix of a Linear between the last layer and the readout (needs ``layers``;
  activation as in 1.).
- ``readout``: prefix of the readout Linear, tie rule as above (needs ``layers``).
- ``state_dict``: the entry of the checkpoint dict that holds the weights, when several could; a
  path such as ``"checkpoint/ema"`` for nested entries.

What the keys do not say:

- ``model``: "lm" | "dvs" | "smnist" | "stack": which automatic layout (1.-4.) the file is, where its
  keys fit two (not with ``layers``).
- ``use_trace``: true or false: every layer but the last feeds its trace (instead of its events) to
  the next layer; the last layer keeps its model's rule (DVS: its trace into ``fc``; otherwise its
  events, or its trace with ``use_output_trace``). Or a list of booleans, one per layer, the last one
  for what the readout (or, without one, the graph's output) reads.
- ``use_output_trace`` (bool): the readout reads the last layer's trace (sMNIST --use-output-trace).
- ``zoneout``: EvNN's zoneout probability p in [0, 1), one number for every layer or a list with one
  per layer. EvNN applies it in eval too: c' = p * c + (1 - p) * c' before the threshold (c: the
  previous post-reset state). Default 0.
- ``projection_activation``: "relu" | "none", the activation after ``decoder.projection`` (overrides
  the rule in 1.).
- ``output_mode``: "sequence", "last" or "mean".
- DVS fields (2.): ``frame_size`` (integer, 1-128), ``event_agg_method`` ("mean" | "diff" | "none";
  EvNN's default "bool" gives integer frames, which its EGRU refuses), ``use_all_timesteps`` (bool),
  or ``dvs_args``: the path of the run's ``args.json`` (dvs128.py writes it beside the checkpoint),
  from which frame_size, event_agg_method, use_all_timesteps and zoneout are read (fields given
  beside it win), and use_cnn, rnn_type, num_layers and units are checked against the keys. Only the
  file named is read; a relative path is relative to the working folder.

Precedence: ``load(..., output_mode=...)`` > layout ``output_mode`` > the wrapping dict's
``output_mode`` > the model's own (1.-4.); use_trace: layout > the wrapping dict's > the model's.

Export
------
``export(graph, path)`` / ``to_state_dict(graph)`` write a float graph as a bare state_dict (what
EvNN's scripts save and load). Each layer's keys come in ``evnn_pytorch.EGRU``'s order, shapes and
dtypes: ``_max_norm`` [1], ``kernel``, ``recurrent_kernel``, ``bias``, ``recurrent_bias``,
``dampening_factor`` [1], ``pseudo_derivative_support`` [1], ``thr`` [H] (``thr_reparam`` =
logit(thr) for a graph imported from a pre-0.2 file); the three training constants are the imported
file's (graph metadata) or EvNN's defaults -1.0, 0.7, 1.0; a tied decoder is one tensor saved under
both names, as EvNN saves it. The model
layout (``model``: "auto" or one of "lm", "dvs", "smnist", "stack", "layer") is, automatically: the
one the graph was imported from if it still fits; else "dvs" for a frame input or a graph whose
every layer feeds its trace on; else "lm" for a token input that fits EvNN's ``LanguageModel``
(tied decoder, no trace); else "layer" (bare keys) for a single layer without readout; else "stack"
(``embeddings.weight``, ``rnns.<l>.``, ``fc.`` or ``decoder.projection.`` + ``decoder.decoder.``,
``EGRUNetwork``'s names). Quantized graphs are refused: EvNN runs float weights. What a
state_dict cannot hold (zoneout, trace rules, DVS pipeline settings, output mode) is returned as
notes and as the layout that imports the file back to the same graph.
"""
from __future__ import annotations

import math
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from egru_deploy import ir, safe_io
from egru_deploy.errors import ConversionError

TRAINING_ONLY = ("dampening_factor", "pseudo_derivative_support", "_max_norm")
TRAINING_DEFAULTS = {"_max_norm": -1.0, "dampening_factor": 0.7, "pseudo_derivative_support": 1.0}
READOUT_PREFIXES = ("decoder.decoder.", "fc.", "linear.", "classifier.", "readout.", "output.", "hidden2out.")
PROJECTION_PREFIX = "decoder.projection."
EMBEDDING_KEY = "embeddings.weight"
MODELS = ("lm", "dvs", "smnist", "stack")
MODEL_NAMES = {"lm": "EvNN's LanguageModel (benchmarks/lm)",
               "dvs": "EvNN's DVS gesture model (EGRUDDVSOptimizedModel, benchmarks/dvs_gesture)",
               "smnist": "EvNN's sMNIST model (RNNReadoutWrapper, benchmarks/smnist)",
               "stack": "a stack of EGRU layers", "layer": "one bare EGRU layer"}
PROJECTION_ACTIVATIONS = ("relu", "none")
EVENT_AGG_METHODS = ("mean", "diff", "none")
DVS_FIELDS = ("frame_size", "event_agg_method", "use_all_timesteps", "dvs_args")
LAYOUT_FIELDS = ("model", "layers", "embedding", "projection", "readout", "state_dict", "use_trace",
                 "use_output_trace", "zoneout", "projection_activation", "output_mode", *DVS_FIELDS)
LAYOUT_EXAMPLE = '{"layers": ["enc.cell0.", "enc.cell1."], "readout": "head.", "embedding": "emb.weight"}'
HOW_TO_MAP = (f"pass an explicit mapping: layout={{...}} in Python or --layout '{{...}}' (JSON object or file) "
              f"on the command line, e.g. {LAYOUT_EXAMPLE}")
MAX_WRAPPER_DEPTH = 3
KEYS_SHOWN = 8

# EvNN's DVS gesture model (benchmarks/dvs_gesture/models.py, EGRUDDVSModel.__init__).
DVS_SENSOR = 128  # tonic.datasets.DVSGesture.sensor_size (128, 128, 2)
DVS_FRAME = (2, DVS_SENSOR, DVS_SENSOR)
DVS_CLASSES = 11  # len(tonic.datasets.DVSGesture.classes): fc's outputs
DVS_CNN = ((0, 11, 4, 2), (3, 5, 1, 2), (6, 3, 1, 1), (9, 3, 1, 1), (12, 3, 1, 1))  # (index, kernel, stride, padding)
DVS_CNN_LINEAR = 15  # conv.15 = Linear(256, 512) after Flatten
DVS_CNN_INDICES = (0, 3, 6, 9, 12, 15)
DVS_CNN_WIDTHS = (64, 192, 384, 256, 256, 512)  # EvNN's fixed widths (conv.0 ... conv.15 outputs)
DVS_POOL = (3, 2)  # MaxPool2d(kernel_size=3, stride=2) after conv.0, conv.3, and conv.6 / conv.9 by frame size
MERGE_WEIGHTS = {"mean": (0.5, 0.5), "diff": (1.0, -1.0)}


def load(path: str | os.PathLike, layout: dict | None = None, output_mode: str | None = None) -> ir.Graph:
    """Read an EvNN checkpoint file safely and convert it (see the module docstring)."""
    path = Path(path)
    return from_state_dict(_read(path), layout=layout, output_mode=output_mode, source=str(path))


def from_state_dict(sd: dict, layout: dict | None = None, output_mode: str | None = None,
                    source: str = "<state_dict>") -> ir.Graph:
    """Convert a state_dict of tensors, or a checkpoint dict wrapping one, to a float graph."""
    if layout is not None:
        _check_layout(layout, source)
    layout = dict(layout or {})
    explicit = "layers" in layout
    weights, wrapper = _unwrap(sd, source, layout.get("state_dict"))
    _check_state_dict(weights, source)
    if explicit:
        reader = _Reader(weights, source, shared_prefix="")
        parts = _explicit_parts(layout, reader)
    else:
        shared = _shared_prefix(list(weights))
        reader = _Reader({k[len(shared):]: v for k, v in weights.items()}, source, shared)
        parts = _automatic_parts(reader, layout)
    dvs = _dvs_settings(reader, parts, layout) if parts["model"] == "dvs" else None
    mode = output_mode or layout.get("output_mode") or wrapper.get("output_mode", _default_output_mode(parts, dvs))
    if not isinstance(mode, str) or mode not in ir.OUTPUT_MODES:
        raise ConversionError(f"{source}: output_mode must be one of {ir.OUTPUT_MODES}, got {_describe(mode)}")
    wrapper_trace = wrapper.get("use_trace")
    if wrapper_trace is not None and not isinstance(wrapper_trace, bool):
        raise ConversionError(f"{source}: use_trace must be true or false, got {_describe(wrapper_trace)}")
    n = len(parts["layers"])
    feeds = _feeds_trace(source, parts["model"], n, layout, wrapper_trace)
    if "zoneout" in layout or dvs is None or dvs["args_path"] is None:
        zoneout = _zoneouts(n, layout.get("zoneout", 0.0), f"{source}: layout zoneout")
    else:
        zoneout = _zoneouts(n, dvs["zoneout"], f"{source}: dvs_args {dvs['args_path']}: zoneout")
    graph = _build(reader, parts, feeds, zoneout, mode, dvs, layout)
    if not explicit:
        unused = sorted(reader.unused())
        if unused:
            raise ConversionError(
                f"{source}: keys not understood: {_key_list(reader, unused)}; dropping them could change what "
                f"the model computes; to name the parts to deploy, {HOW_TO_MAP}")
    return graph


# --------------------------------------------------------------------------- reading the file

# How torch names the object safe loading refused, across versions (newest wording first).
BLOCKED_GLOBAL_PATTERNS = (
    r"GLOBAL (\S+) was not an allowed global",
    r"unsupported GLOBAL (\S+) whose module",
    r"Unsupported global: GLOBAL (\S+)",
    r"\bGLOBAL (\S+)",
    r"but got <class '([^']+)'>",
    r"unrecognized function (\S+)",
)
# Torch's advice on disabling or loosening safe loading: never passed on to the user.
SAFE_LOADING_ADVICE = re.compile(r"weights.only|safe_globals|trust", re.IGNORECASE)
SAVE_TENSORS = "save tensors only, e.g. torch.save(model.state_dict(), path)"


def _read(path: Path):
    """Unpickle a checkpoint with safe loading only; its format is told by content, not by suffix."""
    safe_io.regular_file(path, ConversionError)
    _check_container(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols on stderr; the CLI promises one line per error.
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise ConversionError(f"{path}: cannot read the file ({e.strerror or _reason(e)})") from None
    except pickle.UnpicklingError as e:
        name = _blocked_global(e)
        if name:
            raise ConversionError(f"{path}: holds a Python object ({name}) that safe loading (weights_only) "
                                  f"refuses; {SAVE_TENSORS}") from None
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint: safe loading refuses its pickle "
                              f"({_reason(e)})") from None
    except Exception as e:  # noqa: BLE001 - any failure to parse untrusted bytes means a corrupt file
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{_reason(e)})") from None


def _check_container(path: Path) -> None:
    """A torch.save zip archive (state_dict inside: data.pkl) or a legacy pickle, by the file's bytes."""
    kind = safe_io.sniff(path)
    if kind == "pickle":
        return
    if kind != "zip":
        found = f"it is {safe_io.KINDS[kind]}" if kind else "neither a zip archive nor a pickle"
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({found}; expected a file written by "
                              f"torch.save)")
    try:
        with zipfile.ZipFile(path) as archive:
            records = {name.split("/", 1)[-1] for name in archive.namelist()}
    except Exception as e:  # noqa: BLE001 - zipfile: BadZipFile, NotImplementedError (versions), OSError ...
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint (damaged zip archive: "
                              f"{safe_io.first_line(e)})") from None
    if "constants.pkl" in records:  # torch.load would hand it to torch.jit.load
        raise ConversionError(f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint; {SAVE_TENSORS}")
    if "data.pkl" not in records:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint (a zip archive without data.pkl, "
                              f"e.g. an .npz; expected a file written by torch.save)")


def _messages(e: BaseException) -> list[str]:
    """The text of ``e`` and of the exceptions it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    while e is not None and e not in chain and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return [str(x) for x in chain]


def _blocked_global(e: BaseException) -> str | None:
    """The global a weights_only load refused: an attribute of the exception if torch gives one, else its text."""
    for attr in ("global_name", "full_path", "name"):
        value = getattr(e, attr, None)
        if isinstance(value, str) and value:
            return value
    for pattern in BLOCKED_GLOBAL_PATTERNS:
        for text in _messages(e):
            found = re.search(pattern, text)
            if found:
                return found.group(1).rstrip(".,;:'\"`")
    return None


def _reason(e: BaseException) -> str:
    """First line of the innermost message that gives no advice about turning safe loading off."""
    for text in reversed(_messages(e)):
        line = safe_io.first_line(text) if text.strip() else ""
        if line and not SAFE_LOADING_ADVICE.search(line):
            return line
    return type(e).__name__


def _holds_egru(d: dict) -> bool:
    return any(isinstance(k, str) and (k == "recurrent_kernel" or k.endswith(".recurrent_kernel")) for k in d)


def _nested_with_egru(d: dict, path: str, depth: int):
    """Yield ``(path, state_dict, wrapper)`` for each dict holding EGRU keys below ``d``."""
    for key, value in d.items():
        if not isinstance(value, dict):
            continue
        where = f"{path}{key}"
        if _holds_egru(value):
            yield where, value, d
        elif depth > 1:
            yield from _nested_with_egru(value, where + "/", depth - 1)


def _unwrap(obj, source: str, entry: str | None) -> tuple[dict, dict]:
    """Return the state_dict and the dict wrapping it (empty for a bare state_dict)."""
    if not isinstance(obj, dict):
        raise ConversionError(f"{source}: expected a state_dict (a dict of tensors) or a dict holding one, "
                              f"got {type(obj).__name__}")
    if not obj:
        raise ConversionError(f"{source}: the checkpoint is an empty dict")
    if entry is not None:
        wrapper, weights = {}, obj
        for name in entry.split("/"):  # a path such as "checkpoint/state_dict", as errors print them
            if not isinstance(weights.get(name), dict):
                raise ConversionError(f"{source}: layout state_dict {entry!r}: {name!r} is not a dict entry of the "
                                      f"checkpoint (entries: {', '.join(map(str, list(weights)[:KEYS_SHOWN]))})")
            wrapper, weights = weights, weights[name]
        return weights, wrapper
    if _holds_egru(obj):
        return obj, {}
    found = list(_nested_with_egru(obj, "", MAX_WRAPPER_DEPTH))
    if len(found) > 1:
        raise ConversionError(f"{source}: several entries hold EGRU weights ({', '.join(p for p, _, _ in found)}); "
                              f"choose one with the layout field \"state_dict\", e.g. layout={{\"state_dict\": "
                              f"\"{found[0][0]}\"}} in Python or --layout '{{\"state_dict\": \"{found[0][0]}\"}}'")
    if found:
        return found[0][1], found[0][2]
    # No EGRU keys anywhere: hand on the one dict of tensors, whose keys the layout error then lists.
    tensor_dicts = [d for d in (obj, *obj.values()) if isinstance(d, dict) and _all_tensors(d)]
    if len(tensor_dicts) == 1:
        return tensor_dicts[0], (obj if tensor_dicts[0] is not obj else {})
    raise ConversionError(f"{source}: no EGRU weights found (checkpoint entries: "
                          f"{', '.join(map(str, list(obj)[:KEYS_SHOWN]))}); {HOW_TO_MAP}")


def _all_tensors(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _describe(value) -> str:
    return repr(value) if isinstance(value, (str, bool, int, float, type(None))) else type(value).__name__


def _check_state_dict(sd: dict, source: str) -> None:
    if not sd:
        raise ConversionError(f"{source}: the state_dict is empty")
    for key, value in sd.items():
        if not isinstance(key, str):
            raise ConversionError(f"{source}: state_dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{source}: {key}: expected a tensor, got {type(value).__name__}")


def _shared_prefix(keys: list[str]) -> str:
    """Leading dotted components every key shares (``module.``, ``model.`` ...)."""
    prefix = ""
    for part in keys[0].split(".")[:-1]:
        candidate = prefix + part + "."
        if not all(k.startswith(candidate) for k in keys):
            break
        prefix = candidate
    return prefix


# --------------------------------------------------------------------------- tensors

class _Reader:
    """Hands out state_dict tensors as checked float32 arrays, naming the full key in every error."""

    def __init__(self, sd: dict, source: str, shared_prefix: str):
        self.sd, self.source, self.shared_prefix = sd, source, shared_prefix
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self.sd

    def name(self, key: str) -> str:
        return self.shared_prefix + key

    def error(self, message: str) -> ConversionError:
        return ConversionError(f"{self.source}: {message}")

    def mark_used(self, key: str) -> None:
        self.used.add(key)

    def unused(self) -> set[str]:
        return set(self.sd) - self.used

    def array(self, key: str, shape: tuple, meaning: str) -> np.ndarray:
        """``key`` as float32; ``shape`` entries of None are free; every size must be >= 1."""
        if key not in self.sd:
            raise self.error(f"{self.name(key)}: missing (expected {meaning})")
        self.used.add(key)
        t = self.sd[key]
        name = self.name(key)
        if t.layout != torch.strided or t.device.type != "cpu":
            raise self.error(f"{name}: expected a dense CPU tensor, got layout {t.layout} on {t.device.type}")
        if not t.is_floating_point():
            raise self.error(f"{name}: expected a floating-point tensor, got {t.dtype}")
        actual = tuple(t.shape)
        if len(actual) != len(shape) or any(e is not None and e != a for e, a in zip(shape, actual)) \
                or 0 in actual:
            expected = ", ".join("*" if e is None else str(e) for e in shape)
            raise self.error(f"{name}: expected shape [{expected}] ({meaning}), got {list(actual)}")
        if _shares_elements(actual, t.stride()):  # a saved expand(): converting would broadcast or exhaust memory
            raise self.error(f"{name}: strides {list(t.stride())} make elements of shape {list(actual)} share "
                             f"storage (an expanded view); expected a tensor holding every element")
        arr = t.detach().to(torch.float32).numpy()
        if not np.all(np.isfinite(arr)):
            raise self.error(f"{name}: contains NaN or inf (or values beyond float32 range)")
        return arr


def _shares_elements(shape: tuple, stride: tuple) -> bool:
    """Whether two indices reach one storage element (zero or interleaved strides).

    torch checks at load that the storage holds the view; only aliasing is left to refuse.
    """
    span = 1  # storage elements the smaller-stride dimensions reach
    for step, size in sorted((st, sz) for sz, st in zip(shape, stride) if sz > 1):
        if step < span:
            return True
        span += (size - 1) * step
    return False


def _key_list(reader: _Reader, keys: list[str]) -> str:
    shown = [f"{reader.name(k)}{list(reader.sd[k].shape)}" for k in keys[:KEYS_SHOWN]]
    more = f" ... (+{len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else ""
    return ", ".join(shown) + more


# --------------------------------------------------------------------------- layouts

def _check_layout(layout, source: str) -> None:
    if not isinstance(layout, dict):
        raise ConversionError(f"{source}: layout must be a dict such as {LAYOUT_EXAMPLE}")
    unknown = sorted(set(layout) - set(LAYOUT_FIELDS))
    if unknown:
        raise ConversionError(f"{source}: layout fields {unknown} unknown (expected {', '.join(LAYOUT_FIELDS)})")
    if "layers" in layout:
        layers = layout["layers"]
        if not isinstance(layers, list) or not layers or not all(isinstance(p, str) for p in layers):
            raise ConversionError(f"{source}: layout \"layers\" must be a non-empty list of key prefixes, "
                                  f"e.g. {LAYOUT_EXAMPLE}")
        automatic_only = [name for name in ("model", *DVS_FIELDS) if name in layout]
        if automatic_only:
            raise ConversionError(f"{source}: layout {automatic_only} choose or complete the automatic layout; with "
                                  f"\"layers\" name the parts yourself (and use_trace, use_output_trace, output_mode)")
    else:
        parts = [name for name in ("embedding", "projection", "readout") if name in layout]
        if parts:
            raise ConversionError(f"{source}: layout {parts} needs \"layers\" too (an explicit mapping names "
                                  f"every part), e.g. {LAYOUT_EXAMPLE}")
    for name in ("embedding", "projection", "readout", "state_dict", "output_mode", "dvs_args"):
        if name in layout and not isinstance(layout[name], str):
            raise ConversionError(f"{source}: layout {name!r} must be a string, got {_describe(layout[name])}")
    for name, allowed in (("model", MODELS), ("projection_activation", PROJECTION_ACTIVATIONS),
                          ("event_agg_method", EVENT_AGG_METHODS)):
        if name in layout and layout[name] not in allowed:
            extra = (" (EvNN's 'bool' makes integer frames, which its EGRU refuses)"
                     if name == "event_agg_method" and layout[name] == "bool" else "")
            raise ConversionError(f"{source}: layout {name} must be one of {', '.join(map(repr, allowed))}, got "
                                  f"{_describe(layout[name])}{extra}")
    for name in ("use_output_trace", "use_all_timesteps"):
        if name in layout and not isinstance(layout[name], bool):
            raise ConversionError(f"{source}: layout {name} must be true or false, got {_describe(layout[name])}")
    if "use_trace" in layout:
        value = layout["use_trace"]
        if not (isinstance(value, bool) or (isinstance(value, list) and value
                                            and all(isinstance(v, bool) for v in value))):
            raise ConversionError(f"{source}: use_trace must be true or false, or a list of them (one per EGRU "
                                  f"layer), got {_describe(value)}")
    if "frame_size" in layout:
        _check_frame_size(layout["frame_size"], f"{source}: layout frame_size")
    if "zoneout" in layout:
        value = layout["zoneout"]
        for p in value if isinstance(value, list) else [value]:
            check_zoneout(p, f"{source}: layout zoneout")


def check_zoneout(p, name: str) -> float:
    """A zoneout probability in [0, 1) (EvNN's ``zoneout``), else a ConversionError naming ``name``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0.0 <= p < 1.0):
        raise ConversionError(f"{name}: expected a probability in [0, 1) (EvNN's zoneout p), got {_describe(p)}")
    return float(p)


def _check_frame_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= DVS_SENSOR:
        raise ConversionError(f"{name}: expected an integer in 1..{DVS_SENSOR} (dvs128.py --frame-size), "
                              f"got {_describe(value)}")
    return value


def _as_prefix(prefix: str) -> str:
    return prefix if prefix == "" or prefix.endswith(".") else prefix + "."


def _explicit_parts(layout: dict, reader: _Reader) -> dict:
    parts = {
        "model": "stack",
        "layers": [_as_prefix(p) for p in layout["layers"]],
        "embedding": layout.get("embedding"),
        "projection": _as_prefix(layout["projection"]) if "projection" in layout else None,
        "readout": _as_prefix(layout["readout"]) if "readout" in layout else None,
        "cnn": False,
    }
    if parts["embedding"] is not None and parts["embedding"] not in reader:
        raise reader.error(f"layout embedding {parts['embedding']!r}: no such key")
    for role in ("projection", "readout"):
        prefix = parts[role]
        if prefix is not None and not _has_linear(reader, prefix):
            raise reader.error(f"layout {role} {prefix!r}: no key {prefix}weight or {prefix}bias")
    return parts


def _has_linear(reader: _Reader, prefix: str) -> bool:
    return prefix + "weight" in reader or prefix + "bias" in reader


def _number_key(prefix: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", prefix))


def _automatic_parts(reader: _Reader, layout: dict) -> dict:
    leaf = "recurrent_kernel"
    prefixes = [k[:-len(leaf)] for k in reader.sd if k == leaf or k.endswith("." + leaf)]
    if not prefixes:
        keys = list(reader.sd)
        raise reader.error(
            f"no EGRU layers recognised among {len(keys)} keys: {_key_list(reader, keys)}; a layer is a prefix P "
            f"with P+kernel, P+recurrent_kernel, P+bias, P+recurrent_bias, P+thr; {HOW_TO_MAP}")
    patterns = sorted({re.sub(r"\d+", "#", p) for p in prefixes})
    if len(patterns) > 1:
        raise reader.error(f"EGRU layers under several naming patterns ({', '.join(reader.name(p) for p in patterns)}); "
                           f"to give their order, {HOW_TO_MAP}")
    prefixes.sort(key=_number_key)
    numbers = [_number_key(p) for p in prefixes]
    if len(numbers[0]) == 1 and [n[0] for n in numbers] != list(range(numbers[0][0], numbers[0][0] + len(numbers))):
        raise reader.error(f"EGRU layer numbers are not consecutive ({', '.join(reader.name(p) for p in prefixes)}): "
                           f"a layer is missing")
    readouts = [p for p in READOUT_PREFIXES if _has_linear(reader, p)]
    if len(readouts) > 1:
        raise reader.error(f"several readouts found ({', '.join(reader.name(p) for p in readouts)}); "
                           f"to choose one, {HOW_TO_MAP}")
    projection = PROJECTION_PREFIX if _has_linear(reader, PROJECTION_PREFIX) else None
    if projection and not readouts:
        raise reader.error(f"{reader.name(PROJECTION_PREFIX)}* found but no readout "
                           f"({reader.name('decoder.decoder.weight')} missing)")
    parts = {
        "layers": prefixes,
        "embedding": EMBEDDING_KEY if EMBEDDING_KEY in reader else None,
        "projection": projection,
        "readout": readouts[0] if readouts else None,
        "cnn": any(k.startswith("conv.") for k in reader.sd),
    }
    parts["model"] = _which_model(reader, parts, patterns[0], layout)
    return parts


def _which_model(reader: _Reader, parts: dict, pattern: str, layout: dict) -> str:
    """The automatic layout (module docstring 1.-4.) the keys say, or the one the layout chooses."""
    dvs_keys = pattern == "layers.#." and parts["readout"] == "fc." and parts["embedding"] is None \
        and parts["projection"] is None
    if pattern == "rnn.rnns.#.rnn." and parts["readout"] == "hidden2out.":
        found = "smnist"
    elif pattern == "rnns.#." and parts["embedding"] and parts["readout"] == "decoder.decoder.":
        found = "lm"
    elif dvs_keys and parts["cnn"]:
        found = "dvs"
    elif dvs_keys and _could_be_dvs_flat(reader, parts):
        found = None  # EvNN's DVS model without CNN, or a plain stack: only the user can say
    else:
        found = "stack"
    dvs_fields = [name for name in DVS_FIELDS if name in layout]
    wanted = layout.get("model") or ("dvs" if dvs_fields else None)
    if wanted is None:
        if found is None:
            raise reader.error(_ambiguous_dvs(reader, parts))
        return found
    if dvs_fields and wanted != "dvs":
        raise reader.error(f"layout {dvs_fields} describe {MODEL_NAMES['dvs']}, not model {wanted!r}")
    needs = {"dvs": (dvs_keys, "layers.<l>.* and fc.* (and optionally conv.*), no embedding or projection"),
             "lm": (parts["embedding"] is not None and parts["readout"] is not None,
                    "embeddings.weight and a readout (decoder.decoder.*)"),
             "smnist": (parts["readout"] is not None and parts["embedding"] is None, "a readout (hidden2out.*)"),
             "stack": (True, "")}
    ok, what = needs[wanted]
    if not ok:
        how = "model" if "model" in layout else f"{dvs_fields} (DVS fields)"
        readout = reader.name(parts["readout"]) + "*" if parts["readout"] else "none"
        raise reader.error(f"layout {how}: {MODEL_NAMES[wanted]} needs {what}; this file's layers are "
                           f"{reader.name(parts['layers'][0])}* with readout {readout}")
    return wanted  # "stack" on a file with conv.* keys: they are reported as not understood


def _ambiguous_dvs(reader: _Reader, parts: dict) -> str:
    first = reader.sd[parts["layers"][0] + "kernel"]
    inputs = int(first.shape[0]) if first.dim() == 2 else 0
    frames = _flat_frames(inputs)
    n, channels = frames[0][1], frames[0][2]
    return (f"{reader.name(parts['layers'][0])}* ... + {reader.name('fc.')}* with {inputs} inputs fit two layouts: "
            f"{MODEL_NAMES['dvs']}, whose input is (B, T, 2, 128, 128) event frames max-pooled to {n}x{n} "
            f"({channels} channel{'s' if channels > 1 else ''}) with every layer's trace onward and into fc, "
            f"and a plain stack of {inputs} features per step with events onward; choose with the layout field "
            f"\"model\": \"dvs\" (or give the run's event_agg_method / dvs_args, e.g. --layout "
            f"'{{\"event_agg_method\": \"mean\"}}') or \"model\": \"stack\"")


def _default_output_mode(parts: dict, dvs: dict | None) -> str:
    if dvs is not None:
        return "mean" if dvs["use_all_timesteps"] else "last"
    return "last" if parts["model"] == "smnist" else "sequence"


def _feeds_trace(source: str, model: str, n: int, layout: dict, wrapper_trace: bool | None) -> list[bool]:
    """Per layer: does its trace (instead of its events) go on, to the next layer or the readout?"""
    feeds = [model == "dvs"] * n
    inner = layout.get("use_trace", wrapper_trace)
    if isinstance(inner, list):
        if len(inner) != n:
            raise ConversionError(f"{source}: layout use_trace: expected one entry per EGRU layer ({n}), got "
                                  f"{len(inner)}")
        feeds = list(inner)
        last = layout.get("use_output_trace")
        if last is not None and last != feeds[-1]:
            raise ConversionError(f"{source}: layout use_output_trace {str(last).lower()} contradicts the last entry "
                                  f"of use_trace ({str(feeds[-1]).lower()})")
        return feeds
    if inner is not None:
        feeds[:-1] = [inner] * (n - 1)
    if "use_output_trace" in layout:
        feeds[-1] = layout["use_output_trace"]
    return feeds


def _zoneouts(n: int, value, name: str) -> list[float]:
    """One zoneout probability per layer from a number or a list (``name`` says where it came from)."""
    if isinstance(value, list):
        if len(value) != n:
            raise ConversionError(f"{name}: expected one probability per EGRU layer ({n}), got {len(value)}")
        return [check_zoneout(p, name) for p in value]
    return [check_zoneout(value, name)] * n


# --------------------------------------------------------------------------- the DVS gesture model

def _flat_frames(inputs: int) -> list[tuple[int, int, int]]:
    """The input max-pools ``(kernel, n, channels)`` for which EvNN's DVS model without CNN has
    ``inputs`` features: its own count (sensor**2 // kernel**2 * channels) and the pooled frame's agree."""
    found = {}
    for frame_size in range(1, DVS_SENSOR + 1):
        kernel = DVS_SENSOR // frame_size
        n = DVS_SENSOR // kernel
        for channels in (1, 2):
            if n * n * channels == inputs and DVS_SENSOR ** 2 // kernel ** 2 * channels == inputs:
                found.setdefault(kernel, (kernel, n, channels))
    return list(found.values())


def _could_be_dvs_flat(reader: _Reader, parts: dict) -> bool:
    first, fc = reader.sd.get(parts["layers"][0] + "kernel"), reader.sd.get("fc.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 2:
        return False
    outputs = fc.shape[0] if isinstance(fc, torch.Tensor) and fc.dim() == 2 else None
    return outputs == DVS_CLASSES and bool(_flat_frames(int(first.shape[0])))


def _cnn_plan(frame_size: int) -> tuple[bool, bool]:
    """EvNN's optional max-pools (after conv.6: frame_size >= 64; after conv.9: frame_size >= 128)."""
    return frame_size >= 64, frame_size >= 128


def _window(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _cnn_side(frame_size: int) -> int:
    """Side of the CNN's last map for ``frame_size`` (< 1 where EvNN's CNN cannot run)."""
    side = DVS_SENSOR // (DVS_SENSOR // frame_size)
    pools = (True, True, *_cnn_plan(frame_size), False)
    for (_, kernel, stride, padding), pool in zip(DVS_CNN, pools):
        side = _window(side, kernel, stride, padding)
        if side < 1:
            return 0
        if pool:
            side = _window(side, *DVS_POOL, 0)
            if side < 1:
                return 0
    return side


def _cnn_frame_sizes(channels: int, linear_in: int) -> dict[tuple, list[int]]:
    """Frame sizes whose CNN output (``channels`` x side x side) fits ``linear_in``, by network they give."""
    groups: dict[tuple, list[int]] = {}
    for frame_size in range(1, DVS_SENSOR + 1):
        side = _cnn_side(frame_size)
        if side and channels * side * side == linear_in:
            groups.setdefault((DVS_SENSOR // frame_size, *_cnn_plan(frame_size)), []).append(frame_size)
    return groups


def _read_dvs_args(source: str, path: str) -> dict:
    """The fields of a dvs128.py ``args.json`` (opts.store_args) that the checkpoint lacks."""
    doc = safe_io.read_json(path, ConversionError)
    where = f"{source}: dvs_args {path}"
    if not isinstance(doc, dict):
        raise ConversionError(f"{where}: expected a JSON object (dvs128.py's args.json)")
    expected = {"frame_size": int, "event_agg_method": str, "use_all_timesteps": bool, "zoneout": (int, float),
                "use_cnn": bool, "flatten_frame": bool, "rnn_type": str, "num_layers": int, "units": int}
    out = {}
    for name, kind in expected.items():
        if name not in doc:
            continue
        value = doc[name]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ConversionError(f"{where}: {name!r} is {_describe(value)}, expected "
                                  f"{'a boolean' if kind is bool else 'a number' if kind != str else 'a string'}")
        out[name] = value
    if "rnn_type" in out and out["rnn_type"].lower() != "egru":
        raise ConversionError(f"{where}: rnn_type {out['rnn_type']!r}: the run trained no EGRU")
    return out


def _dvs_settings(reader: _Reader, parts: dict, layout: dict) -> dict:
    """frame_size, event_agg_method, use_all_timesteps, zoneout (layout > args.json) and the
    front-end they give, checked against the keys."""
    source = reader.source
    args = _read_dvs_args(source, layout["dvs_args"]) if "dvs_args" in layout else {}
    where = {name: f"layout {name}" if name in layout else
             f"dvs_args {layout['dvs_args']}: {name}" if name in args else name
             for name in ("frame_size", "event_agg_method", "use_all_timesteps", "zoneout")}
    settings = {name: layout.get(name, args.get(name)) for name in where}
    settings["args_path"] = layout.get("dvs_args")
    if settings["frame_size"] is not None:
        _check_frame_size(settings["frame_size"], f"{source}: {where['frame_size']}")
    if settings["event_agg_method"] is not None and settings["event_agg_method"] not in EVENT_AGG_METHODS:
        raise ConversionError(f"{source}: {where['event_agg_method']}: {settings['event_agg_method']!r} gives frames "
                              f"EvNN's EGRU cannot read (expected one of {', '.join(map(repr, EVENT_AGG_METHODS))})")
    settings["use_all_timesteps"] = bool(settings["use_all_timesteps"])
    settings["zoneout"] = 0.0 if settings["zoneout"] is None else settings["zoneout"]
    if "use_cnn" in args and args["use_cnn"] != parts["cnn"]:
        raise reader.error(f"dvs_args {layout['dvs_args']}: use_cnn is {str(args['use_cnn']).lower()} but the "
                           f"checkpoint {'has' if parts['cnn'] else 'has no'} conv.* keys")
    if "num_layers" in args and args["num_layers"] != len(parts["layers"]):
        raise reader.error(f"dvs_args {layout['dvs_args']}: num_layers is {args['num_layers']} but the checkpoint "
                           f"has {len(parts['layers'])} EGRU layers")
    first = parts["layers"][0] + "kernel"
    if first not in reader or reader.sd[first].dim() != 2:
        return {**settings, "frontend": None}  # _egru reports the layer
    inputs = int(reader.sd[first].shape[0])
    if parts["cnn"]:
        settings["frontend"] = _cnn_frontend(reader, settings, where)
    else:
        settings["frontend"] = _flat_frontend(reader, settings, where, reader.name(first), inputs)
    return settings


def _merge_layer(method: str) -> list:
    if method == "none":
        return []
    weight = np.asarray(MERGE_WEIGHTS[method], np.float32).reshape(1, 2, 1, 1)
    return [ir.Conv2d(weight, np.zeros(1, np.float32))]


def _input_pool(frame_size: int) -> list:
    kernel = DVS_SENSOR // frame_size
    return [ir.Pool2d("max", kernel, kernel)] if kernel > 1 else []


def _flat_frontend(reader: _Reader, settings: dict, where: dict, first: str, inputs: int) -> list:
    source = reader.source
    frames = _flat_frames(inputs)
    if not frames:
        raise reader.error(f"{first}: {inputs} inputs are no frame of EvNN's DVS model without CNN "
                           f"((128 // k)**2 features per channel, 1 or 2 channels)")
    method = settings["event_agg_method"]
    frame_size = settings["frame_size"]
    if frame_size is not None:
        kernel = DVS_SENSOR // frame_size
        match = [f for f in frames if f[0] == kernel]
        if not match:
            raise ConversionError(f"{source}: {where['frame_size']} {frame_size} max-pools the 128x128 frame to "
                                  f"{DVS_SENSOR // kernel}x{DVS_SENSOR // kernel}, but {first} has {inputs} inputs")
        frames = match
    if len(frames) > 1:
        raise ConversionError(f"{source}: {first}: {inputs} inputs fit several frame sizes; give the run's frame_size")
    kernel, n, channels = frames[0]
    if method is None:
        if channels == 1:
            raise ConversionError(
                f"{source}: event_agg_method is not in the checkpoint: {first} reads one {n}x{n} channel per step, "
                f"the polarity 'mean' or 'diff' of the run (args.json 'event_agg_method'); give it: layout "
                f"{{\"event_agg_method\": \"mean\"}} (or \"diff\") or {{\"dvs_args\": \"path/args.json\"}}")
        method = "none"
    if (channels == 2) != (method == "none"):
        raise ConversionError(f"{source}: {where['event_agg_method']} {method!r} gives {3 - channels} channel(s) per "
                              f"pixel, but {first} has {inputs} = {channels} x {n}x{n} inputs")
    settings["event_agg_method"] = method
    settings["frame_size"] = frame_size if frame_size is not None else n
    return _input_pool(settings["frame_size"]) + _merge_layer(method)


def _cnn_frontend(reader: _Reader, settings: dict, where: dict) -> list:
    source = reader.source
    known = {f"conv.{i}.{p}" for i in DVS_CNN_INDICES for p in ("weight", "bias")}
    for key in reader.sd:
        if key.startswith("conv.") and key not in known:
            raise reader.error(f"{reader.name(key)}: not a layer of EvNN's DVS CNN (conv.0, 3, 6, 9, 12: Conv2d with "
                               f"kernels 11, 5, 3, 3, 3; conv.15: Linear; conv.1, 2, 4, ... are ReLU, MaxPool2d, "
                               f"Identity, Flatten without weights)")
    method = settings["event_agg_method"]
    if method is None:
        raise ConversionError(
            f"{source}: event_agg_method is not in the checkpoint: EvNN's CNN reads the polarity 'mean' or 'diff' "
            f"of the run (args.json 'event_agg_method'); give it: layout {{\"event_agg_method\": \"mean\"}} (or "
            f"\"diff\") or {{\"dvs_args\": \"path/args.json\"}}")
    if method == "none":
        raise ConversionError(f"{source}: {where['event_agg_method']} 'none' keeps 2 channels, but EvNN's CNN reads "
                              f"one (its forward unsqueezes a merged frame; with 'none' it fails)")
    convs, channels = [], 1
    for index, kernel, stride, padding in DVS_CNN:
        weight = reader.array(f"conv.{index}.weight", (None, channels, kernel, kernel),
                              f"[outputs, {channels}, {kernel}, {kernel}]: EvNN's Conv2d conv.{index}")
        bias = reader.array(f"conv.{index}.bias", (weight.shape[0],), "[outputs]")
        convs.append(ir.Conv2d(weight, bias, stride=stride, padding=padding, relu=True))
        channels = weight.shape[0]
    linear_key = f"conv.{DVS_CNN_LINEAR}.weight"
    if linear_key not in reader or reader.sd[linear_key].dim() != 2:
        reader.array(linear_key, (None, channels), "[outputs, inputs]: EvNN's Linear after Flatten")
    linear_in = int(reader.sd[linear_key].shape[1])
    frame_size = settings["frame_size"]
    groups = _cnn_frame_sizes(channels, linear_in)
    if frame_size is None:
        if len(groups) != 1:
            ranges = sorted((min(sizes), max(sizes)) for sizes in groups.values())
            fits = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges) or "none"
            raise ConversionError(
                f"{source}: frame_size is not in the checkpoint and EvNN's CNN pools differently for the frame sizes "
                f"that fit it ({fits}); give the run's frame_size (args.json 'frame_size'): layout "
                f"{{\"frame_size\": N}} or {{\"dvs_args\": \"path/args.json\"}}")
        frame_size = next(iter(groups.values()))[0]
    side = _cnn_side(frame_size)
    if channels * side * side != linear_in:
        raise reader.error(f"{reader.name(linear_key)}: expected [*, {channels * max(side, 0) ** 2}] (the CNN's "
                           f"{channels}x{side}x{side} output for {where['frame_size']} {frame_size}), got "
                           f"{list(reader.sd[linear_key].shape)}")
    linear = ir.Linear(reader.array(linear_key, (None, linear_in), "[outputs, inputs]"),
                       reader.array(f"conv.{DVS_CNN_LINEAR}.bias", (int(reader.sd[linear_key].shape[0]),),
                                    "[outputs]"))
    settings["frame_size"] = frame_size
    pool = ir.Pool2d("max", *DVS_POOL)
    after_6, after_9 = _cnn_plan(frame_size)
    cnn = [convs[0], pool, convs[1], pool, convs[2], *([pool] if after_6 else []), convs[3],
           *([pool] if after_9 else []), convs[4], linear]
    return _input_pool(frame_size) + _merge_layer(method) + cnn


# --------------------------------------------------------------------------- building the graph

def _training_value(reader: _Reader, key: str) -> float | None:
    """A training constant as EvNN stores it ([1] float; 0-d in older egru-deploy files), else None."""
    t = reader.sd.get(key)
    if isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point() and t.layout == torch.strided:
        value = float(t.detach().reshape(-1)[0])
        return value if math.isfinite(value) else None
    return None


def _egru(reader: _Reader, prefix: str, in_size: int | None, use_trace: bool, zoneout: float) -> tuple:
    has_thr, has_reparam = prefix + "thr" in reader, prefix + "thr_reparam" in reader
    if has_thr and has_reparam:
        raise reader.error(f"{reader.name(prefix)}: both thr and thr_reparam present; keep one")
    if has_reparam:
        reparam = reader.array(prefix + "thr_reparam", (None,), "[hidden]")
        thr = (1.0 / (1.0 + np.exp(-reparam.astype(np.float64)))).astype(np.float32)
    else:
        thr = np.clip(reader.array(prefix + "thr", (None,), "[hidden]"), 0.0, 1.0)
    h = thr.shape[0]
    training = {}
    for key in TRAINING_ONLY:
        if prefix + key in reader:
            reader.mark_used(prefix + key)
            value = _training_value(reader, prefix + key)
            if value is not None:
                training[key] = value
    layer = ir.EGRU(
        kernel=reader.array(prefix + "kernel", (in_size, 3 * h), "[inputs, 3*hidden]"),
        recurrent_kernel=reader.array(prefix + "recurrent_kernel", (h, 3 * h), "[hidden, 3*hidden]"),
        bias=reader.array(prefix + "bias", (3 * h,), "[3*hidden]"),
        recurrent_bias=reader.array(prefix + "recurrent_bias", (3 * h,), "[3*hidden]"),
        thr=thr,
        use_trace=use_trace,
        zoneout=zoneout,
    )
    return layer, training, "thr_reparam" if has_reparam else "thr"


def _linear(reader: _Reader, prefix: str, in_size: int, relu: bool, tied: np.ndarray | None) -> ir.Linear:
    weight_key, bias_key = prefix + "weight", prefix + "bias"
    if weight_key in reader:
        weight = reader.array(weight_key, (None, in_size), "[outputs, inputs]")
    elif tied is not None:
        bias = reader.array(bias_key, (None,), "[outputs]")
        if tied.shape != (bias.shape[0], in_size):
            raise reader.error(f"{reader.name(weight_key)}: missing, and the embedding {list(tied.shape)} cannot "
                               f"stand in for it (tied weights need [{bias.shape[0]}, {in_size}])")
        weight = tied
    else:
        raise reader.error(f"{reader.name(weight_key)}: missing (expected [outputs, {in_size}])")
    out = weight.shape[0]
    bias = reader.array(bias_key, (out,), "[outputs]") if bias_key in reader else np.zeros(out, np.float32)
    return ir.Linear(weight, bias, relu=relu)


def _projection_activation(reader: _Reader, parts: dict, layout: dict) -> tuple[str, str]:
    """(activation, why) of decoder.projection: the layout's, else EvNN's rule for the thresholds' key."""
    if "projection_activation" in layout:
        return layout["projection_activation"], "layout projection_activation"
    reparam = [p for p in parts["layers"] if p + "thr_reparam" in reader]
    if reparam and len(reparam) == len(parts["layers"]):
        return "relu", "pre-0.2 EvNN's decoder F.relu(projection(x)), as the thr_reparam keys tell"
    if reparam:
        raise reader.error(f"layers mix thr and thr_reparam ({reader.name(reparam[0])}thr_reparam), so the EvNN "
                           f"version and its decoder rule are unclear; give layout projection_activation "
                           f"(\"relu\" or \"none\")")
    return "none", ("EvNN v0.2.0's decoder, as the thr keys tell; layout projection_activation \"relu\" for a "
                    "pre-0.2-style decoder with thr, e.g. pascalkuthe/EvNN adamw-and-simpler-thresholds")


def _frame_out_size(layers: list) -> tuple[int, ...]:
    shape: tuple[int, ...] = DVS_FRAME
    for layer in layers:
        shape = layer.out_shape(shape) if isinstance(layer, ir.FRAME_LAYERS) else (layer.out_size,)
    return shape


def _build(reader: _Reader, parts: dict, feeds: list[bool], zoneout: list[float], output_mode: str,
           dvs: dict | None, layout: dict) -> ir.Graph:
    layers: list = []
    embedding = None
    in_size = None
    notes = [MODEL_NAMES[parts["model"]]]
    if dvs is not None and dvs["frontend"] is not None:
        layers.extend(dvs["frontend"])
        try:
            in_size = int(np.prod(_frame_out_size(layers)))
        except ir.IRError as e:
            raise reader.error(str(e)) from None
        notes.append(f"DVS input (B, T, 2, 128, 128): frame_size {dvs['frame_size']}, event_agg_method "
                     f"{dvs['event_agg_method']!r}, {'CNN' if parts['cnn'] else 'flattened'}, use_all_timesteps "
                     f"{str(dvs['use_all_timesteps']).lower()}")
    if parts["embedding"] is not None:
        embedding = reader.array(parts["embedding"], (None, None), "[vocabulary, dim]")
        layers.append(ir.Embedding(embedding))
        in_size = embedding.shape[1]
    training, thresholds = [], set()
    for prefix, use_trace, p in zip(parts["layers"], feeds, zoneout):
        layer, constants, threshold_key = _egru(reader, prefix, in_size, use_trace, p)
        layers.append(layer)
        training.append(constants)
        thresholds.add(threshold_key)
        in_size = layer.hidden
    activation = None
    if parts["projection"] is not None:
        activation, why = _projection_activation(reader, parts, layout)
        projection = _linear(reader, parts["projection"], in_size, relu=activation == "relu", tied=None)
        layers.append(projection)
        in_size = projection.out_size
        notes.append(f"{reader.name(parts['projection'])}*: {'ReLU' if activation == 'relu' else 'no activation'} "
                     f"({why})")
    if parts["readout"] is not None:
        layers.append(_linear(reader, parts["readout"], in_size, relu=False, tied=embedding))
    if any(zoneout):
        shown = f"{zoneout[0]:g}" if len(set(zoneout)) == 1 else ", ".join(f"{p:g}" for p in zoneout)
        notes.append(f"zoneout {shown} (not in the state_dict)")
    if dvs is not None:
        graph_input = ir.Input(int(np.prod(DVS_FRAME)), frame=DVS_FRAME) if dvs["frontend"] is not None else None
    elif embedding is not None:
        graph_input = ir.Input(embedding.shape[0], tokens=True)
    else:
        graph_input = None
    if graph_input is None:
        first = next(layer for layer in layers if isinstance(layer, ir.EGRU))
        graph_input = ir.Input(first.in_size)
    bare = parts["model"] == "stack" and len(layers) == 1
    metadata = {"source": reader.source, "converter": "evnn", "evnn": {
        "model": "layer" if bare else parts["model"],
        "layers": [reader.name(p) for p in parts["layers"]],
        "thresholds": "thr_reparam" if thresholds == {"thr_reparam"} else "thr",
        "training": training,
        "projection_activation": activation,
        "notes": notes,
    }}
    if dvs is not None:
        metadata["evnn"]["dvs"] = {name: dvs[name] for name in ("frame_size", "event_agg_method", "use_all_timesteps")}
    try:
        return ir.Graph(graph_input, tuple(layers), output_mode, metadata=metadata)
    except ir.IRError as e:
        raise reader.error(str(e)) from None


# --------------------------------------------------------------------------- export

EXPORT_MODELS = ("auto", "lm", "dvs", "smnist", "stack", "layer")
LAYER_KEYS = ("_max_norm", "kernel", "recurrent_kernel", "bias", "recurrent_bias", "dampening_factor",
              "pseudo_derivative_support", "thr")


def export(graph: ir.Graph, path: str | os.PathLike, model: str = "auto") -> dict:
    """Write ``graph`` as an EvNN state_dict (torch.save of a bare OrderedDict); return ``to_state_dict``'s info."""
    sd, info = to_state_dict(graph, model)
    torch.save(sd, path)
    return info


def to_state_dict(graph: ir.Graph, model: str = "auto") -> tuple[OrderedDict, dict]:
    """``(state_dict, info)``: EvNN keys for ``graph`` (module docstring, Export); ``info`` holds the model
    layout chosen, ``notes`` on what the state_dict cannot hold, and the ``layout`` that imports it back."""
    if model not in EXPORT_MODELS:
        raise ConversionError(f"evnn export: model must be one of {', '.join(EXPORT_MODELS)}, got {model!r}")
    if graph.quantized:
        raise ConversionError(f"evnn export: the graph is quantized for {graph.profile!r}; EvNN runs float weights: "
                              f"export the float model (the checkpoint, or a bundle's float/ graph)")
    plans = {"lm": _plan_lm, "dvs": _plan_dvs, "smnist": _plan_smnist, "stack": _plan_stack, "layer": _plan_layer}
    if model == "auto":
        model, reason = _auto_model(graph, plans)
        if reason:
            raise ConversionError(f"evnn export: {reason}")
    plan = plans[model](graph)
    if isinstance(plan, str):
        raise ConversionError(f"evnn export: not {MODEL_NAMES[model]}: {plan}")
    entries, layout, notes = plan
    meta = graph.metadata.get("evnn", {}) if isinstance(graph.metadata, dict) else {}
    training = meta.get("training")
    reparam = meta.get("thresholds") == "thr_reparam" and all(
        0.0 < layer.thr.min() and layer.thr.max() < 1.0 for layer in graph.egru_layers)
    if reparam:
        notes.append("thresholds as pre-0.2 EvNN's thr_reparam = logit(thr), as the file imported had them (thr "
                     "comes back within one float32 rounding)")
    sd: OrderedDict = OrderedDict()
    shared: dict[int, torch.Tensor] = {}
    egru_index = 0
    for name, value in entries:
        if isinstance(value, ir.EGRU):
            constants = training[egru_index] if isinstance(training, list) and len(training) == len(
                graph.egru_layers) and isinstance(training[egru_index], dict) else {}
            egru_index += 1
            for key in LAYER_KEYS:
                if key in TRAINING_DEFAULTS:
                    number = constants.get(key, TRAINING_DEFAULTS[key])
                    sd[name + key] = torch.tensor([float(number)], dtype=torch.float32)
                elif key == "thr" and reparam:
                    thr = value.thr.astype(np.float64)
                    sd[name + "thr_reparam"] = torch.from_numpy(np.log(thr / (1.0 - thr)).astype(np.float32))
                else:
                    sd[name + key] = _tensor(getattr(value, key), shared)
        else:
            sd[name] = _tensor(value, shared)
    zoneout = [layer.zoneout for layer in graph.egru_layers]
    if any(zoneout):
        layout["zoneout"] = zoneout if len(set(zoneout)) > 1 else zoneout[0]
        notes.append(f"zoneout {', '.join(f'{p:g}' for p in zoneout)} is not in a state_dict: construct EvNN's "
                     f"layers with zoneout=p" + (" (EvNN's LanguageModel builds them with zoneout=0.0)"
                                                 if model == "lm" else ""))
    return sd, {"model": model, "description": MODEL_NAMES[model], "keys": len(sd), "notes": notes,
                "layout": layout}


def _tensor(array: np.ndarray, shared: dict) -> torch.Tensor:
    """A float32 tensor of ``array``; the same array (a tied weight) gives the same tensor, as EvNN saves it."""
    if id(array) not in shared:
        shared[id(array)] = torch.from_numpy(np.array(array, np.float32, copy=True))
    return shared[id(array)]


def _auto_model(graph: ir.Graph, plans: dict) -> tuple[str, str | None]:
    imported = graph.metadata.get("evnn", {}).get("model") if isinstance(graph.metadata, dict) else None
    if imported in plans and not isinstance(plans[imported](graph), str):
        return imported, None
    egrus = graph.egru_layers
    if graph.input.frame is not None:
        plan = _plan_dvs(graph)
        return "dvs", (None if not isinstance(plan, str) else
                       f"a frame input is exported as {MODEL_NAMES['dvs']}, which this graph is not: {plan}")
    if all(layer.use_trace for layer in egrus) and isinstance(graph.layers[-1], ir.Linear) \
            and not isinstance(_plan_dvs(graph), str):
        return "dvs", None
    if graph.input.tokens and not isinstance(_plan_lm(graph), str):
        return "lm", None
    if len(graph.layers) == 1:
        return "layer", None
    plan = _plan_stack(graph)
    return "stack", (plan if isinstance(plan, str) else None)


def _split(graph: ir.Graph) -> tuple[list, list, list]:
    """(front-end, EGRU layers, layers after them)."""
    first = next(i for i, layer in enumerate(graph.layers) if isinstance(layer, ir.EGRU))
    last = max(i for i, layer in enumerate(graph.layers) if isinstance(layer, ir.EGRU))
    return list(graph.layers[:first]), list(graph.layers[first:last + 1]), list(graph.layers[last + 1:])


def _trace_layout(egrus: list, default: list[bool]) -> dict:
    feeds = [layer.use_trace for layer in egrus]
    return {} if feeds == default else {"use_trace": feeds}


def _plan_layer(graph: ir.Graph):
    if len(graph.layers) != 1:
        return "a bare layer's state_dict holds one EGRU layer and nothing else"
    layer = graph.layers[0]
    notes, layout = [], _trace_layout([layer], [False])
    if layer.use_trace:
        notes.append("the output is the trace (EvNN returns it as the 4th state tensor)")
    if graph.output_mode != "sequence":
        layout["output_mode"] = graph.output_mode
    return [("", layer)], layout, notes


def _plan_stack(graph: ir.Graph):
    front, egrus, after = _split(graph)
    if any(isinstance(layer, ir.EGRU) for layer in after) or len(egrus) != len(graph.egru_layers):
        return "layers between the EGRU layers"
    if front and not (len(front) == 1 and isinstance(front[0], ir.Embedding)):
        return f"a front-end of {', '.join(type(layer).__name__ for layer in front)} (only an embedding fits)"
    if any(not isinstance(layer, ir.Linear) for layer in after) or len(after) > 2:
        return "more than a projection and a readout after the EGRU layers"
    if after and after[-1].relu:
        return "a readout with ReLU"
    entries: list = []
    if front:
        entries.append((EMBEDDING_KEY, front[0].weight))
    entries += [(f"rnns.{i}.", layer) for i, layer in enumerate(egrus)]
    layout, notes = _trace_layout(egrus, [False] * len(egrus)), []
    if len(after) == 1:
        entries += [("fc.weight", after[0].weight), ("fc.bias", after[0].bias)]
    elif len(after) == 2:
        projection, readout = after
        entries += [("decoder.projection.weight", projection.weight), ("decoder.projection.bias", projection.bias),
                    ("decoder.decoder.weight", readout.weight), ("decoder.decoder.bias", readout.bias)]
        layout["projection_activation"] = "relu" if projection.relu else "none"
    if graph.output_mode != "sequence":
        layout["output_mode"] = graph.output_mode
    if layout.get("use_trace"):
        notes.append("the trace rule (use_trace) is not in a state_dict")
    return entries, layout, notes


def _plan_lm(graph: ir.Graph):
    front, egrus, after = _split(graph)
    if len(front) != 1 or not isinstance(front[0], ir.Embedding):
        return "no token embedding"
    embedding = front[0].weight
    if not after or any(not isinstance(layer, ir.Linear) for layer in after) or len(after) > 2:
        return "its readout is not a decoder (optionally after one projection)"
    decoder = after[-1]
    if decoder.relu or not np.array_equal(decoder.weight, embedding):
        return "its decoder is not tied to the embedding (LanguageModel ties decoder.decoder.weight to it)"
    if any(layer.use_trace for layer in egrus):
        return "a layer feeds its trace on (LanguageModel passes events y)"
    hidden = [layer.hidden for layer in egrus]
    emb = embedding.shape[1]
    if len(after) == 1 and (hidden[-1] != emb or len(set(hidden[:-1])) > 1):
        return f"layer sizes {hidden}: LanguageModel has hidden_dim layers and a last one of emb_dim {emb}"
    if len(after) == 2 and len(set(hidden)) > 1:
        return f"layer sizes {hidden}: with a projection LanguageModel's layers are all hidden_dim"
    entries: list = [(EMBEDDING_KEY, embedding)]
    layout, notes = {}, []
    if len(after) == 2:
        projection = after[0]
        entries += [("decoder.projection.weight", projection.weight), ("decoder.projection.bias", projection.bias)]
        if projection.relu:
            layout["projection_activation"] = "relu"
            notes.append("the projection has a ReLU: v0.2.0's LanguageModel has none (pre-0.2's and pascalkuthe/EvNN "
                         "adamw-and-simpler-thresholds' decoders have it, the latter with these thr keys)")
    entries += [("decoder.decoder.weight", embedding), ("decoder.decoder.bias", decoder.bias)]
    entries += [(f"rnns.{i}.", layer) for i, layer in enumerate(egrus)]
    if graph.output_mode != "sequence":
        layout["output_mode"] = graph.output_mode
        notes.append(f"output mode {graph.output_mode!r}: LanguageModel returns every step")
    return entries, layout, notes


def _plan_smnist(graph: ir.Graph):
    front, egrus, after = _split(graph)
    if front:
        return "a front-end before the EGRU layers"
    if len(after) != 1 or after[0].relu:
        return "its readout is not one Linear (hidden2out)"
    hidden = [layer.hidden for layer in egrus]
    if len(set(hidden)) > 1:
        return f"layer sizes {hidden}: RNNReadoutWrapper's layers all have n_units"
    if any(layer.use_trace for layer in egrus[:-1]):
        return "a layer feeds its trace to the next (the sMNIST model passes events y)"
    entries: list = [(f"rnn.rnns.{i}.rnn.", layer) for i, layer in enumerate(egrus)]
    entries += [("hidden2out.weight", after[0].weight), ("hidden2out.bias", after[0].bias)]
    layout, notes = {}, []
    if egrus[-1].use_trace:
        layout["use_output_trace"] = True
        notes.append("the readout reads the last layer's trace: run smnist.py with --use-output-trace")
    if graph.output_mode != "last":
        layout["output_mode"] = graph.output_mode
        notes.append(f"output mode {graph.output_mode!r}: smnist.py reads the last step")
    return entries, layout, notes


def _match_frontend(front: list) -> tuple[dict, str | None]:
    """EvNN's DVS input pipeline in ``front`` -> (settings, None), or ({}, why it is not)."""
    rest = list(front)
    kernel = 1
    if rest and isinstance(rest[0], ir.Pool2d) and rest[0].kind == "max" and rest[0].stride == rest[0].kernel \
            and rest[0].padding == 0:
        kernel = rest.pop(0).kernel
    method = "none"
    if rest and isinstance(rest[0], ir.Conv2d) and rest[0].weight.shape == (1, 2, 1, 1):
        merge = rest.pop(0)
        weights = tuple(float(w) for w in merge.weight.reshape(-1))
        method = next((m for m, w in MERGE_WEIGHTS.items() if w == weights), None)
        if method is None or merge.relu or merge.stride != 1 or merge.padding != 0 or np.any(merge.bias != 0):
            return {}, "its 1x1 channel merge is neither EvNN's polarity mean (0.5, 0.5) nor diff (1, -1)"
    sizes = [fs for fs in range(1, DVS_SENSOR + 1) if DVS_SENSOR // fs == kernel]
    if not sizes:
        return {}, f"an input max-pool of {kernel} is no 128 // frame_size"
    if not rest:
        if DVS_SENSOR ** 2 // kernel ** 2 != (DVS_SENSOR // kernel) ** 2:
            return {}, f"EvNN's model without CNN miscounts the inputs after a max-pool of {kernel}"
        return {"frame_size": DVS_SENSOR // kernel, "event_agg_method": method, "cnn": []}, None
    if method == "none":
        return {}, "a CNN on both polarity channels (EvNN's CNN reads one merged channel)"
    pattern = ", ".join(type(layer).__name__ for layer in rest)
    not_cnn = f"its front-end ({pattern}) is not EvNN's CNN (5 Conv2d + ReLU with MaxPool2d(3, 2), then Linear)"
    entries, pooled, i = [], [], 0
    for index, k, stride, padding in DVS_CNN:
        conv = rest[i] if i < len(rest) else None
        if not isinstance(conv, ir.Conv2d):
            return {}, not_cnn
        if conv.kernel != k or conv.stride != stride or conv.padding != padding or not conv.relu:
            return {}, (f"its convolution conv.{index} is not EvNN's Conv2d(k {k}, stride {stride}, "
                        f"padding {padding}) + ReLU")
        entries += [(f"conv.{index}.weight", conv.weight), (f"conv.{index}.bias", conv.bias)]
        i += 1
        pool = rest[i] if i < len(rest) and isinstance(rest[i], ir.Pool2d) else None
        if pool is not None and (pool.kind != "max" or (pool.kernel, pool.stride) != DVS_POOL or pool.padding):
            return {}, "a pool is not EvNN's MaxPool2d(3, 2)"
        pooled.append(pool is not None)
        i += pool is not None
    if i != len(rest) - 1 or not isinstance(rest[i], ir.Linear) or rest[i].relu:
        return {}, not_cnn
    entries += [(f"conv.{DVS_CNN_LINEAR}.weight", rest[i].weight), (f"conv.{DVS_CNN_LINEAR}.bias", rest[i].bias)]
    fitting = [fs for fs in sizes if pooled == [True, True, *_cnn_plan(fs), False]]
    if not fitting:
        return {}, (f"its max-pools (after conv {[index for (index, *_), p in zip(DVS_CNN, pooled) if p]}) are not "
                    f"where EvNN's CNN has them for an input max-pool of {kernel}")
    return {"frame_size": fitting[-1], "event_agg_method": method, "cnn": entries}, None


def _plan_dvs(graph: ir.Graph):
    front, egrus, after = _split(graph)
    if graph.input.tokens:
        return "a token input"
    settings: dict = {}
    if graph.input.frame is not None:
        if tuple(graph.input.frame) != DVS_FRAME:
            return f"its frame {tuple(graph.input.frame)} is not the DVS sensor's {DVS_FRAME}"
        settings, why = _match_frontend(front)
        if why:
            return why
    elif front:
        return "a front-end on a vector input"
    if len(after) != 1 or after[0].relu:
        return "its readout is not one Linear (fc)"
    if not all(layer.use_trace for layer in egrus):
        return "not every layer feeds its trace on (EvNN's DVS model passes traces, also into fc)"
    if len({layer.hidden for layer in egrus}) > 1:
        return f"layer sizes {[layer.hidden for layer in egrus]}: EvNN's DVS layers all have n_units"
    if graph.output_mode == "sequence":
        return "output mode 'sequence' (EvNN's DVS model gives the last step or the mean over steps)"
    entries = list(settings.get("cnn", []))
    entries += [(f"layers.{i}.", layer) for i, layer in enumerate(egrus)]
    entries += [("fc.weight", after[0].weight), ("fc.bias", after[0].bias)]
    notes, layout = [], {}
    use_all = graph.output_mode == "mean"
    if settings:
        layout = {"frame_size": settings["frame_size"], "event_agg_method": settings["event_agg_method"],
                  "use_all_timesteps": use_all}
        notes.append(f"not in the state_dict: frame_size {settings['frame_size']}, event_agg_method "
                     f"{settings['event_agg_method']!r}, use_cnn {str(bool(settings['cnn'])).lower()}, "
                     f"use_all_timesteps {str(use_all).lower()} (dvs128.py's arguments, args.json)")
        widths = [int(entries[i][1].shape[0]) for i in range(0, len(settings["cnn"]), 2)]
        if settings["cnn"] and tuple(widths) != DVS_CNN_WIDTHS:
            notes.append(f"CNN widths {widths}: EvNN's class builds {list(DVS_CNN_WIDTHS)} (same keys and order)")
    else:
        layout = {"model": "dvs", "use_trace": [True] * len(egrus), "output_mode": graph.output_mode}
        notes.append("a vector input: EvNN's DVS model reads (B, T, 2, 128, 128) frames")
    if after[0].out_size != DVS_CLASSES:
        notes.append(f"fc has {after[0].out_size} outputs; EvNN's DVS model has {DVS_CLASSES}")
    return entries, layout, notes
