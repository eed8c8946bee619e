"""EvNN checkpoints (PyTorch state_dicts) -> float IR.

Reading a file
--------------
``load(path)`` reads the file with ``torch.load(path, map_location="cpu", weights_only=True)`` only,
so a hostile pickle cannot run code; its format (a torch.save zip archive or a legacy pickle) is told
by its bytes, not its suffix, and errors never repeat torch's advice to turn safe loading off. A
tensor whose strides make elements share storage (a saved ``expand()``) is refused. The file holds either a bare state_dict or a dict wrapping one
(``state_dict``, ``model_state_dict``, ``model``, ``net`` ... beside ``epoch``, optimizer state and
the like): the weights are the one nested dict, at any depth up to 3, with EGRU keys. The dict that
directly wraps them may carry ``output_mode`` ("sequence" | "last" | "mean") and ``use_trace``
(bool), which are honoured. Every value of the state_dict must be a tensor.

Automatic layout
----------------
A prefix shared by every key (``module.`` from DataParallel, ``model.`` from Lightning, ...) is set
aside first; the names below are relative to what is left.

- EGRU layer: a prefix ``P`` (``rnns.0.``, ``rnn.0.``, ``layers.0.``, ``egru.0.``, ``rnn.``, or empty
  for a single bare layer) with ``P+kernel`` [I, 3H], ``P+recurrent_kernel`` [H, 3H], ``P+bias`` and
  ``P+recurrent_bias`` [3H], and ``P+thr`` [H] (clamped to [0, 1] as EvNN does at forward) or, in
  older files, ``P+thr_reparam`` (thr = sigmoid(thr_reparam)). ``P+dampening_factor``,
  ``P+pseudo_derivative_support`` and ``P+_max_norm`` only shape training and are ignored. All
  layer prefixes follow one pattern and are ordered by their numbers (``rnns.10.`` after ``rnns.9.``).
- Token embedding: ``embeddings.weight`` [V, E] -> ``ir.Embedding``, token input of V symbols.
- Readout: the one of ``decoder.decoder.``, ``fc.``, ``linear.``, ``classifier.``, ``readout.``,
  ``output.`` that exists: ``weight`` [O, in], optional ``bias`` [O] (zeros when absent).
  ``decoder.projection.weight/bias`` [P, H] come before it as a Linear + ReLU (EvNN language models).
  The readout yields logits: EvNN's final log_softmax is left to the user.
- Tied readout: when the readout has a ``bias`` [V] but no ``weight``, and the file has an
  embedding [V, in], the readout uses the embedding matrix (weight tying, as EvNN's LanguageModel
  does; files that store the tied tensor twice need no rule).

Every other key is an error in automatic mode: a part egru-deploy silently dropped would change what
the model computes.

Layout mapping
--------------
``layout`` (Python) or ``--layout`` (CLI, a JSON object or a JSON file) names the parts instead, for
example ``{"layers": ["enc.cell0.", "enc.cell1."], "readout": "head.", "embedding": "emb.weight"}``.
Every field is optional:

- ``layers``: EGRU layer prefixes, input side first; each holds the EGRU keys above (a missing
  trailing ``.`` is added). With ``layers`` the mapping is explicit: names are full keys of the
  state_dict (nothing is set aside), only the parts named below are read, and other keys are ignored.
- ``embedding``: the key of the [V, E] token embedding (needs ``layers``).
- ``projection``: prefix of a Linear + ReLU between the last layer and the readout (needs ``layers``).
- ``readout``: prefix of the readout Linear, tie rule as above (needs ``layers``).
- ``state_dict``: the entry of the checkpoint dict that holds the weights, when several could; a
  path such as ``"checkpoint/ema"`` for nested entries.
- ``use_trace`` (bool): every layer but the last feeds its trace to the next layer.
- ``output_mode``: "sequence", "last" or "mean".

Without ``layers`` the automatic layout applies, with the other fields as overrides: for instance
``{"use_trace": true}`` for a bare state_dict of a trace model. ``use_trace`` and ``output_mode``
come from the layout, else from the checkpoint's own entries, else False and "sequence";
``load(..., output_mode=...)`` overrides all of them.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from egru_deploy import ir, safe_io
from egru_deploy.errors import ConversionError

TRAINING_ONLY = ("dampening_factor", "pseudo_derivative_support", "_max_norm")
READOUT_PREFIXES = ("decoder.decoder.", "fc.", "linear.", "classifier.", "readout.", "output.")
PROJECTION_PREFIX = "decoder.projection."
EMBEDDING_KEY = "embeddings.weight"
LAYOUT_FIELDS = ("layers", "embedding", "projection", "readout", "state_dict", "use_trace", "output_mode")
LAYOUT_EXAMPLE = '{"layers": ["enc.cell0.", "enc.cell1."], "readout": "head.", "embedding": "emb.weight"}'
HOW_TO_MAP = (f"pass an explicit mapping: layout={{...}} in Python or --layout '{{...}}' (JSON object or file) "
              f"on the command line, e.g. {LAYOUT_EXAMPLE}")
MAX_WRAPPER_DEPTH = 3
KEYS_SHOWN = 8


def load(path: str | os.PathLike, layout: dict | None = None, output_mode: str | None = None) -> ir.Graph:
    """Read an EvNN checkpoint file safely and convert it (see the module docstring)."""
    path = Path(path)
    return from_state_dict(_read(path), layout=layout, output_mode=output_mode, source=str(path))


def from_state_dict(sd: dict, layout: dict | None = None, output_mode: str | None = None,
                    source: str = "<state_dict>") -> ir.Graph:
    """Convert a state_dict of tensors, or a checkpoint dict wrapping one, to a float graph."""
    if layout is not None:
        _check_layout(layout, source)
    layout = layout or {}
    explicit = "layers" in layout
    weights, wrapper = _unwrap(sd, source, layout.get("state_dict"))
    _check_state_dict(weights, source)
    if explicit:
        reader = _Reader(weights, source, shared_prefix="")
        parts = _explicit_parts(layout, reader)
    else:
        shared = _shared_prefix(list(weights))
        reader = _Reader({k[len(shared):]: v for k, v in weights.items()}, source, shared)
        parts = _automatic_parts(reader)
    mode = output_mode or layout.get("output_mode") or wrapper.get("output_mode", "sequence")
    if not isinstance(mode, str) or mode not in ir.OUTPUT_MODES:
        raise ConversionError(f"{source}: output_mode must be one of {ir.OUTPUT_MODES}, got {_describe(mode)}")
    use_trace = layout.get("use_trace", wrapper.get("use_trace", False))
    if not isinstance(use_trace, bool):
        raise ConversionError(f"{source}: use_trace must be true or false, got {_describe(use_trace)}")
    graph = _build(reader, parts, use_trace, mode)
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
    else:
        parts = [name for name in ("embedding", "projection", "readout") if name in layout]
        if parts:
            raise ConversionError(f"{source}: layout {parts} needs \"layers\" too (an explicit mapping names "
                                  f"every part), e.g. {LAYOUT_EXAMPLE}")
    for name in ("embedding", "projection", "readout", "state_dict", "output_mode"):
        if name in layout and not isinstance(layout[name], str):
            raise ConversionError(f"{source}: layout {name!r} must be a string, got {_describe(layout[name])}")


def _as_prefix(prefix: str) -> str:
    return prefix if prefix == "" or prefix.endswith(".") else prefix + "."


def _explicit_parts(layout: dict, reader: _Reader) -> dict:
    parts = {
        "layers": [_as_prefix(p) for p in layout["layers"]],
        "embedding": layout.get("embedding"),
        "projection": _as_prefix(layout["projection"]) if "projection" in layout else None,
        "readout": _as_prefix(layout["readout"]) if "readout" in layout else None,
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


def _automatic_parts(reader: _Reader) -> dict:
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
    return {
        "layers": prefixes,
        "embedding": EMBEDDING_KEY if EMBEDDING_KEY in reader else None,
        "projection": projection,
        "readout": readouts[0] if readouts else None,
    }


# --------------------------------------------------------------------------- building the graph

def _egru(reader: _Reader, prefix: str, in_size: int | None, use_trace: bool) -> ir.EGRU:
    has_thr, has_reparam = prefix + "thr" in reader, prefix + "thr_reparam" in reader
    if has_thr and has_reparam:
        raise reader.error(f"{reader.name(prefix)}: both thr and thr_reparam present; keep one")
    if has_reparam:
        reparam = reader.array(prefix + "thr_reparam", (None,), "[hidden]")
        thr = (1.0 / (1.0 + np.exp(-reparam.astype(np.float64)))).astype(np.float32)
    else:
        thr = np.clip(reader.array(prefix + "thr", (None,), "[hidden]"), 0.0, 1.0)
    h = thr.shape[0]
    for key in TRAINING_ONLY:
        if prefix + key in reader:
            reader.mark_used(prefix + key)
    return ir.EGRU(
        kernel=reader.array(prefix + "kernel", (in_size, 3 * h), "[inputs, 3*hidden]"),
        recurrent_kernel=reader.array(prefix + "recurrent_kernel", (h, 3 * h), "[hidden, 3*hidden]"),
        bias=reader.array(prefix + "bias", (3 * h,), "[3*hidden]"),
        recurrent_bias=reader.array(prefix + "recurrent_bias", (3 * h,), "[3*hidden]"),
        thr=thr,
        use_trace=use_trace,
    )


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


def _build(reader: _Reader, parts: dict, use_trace: bool, output_mode: str) -> ir.Graph:
    layers: list = []
    embedding = None
    in_size = None
    if parts["embedding"] is not None:
        embedding = reader.array(parts["embedding"], (None, None), "[vocabulary, dim]")
        layers.append(ir.Embedding(embedding))
        in_size = embedding.shape[1]
    last = len(parts["layers"]) - 1
    for i, prefix in enumerate(parts["layers"]):
        layer = _egru(reader, prefix, in_size, use_trace and i != last)
        layers.append(layer)
        in_size = layer.hidden
    if parts["projection"] is not None:
        projection = _linear(reader, parts["projection"], in_size, relu=True, tied=None)
        layers.append(projection)
        in_size = projection.out_size
    if parts["readout"] is not None:
        layers.append(_linear(reader, parts["readout"], in_size, relu=False, tied=embedding))
    first_egru = layers[1] if embedding is not None else layers[0]
    graph_input = ir.Input(embedding.shape[0], tokens=True) if embedding is not None else ir.Input(first_egru.in_size)
    try:
        return ir.Graph(graph_input, tuple(layers), output_mode,
                        metadata={"source": reader.source, "converter": "evnn"})
    except ir.IRError as e:
        raise reader.error(str(e)) from None
