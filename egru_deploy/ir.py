"""The intermediate representation: frozen, typed dataclasses; the source of truth.

A graph is a chain ``Input -> front-end -> EGRU+ -> Linear*`` plus an output mode. The front-end
is an ``Embedding`` for token inputs, or, for frame inputs (``Input.frame`` = (C, H, W) per step),
``Conv2d``/``Pool2d`` layers applied to each step's frame, then ``Linear`` layers; a vector layer
after a frame reads it flattened in (C, H, W) row-major order, as torch's ``Flatten`` does.
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

from egru_deploy import safe_io
from egru_deploy.errors import UserError
from egru_deploy.files import atomic_output
from egru_deploy.safe_io import read_json  # noqa: F401 - bundle and target readers use ir.read_json

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
    """``size`` features per step; for ``tokens`` inputs, ``size`` is the vocabulary size; for frame
    inputs, ``frame`` = (C, H, W) and ``size`` = C * H * W."""

    size: int
    tokens: bool = False
    frame: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.size < 1:
            raise IRError(f"Input.size must be >= 1, got {self.size}")
        if self.frame is not None:
            frame = tuple(self.frame)
            object.__setattr__(self, "frame", frame)
            if len(frame) != 3 or not all(isinstance(n, int) and n >= 1 for n in frame):
                raise IRError(f"Input.frame: expected (C, H, W) of positive integers, got {frame}")
            if self.tokens or int(np.prod(frame)) != self.size:
                raise IRError(f"Input.frame {frame}: needs a feature input of size {int(np.prod(frame))}")

    @property
    def shape(self) -> tuple[int, ...]:
        """What one step holds: (C, H, W) for frames, else (size,)."""
        return self.frame if self.frame is not None else (self.size,)


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
    use_trace: bool = False  # the next layer (or the readout) reads this layer's trace instead of its events
    # EvNN's eval-mode zoneout (lib/egru_forward_cpu.cc): c' <- p * c + (1 - p) * c' before the threshold.
    zoneout: float = 0.0
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
        if isinstance(self.zoneout, bool) or not isinstance(self.zoneout, (int, float)) \
                or not 0.0 <= self.zoneout < 1.0:
            raise IRError(f"EGRU.zoneout: expected a probability in [0, 1), got {self.zoneout!r}")


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


def _window_out(size: int, kernel: int, stride: int, padding: int, owner: str) -> int:
    """Output length of a sliding window (torch's floor rule, no dilation)."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise IRError(f"{owner}: kernel {kernel} (padding {padding}) does not fit an input of {size}")
    return out


def _check_window(owner: str, kernel: int, stride: int, padding: int) -> None:
    for name, value, least in (("kernel", kernel, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise IRError(f"{owner}.{name}: expected an integer >= {least}, got {value!r}")


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution of each step's frame (torch layout, square kernel), optionally followed by ReLU."""

    weight: np.ndarray  # [O, C, k, k]
    bias: np.ndarray  # [O]
    stride: int = 1
    padding: int = 0  # zeros on every side
    relu: bool = False
    quant: LinearQuant | None = None

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (self.weight.shape[0], _window_out(h, self.kernel, self.stride, self.padding, "Conv2d"),
                _window_out(w, self.kernel, self.stride, self.padding, "Conv2d"))

    def validate(self, in_shape: tuple[int, ...]) -> None:
        _require_array("Conv2d", "weight", self.weight, 4)
        o, _, k, _ = self.weight.shape
        _check_window("Conv2d", k, self.stride, self.padding)
        integer = self.quant is not None
        _check_array("Conv2d", "weight", self.weight, (o, in_shape[0], k, k), integer)
        _check_array("Conv2d", "bias", self.bias, (o,), integer)
        if self.quant is not None:
            _check_qtype_range("Conv2d", "weight", self.weight, self.quant.weight)
            _check_qtype_range("Conv2d", "bias", self.bias, self.quant.bias)


POOL_KINDS = ("max", "avg")


@dataclass(frozen=True)
class Pool2d:
    """Max or average pooling of each step's frame over square windows (torch's MaxPool2d/AvgPool2d,
    ``ceil_mode=False``; average pooling counts padded zeros, torch's default)."""

    kind: str
    kernel: int
    stride: int
    padding: int = 0

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = in_shape
        return (c, _window_out(h, self.kernel, self.stride, self.padding, "Pool2d"),
                _window_out(w, self.kernel, self.stride, self.padding, "Pool2d"))

    def validate(self, in_shape: tuple[int, ...]) -> None:
        if self.kind not in POOL_KINDS:
            raise IRError(f"Pool2d.kind: expected one of {POOL_KINDS}, got {self.kind!r}")
        _check_window("Pool2d", self.kernel, self.stride, self.padding)
        if 2 * self.padding > self.kernel:
            raise IRError(f"Pool2d.padding: at most half the kernel ({self.kernel}), got {self.padding}")


FRAME_LAYERS = (Conv2d, Pool2d)
Layer = Union[Embedding, Conv2d, Pool2d, EGRU, Linear]
LAYER_TYPES = {"Embedding": Embedding, "Conv2d": Conv2d, "Pool2d": Pool2d, "EGRU": EGRU, "Linear": Linear}
QUANT_TYPES = {"EGRU": EGRUQuant, "Linear": LinearQuant, "Conv2d": LinearQuant}


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
        return self.layers[-1].out_size

    @property
    def frontend(self) -> tuple[Layer, ...]:
        """The layers before the first EGRU (embedding, or convolutions/pooling/linear on frames)."""
        first = next(i for i, layer in enumerate(self.layers) if isinstance(layer, EGRU))
        return self.layers[:first]

    def validate(self) -> None:
        if self.output_mode not in OUTPUT_MODES:
            raise IRError(f"Graph.output_mode: expected one of {OUTPUT_MODES}, got {self.output_mode!r}")
        if not any(isinstance(layer, EGRU) for layer in self.layers):
            raise IRError("Graph.layers: an EGRU graph needs at least one EGRU layer")
        last_rank = -1
        shape = self.input.shape
        seen_egru = False
        for i, layer in enumerate(self.layers):
            kind = type(layer)
            if kind not in (Embedding, Conv2d, Pool2d, EGRU, Linear):
                raise IRError(f"Graph.layers[{i}]: unknown layer type {kind.__name__}")
            seen_egru = seen_egru or kind is EGRU
            rank = {Embedding: 0, Conv2d: 1, Pool2d: 1, EGRU: 3}.get(kind, 4 if seen_egru else 2)
            if rank < last_rank or (rank == 0 and i != 0):
                raise IRError(f"Graph.layers[{i}]: layers must be ordered {ORDER_HELP}")
            last_rank = rank
            if kind is Embedding and not self.input.tokens:
                raise IRError("Graph.layers[0]: an Embedding needs a token input (Input.tokens=True)")
            if kind in FRAME_LAYERS and len(shape) != 3:
                raise IRError(f"Graph.layers[{i}]: {kind.__name__} needs a frame (C, H, W) as input "
                              f"(Input.frame, or a convolution/pooling before it), got shape {shape}")
            quant = getattr(layer, "qweight" if kind is Embedding else "quant", None)
            if kind is not Pool2d:
                if quant is None and self.quantized:
                    raise IRError(f"Graph.layers[{i}]: graph has profile {self.profile!r} but layer is float")
                if quant is not None and not self.quantized:
                    raise IRError(f"Graph.layers[{i}]: quantized layer in a float graph")
            try:
                if kind in FRAME_LAYERS:
                    layer.validate(shape)
                    shape = layer.out_shape(shape)
                else:
                    layer.validate(int(np.prod(shape)))  # a frame is read flattened (C, H, W)
                    shape = (layer.out_size,)
            except IRError as e:
                raise IRError(f"layer {i}: {e}") from None
        if self.input.tokens and not isinstance(self.layers[0], Embedding):
            raise IRError("Graph.layers[0]: a token input needs an Embedding first")

    def with_layers(self, layers, **changes) -> "Graph":
        return replace(self, layers=tuple(layers), **changes)

    def shapes(self) -> list[tuple[int, ...]]:
        """What each layer receives per step: (C, H, W) frames or (size,) vectors; then the output."""
        shapes = [self.input.shape]
        for layer in self.layers:
            shapes.append(layer.out_shape(shapes[-1]) if isinstance(layer, FRAME_LAYERS) else (layer.out_size,))
        return shapes

    def placement(self) -> list[str]:
        """Where each layer runs once compiled for a chip: the front-end on the host (with the
        integer specification's own functions), everything from the first EGRU on the chip."""
        host = len(self.frontend)
        return ["host" if i < host else "chip" for i in range(len(self.layers))]

    def summary(self) -> dict:
        layers = []
        shapes = self.shapes()
        placement = self.placement()
        for i, layer in enumerate(self.layers):
            entry = {"index": i, "type": type(layer).__name__, "in": _size(shapes[i]), "out": _size(shapes[i + 1]),
                     "placement": placement[i]}
            entry["parameters"] = int(sum(getattr(layer, f.name).size for f in fields(layer)
                                          if isinstance(getattr(layer, f.name), np.ndarray)))
            if isinstance(layer, EGRU):
                thr = layer.thr * (layer.quant.thr.scale if layer.quant else 1.0)
                entry["thr"] = {"min": float(thr.min()), "mean": float(thr.mean()), "max": float(thr.max())}
                entry["use_trace"] = layer.use_trace
                entry["zoneout"] = layer.zoneout
            if isinstance(layer, (Linear, Conv2d)):
                entry["relu"] = layer.relu
            if isinstance(layer, Pool2d):
                entry["pool"] = layer.kind
            if isinstance(layer, FRAME_LAYERS):
                entry["window"] = {"kernel": layer.kernel, "stride": layer.stride, "padding": layer.padding}
            layers.append(entry)
        return {
            "schema_version": SCHEMA_VERSION,
            "input": _input_dict(self.input),
            "output_mode": self.output_mode,
            "profile": self.profile,
            "parameters": int(sum(entry["parameters"] for entry in layers)),
            "layers": layers,
        }


ORDER_HELP = "Embedding (token input) or Conv2d/Pool2d* (frame input) then Linear*, then EGRU+, then Linear*"


def _size(shape: tuple[int, ...]) -> int | list[int]:
    return shape[0] if len(shape) == 1 else list(shape)


def _input_dict(inp: Input) -> dict:
    d = {"size": inp.size, "tokens": inp.tokens}
    if inp.frame is not None:
        d["frame"] = list(inp.frame)
    return d


# --------------------------------------------------------------------------- serialization

GRAPH_JSON = "graph.json"
WEIGHTS_NPZ = "weights.npz"


def _qtype_from(d: dict, where: str) -> QType:
    try:
        return QType(int(d["bits"]), int(d["frac"]), bool(d["signed"]))
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: int(Infinity)
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
        "input": _input_dict(graph.input),
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
        frame = doc["input"].get("frame")
        inp = Input(int(doc["input"]["size"]), bool(doc["input"]["tokens"]),
                    tuple(int(n) for n in frame) if frame is not None else None)
        return Graph(inp, tuple(layers), doc["output_mode"], doc.get("profile"), doc.get("metadata") or {})
    except IRError as e:  # from a layer or the graph: say which file described it
        raise (e if str(e).startswith(where) else IRError(f"{where}: {e}")) from None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
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


def load(directory: str | os.PathLike, inside: str | os.PathLike | None = None) -> Graph:
    """Read a graph directory written by :func:`save` (also the graph of a bundle).

    Its files must resolve inside ``inside`` (default: ``directory``; a bundle passes its own
    folder for its ``float/`` graph): a symlink out of it would make a copied or unpacked graph
    read someone else's file.
    """
    directory = Path(directory)
    root = Path(inside if inside is not None else directory)
    gpath = directory / GRAPH_JSON
    wpath = directory / WEIGHTS_NPZ
    for p in (gpath, wpath):
        if not p.is_file():
            raise IRError(f"{p}: missing (a graph directory holds {GRAPH_JSON} and {WEIGHTS_NPZ})")
        if not p.resolve().is_relative_to(root.resolve()):
            raise IRError(f"{p}: symbolic link to {p.resolve()}, outside the graph directory {root}")
    doc = read_json(gpath, IRError)
    arrays = safe_io.load_npz(wpath, IRError)
    return from_json_and_arrays(doc, arrays, str(gpath))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
