"""The intermediate representation: frozen, typed dataclasses; the source of truth.

A graph is a chain ``Input -> [Embedding] -> EGRU* -> Linear*`` plus an output mode.
A float graph holds float32 arrays.  A quantized graph (``profile`` set) holds integer
arrays, each described by a :class:`QType` (value = data * 2**-frac).

Serialized as ``graph.json`` (versioned schema) + ``weights.npz``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Union

import numpy as np

from egru_deploy.errors import UserError
from egru_deploy.files import atomic_output

SCHEMA_VERSION = 1
OUTPUT_MODES = ("sequence", "last", "mean")


class IRError(UserError):
    """A graph, or a file describing one, is not valid. The message is one line."""


@dataclass(frozen=True)
class QType:
    """Fixed-point type: ``bits`` wide (sign included when ``signed``), ``frac`` fractional bits."""

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self):
        if not (1 <= self.bits <= 64):
            raise IRError(f"QType.bits must be in 1..64, got {self.bits}")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def scale(self) -> float:
        return 2.0 ** (-self.frac)

    def to_float(self, data: np.ndarray) -> np.ndarray:
        return (np.asarray(data, np.float64) * self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}


@dataclass(frozen=True)
class Input:
    """``size`` features per step; for ``tokens`` inputs, ``size`` is the vocabulary size."""

    size: int
    tokens: bool = False

    def __post_init__(self):
        if self.size < 1:
            raise IRError(f"Input.size must be >= 1, got {self.size}")


def _require_array(owner: str, name: str, arr, ndim: int) -> None:
    if not isinstance(arr, np.ndarray):
        raise IRError(f"{owner}.{name}: expected a NumPy array, got {type(arr).__name__}")
    if arr.ndim != ndim or 0 in arr.shape:
        raise IRError(f"{owner}.{name}: expected a non-empty {ndim}-D array, got shape {arr.shape}")


def _check_array(owner: str, name: str, arr, shape: tuple, integer: bool) -> None:
    _require_array(owner, name, arr, len(shape))
    if arr.shape != shape:
        raise IRError(f"{owner}.{name}: expected shape {shape}, got {arr.shape}")
    if integer:
        if not np.issubdtype(arr.dtype, np.integer):
            raise IRError(f"{owner}.{name}: quantized tensor must be integer, got {arr.dtype}")
    else:
        if arr.dtype != np.float32:
            raise IRError(f"{owner}.{name}: float tensor must be float32, got {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise IRError(f"{owner}.{name}: contains NaN or inf")


def _check_qtype_range(owner: str, name: str, arr: np.ndarray, q: QType) -> None:
    if arr.size and (arr.min() < q.min or arr.max() > q.max):
        raise IRError(f"{owner}.{name}: values outside {q.bits}-bit range [{q.min}, {q.max}]")


@dataclass(frozen=True)
class Embedding:
    weight: np.ndarray  # [V, E]
    qweight: QType | None = None  # set in a quantized graph

    @property
    def vocab(self) -> int:
        return self.weight.shape[0]

    @property
    def out_size(self) -> int:
        return self.weight.shape[1]

    def validate(self, in_size: int) -> None:
        _require_array("Embedding", "weight", self.weight, 2)
        if self.weight.shape[0] != in_size:
            raise IRError(f"Embedding.weight: vocabulary {self.weight.shape[0]} != input size {in_size}")
        _check_array("Embedding", "weight", self.weight, self.weight.shape, self.qweight is not None)
        if self.qweight is not None:
            _check_qtype_range("Embedding", "weight", self.weight, self.qweight)


@dataclass(frozen=True)
class EGRUQuant:
    """Integer formats of one quantized EGRU layer (see ``egru_deploy.profiles``)."""

    kernel: QType  # int8 weights, per-matrix power-of-two scale
    recurrent_kernel: QType
    bias: QType  # gate pre-activation format
    recurrent_bias: QType
    thr: QType  # state format
    input: QType  # format of the events (or trace) this layer receives


@dataclass(frozen=True)
class EGRU:
    """One EGRU layer, EvNN layout: gates ordered z, r, g along the 3H axis."""

    kernel: np.ndarray  # [I, 3H]
    recurrent_kernel: np.ndarray  # [H, 3H]
    bias: np.ndarray  # [3H]
    recurrent_bias: np.ndarray  # [3H]
    thr: np.ndarray  # [H]
    use_trace: bool = False  # the next layer reads this layer's trace instead of its events
    quant: EGRUQuant | None = None

    @property
    def in_size(self) -> int:
        return self.kernel.shape[0]

    @property
    def hidden(self) -> int:
        return self.thr.shape[0]

    @property
    def out_size(self) -> int:
        return self.hidden

    def validate(self, in_size: int) -> None:
        _require_array("EGRU", "thr", self.thr, 1)
        h = self.thr.shape[0]
        q = self.quant
        integer = q is not None
        for name, shape in (
            ("kernel", (in_size, 3 * h)),
            ("recurrent_kernel", (h, 3 * h)),
            ("bias", (3 * h,)),
            ("recurrent_bias", (3 * h,)),
            ("thr", (h,)),
        ):
            _check_array("EGRU", name, getattr(self, name), shape, integer)
            if q is not None:
                _check_qtype_range("EGRU", name, getattr(self, name), getattr(q, name))
        if q is None and (self.thr.min() < 0 or self.thr.max() > 1):
            raise IRError("EGRU.thr: thresholds must lie in [0, 1] (EvNN clamps them)")


@dataclass(frozen=True)
class LinearQuant:
    weight: QType
    bias: QType  # accumulator format of the output
    input: QType
    output: QType  # format of the values this layer produces


@dataclass(frozen=True)
class Linear:
    """``y = x @ weight.T + bias`` (torch layout), optionally followed by ReLU."""

    weight: np.ndarray  # [O, I]
    bias: np.ndarray  # [O]
    relu: bool = False
    quant: LinearQuant | None = None

    @property
    def in_size(self) -> int:
        return self.weight.shape[1]

    @property
    def out_size(self) -> int:
        return self.weight.shape[0]

    def validate(self, in_size: int) -> None:
        _require_array("Linear", "weight", self.weight, 2)
        o = self.weight.shape[0]
        integer = self.quant is not None
        _check_array("Linear", "weight", self.weight, (o, in_size), integer)
        _check_array("Linear", "bias", self.bias, (o,), integer)
        if self.quant is not None:
            _check_qtype_range("Linear", "weight", self.weight, self.quant.weight)
            _check_qtype_range("Linear", "bias", self.bias, self.quant.bias)


Layer = Union[Embedding, EGRU, Linear]
LAYER_TYPES = {"Embedding": Embedding, "EGRU": EGRU, "Linear": Linear}
QUANT_TYPES = {"EGRU": EGRUQuant, "Linear": LinearQuant}


@dataclass(frozen=True)
class Graph:
    input: Input
    layers: tuple[Layer, ...]
    output_mode: str = "sequence"
    profile: str | None = None  # name of the integer profile; None for a float graph
    metadata: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        self.validate()

    @property
    def quantized(self) -> bool:
        return self.profile is not None

    @property
    def egru_layers(self) -> list[EGRU]:
        return [layer for layer in self.layers if isinstance(layer, EGRU)]

    @property
    def out_size(self) -> int:
        return self.layers[-1].out_size if self.layers else self.input.size

    def validate(self) -> None:
        if self.output_mode not in OUTPUT_MODES:
            raise IRError(f"Graph.output_mode: expected one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if not any(isinstance(layer, EGRU) for layer in self.layers):
            raise IRError("Graph.layers: an EGRU graph needs at least one EGRU layer")
        order = {Embedding: 0, EGRU: 1, Linear: 2}
        last_rank = -1
        size = self.input.size
        for i, layer in enumerate(self.layers):
            if type(layer) not in order:
                raise IRError(f"Graph.layers[{i}]: unknown layer type {type(layer).__name__}")
            rank = order[type(layer)]
            if rank < last_rank or (rank == 0 and i != 0):
                raise IRError(f"Graph.layers[{i}]: layers must be ordered Embedding?, EGRU+, Linear*")
            last_rank = rank
            if isinstance(layer, Embedding) and not self.input.tokens:
                raise IRError("Graph.layers[0]: an Embedding needs a token input (Input.tokens=True)")
            if (layer.quant if not isinstance(layer, Embedding) else layer.qweight) is None and self.quantized:
                raise IRError(f"Graph.layers[{i}]: graph has profile {self.profile!r} but layer is float")
            if not self.quantized and (
                (layer.qweight if isinstance(layer, Embedding) else layer.quant) is not None
            ):
                raise IRError(f"Graph.layers[{i}]: quantized layer in a float graph")
            try:
                layer.validate(size)
            except IRError as e:
                raise IRError(f"layer {i}: {e}") from None
            size = layer.out_size
        if self.input.tokens and not isinstance(self.layers[0], Embedding):
            raise IRError("Graph.layers[0]: a token input needs an Embedding first")

    def with_layers(self, layers, **changes) -> "Graph":
        return replace(self, layers=tuple(layers), **changes)

    def summary(self) -> dict:
        layers = []
        for i, layer in enumerate(self.layers):
            entry = {"index": i, "type": type(layer).__name__, "in": _in_size(layer), "out": layer.out_size}
            entry["parameters"] = int(sum(getattr(layer, f.name).size for f in fields(layer)
                                          if isinstance(getattr(layer, f.name), np.ndarray)))
            if isinstance(layer, EGRU):
                thr = layer.thr * (layer.quant.thr.scale if layer.quant else 1.0)
                entry["thr"] = {"min": float(thr.min()), "mean": float(thr.mean()), "max": float(thr.max())}
                entry["use_trace"] = layer.use_trace
            if isinstance(layer, Linear):
                entry["relu"] = layer.relu
            layers.append(entry)
        return {
            "schema_version": SCHEMA_VERSION,
            "input": {"size": self.input.size, "tokens": self.input.tokens},
            "output_mode": self.output_mode,
            "profile": self.profile,
            "parameters": int(sum(entry["parameters"] for entry in layers)),
            "layers": layers,
        }


def _in_size(layer: Layer) -> int:
    return layer.vocab if isinstance(layer, Embedding) else layer.in_size


# --------------------------------------------------------------------------- serialization

GRAPH_JSON = "graph.json"
WEIGHTS_NPZ = "weights.npz"


def _qtype_from(d: dict, where: str) -> QType:
    try:
        return QType(int(d["bits"]), int(d["frac"]), bool(d["signed"]))
    except (KeyError, TypeError, ValueError) as e:
        raise IRError(f"{where}: invalid QType {d!r} ({e})") from None


def to_json_and_arrays(graph: Graph) -> tuple[dict, dict]:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(graph.layers):
        kind = type(layer).__name__
        entry: dict = {"type": kind}
        for f in fields(layer):
            value = getattr(layer, f.name)
            if isinstance(value, np.ndarray):
                key = f"layers.{i}.{f.name}"
                arrays[key] = value
                entry[f.name] = key
            elif isinstance(value, QType):
                entry[f.name] = value.to_dict()
            elif isinstance(value, (EGRUQuant, LinearQuant)):
                entry[f.name] = {g.name: getattr(value, g.name).to_dict() for g in fields(value)}
            elif value is None:
                entry[f.name] = None
            else:
                entry[f.name] = value
        layers.append(entry)
    doc = {
        "format": "egru-deploy-graph",
        "schema_version": SCHEMA_VERSION,
        "input": {"size": graph.input.size, "tokens": graph.input.tokens},
        "output_mode": graph.output_mode,
        "profile": graph.profile,
        "metadata": graph.metadata,
        "layers": layers,
    }
    return doc, arrays


def check_versioned(doc, fmt: str, supported: int, where: str, error: type[Exception], remedy: str) -> None:
    """A JSON document names its ``format`` and a ``schema_version`` this code can read."""
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise error(f"{where}: not an {fmt} document (missing format: {fmt})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > supported:
        raise error(f"{where}: schema_version {version!r} is newer than this egru-deploy supports "
                    f"({supported}); {remedy}")


def from_json_and_arrays(doc: dict, arrays, where: str = "graph.json") -> Graph:
    check_versioned(doc, "egru-deploy-graph", SCHEMA_VERSION, where, IRError, "upgrade egru-deploy")
    try:
        layers = []
        for i, entry in enumerate(doc["layers"]):
            kind = entry["type"]
            if kind not in LAYER_TYPES:
                raise IRError(f"{where}: layers[{i}].type {kind!r} unknown (expected {sorted(LAYER_TYPES)})")
            cls = LAYER_TYPES[kind]
            kwargs = {}
            for f in fields(cls):
                if f.name not in entry:
                    continue
                value = entry[f.name]
                if f.name in ("quant",) and value is not None:
                    qcls = QUANT_TYPES[kind]
                    value = qcls(**{g.name: _qtype_from(value[g.name], f"{where}: layers[{i}].quant.{g.name}")
                                    for g in fields(qcls)})
                elif f.name == "qweight" and value is not None:
                    value = _qtype_from(value, f"{where}: layers[{i}].qweight")
                elif isinstance(value, str) and value.startswith("layers."):
                    if value not in arrays:
                        raise IRError(f"{where}: layers[{i}].{f.name}: array {value!r} missing from weights")
                    value = np.asarray(arrays[value])
                kwargs[f.name] = value
            layers.append(cls(**kwargs))
        inp = Input(int(doc["input"]["size"]), bool(doc["input"]["tokens"]))
        return Graph(inp, tuple(layers), doc["output_mode"], doc.get("profile"), doc.get("metadata") or {})
    except IRError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise IRError(f"{where}: malformed graph description ({type(e).__name__}: {e})") from None


def save(graph: Graph, directory: str | os.PathLike) -> None:
    """Write ``graph.json`` and ``weights.npz`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc, arrays = to_json_and_arrays(graph)
    with atomic_output(directory / WEIGHTS_NPZ) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    with atomic_output(directory / GRAPH_JSON) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=_json_default)


def load(directory: str | os.PathLike) -> Graph:
    directory = Path(directory)
    gpath = directory / GRAPH_JSON
    wpath = directory / WEIGHTS_NPZ
    for p in (gpath, wpath):
        if not p.is_file():
            raise IRError(f"{p}: missing (a graph directory holds {GRAPH_JSON} and {WEIGHTS_NPZ})")
    doc = read_json(gpath, IRError)
    try:
        with np.load(wpath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as e:
        raise IRError(f"{wpath}: not a readable .npz file ({e})") from None
    return from_json_and_arrays(doc, arrays, str(gpath))


def read_json(path: Path, error: type[Exception]) -> object:
    """Parse a JSON file, raising ``error`` with one line naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
