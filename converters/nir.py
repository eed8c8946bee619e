"""Float IR <-> NIR (Neuromorphic Intermediate Representation, nir 1.0.8).

Standard NIR nodes carry every linear map (``Input``, ``Output``, ``Linear`` for the embedding,
``Affine`` for input kernels and readouts, ``Linear`` for recurrent kernels); two extension
nodes carry what NIR 1.0 cannot express: ``EGRUCell`` (gates, state, threshold, trace) and
``ReLU``.  ``docs/nir_egrucell.md`` specifies both.  Graph layout, per EGRU layer ``egru{i}``::

    ... -> egru{i}_input_kernel (Affine [4H, I]) -> egru{i} (EGRUCell) -> ...
                      egru{i}_recurrent_kernel (Linear [4H, H or 2H]) <-'  (cycle: y of step t-1)

An ``EGRUCell`` receives the sum of its incoming edges, ``u`` of size 4H, laid out
``[z, r, g-input part, g-recurrent part]``: the input kernel fills slots 0..2, the recurrent
kernel slots 0, 1, 3, so the reset gate can scale only the recurrent part of ``g``.  A cell with
``trace`` set outputs ``[y, trace]`` (2H) and is followed by a selector ``Linear`` ``[0 | I]``.

A frame front-end (``Input`` of shape [C, H, W]) uses the standard ``Conv2d``, ``AvgPool2d``
(padded zeros counted, torch's default) and ``Flatten`` (before the first vector layer), plus a
third extension node, ``MaxPool2d``: NIR 1.0.8 has no max pooling.

``nir.read`` rejects unknown node types by design, and follows whatever links the file holds, so
files are read here with ``safe_io.read_hdf5_group``: no links, external storage or virtual
datasets, every size checked before reading.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import nir
import numpy as np

from egru_deploy import safe_io
from egru_deploy.errors import ConversionError
from egru_deploy.ir import EGRU, Conv2d, Embedding, Graph, Input, IRError, Linear, Pool2d
from egru_deploy.profiles import TRACE_DECAY

FORMAT = "egru-deploy"
FORMAT_VERSION = 1
FEATURES, ONE_HOT_TOKENS = "features", "one-hot-tokens"


# NIRNode subclasses cannot be frozen: NIR's base class assigns input_type/output_type after init.
@dataclass(eq=False)
class EGRUCell(nir.NIRNode):
    """EGRU gate and state dynamics of H units (extension node; see docs/nir_egrucell.md)."""

    thr: np.ndarray  # [H] float32, firing threshold and soft-reset amount
    recurrent_bias: np.ndarray  # [3H] float32, EvNN order z, r, g
    trace: bool = False  # output [y, trace] (2H) instead of y (H)
    trace_decay: float = TRACE_DECAY
    zoneout: float = 0.0  # p: c' = p * c + (1 - p) * c' before the threshold (EvNN's eval zoneout)

    def __post_init__(self):
        hidden = self.thr.shape[0]
        self.input_type = {"input": np.array([4 * hidden])}
        self.output_type = {"output": np.array([2 * hidden if self.trace else hidden])}


@dataclass(eq=False)
class ReLU(nir.NIRNode):
    """Element-wise max(x, 0) (extension node: NIR 1.0 has no ReLU)."""

    shape: np.ndarray  # e.g. [O]

    def __post_init__(self):
        self.input_type = {"input": np.asarray(self.shape)}
        self.output_type = {"output": np.asarray(self.shape)}


@dataclass(eq=False)
class MaxPool2d(nir.NIRNode):
    """Max pooling over square windows, padding never selected (extension node: NIR 1.0.8 has none).
    Fields as NIR's ``AvgPool2d``; shapes are inferred along the graph, as for ``AvgPool2d``."""

    kernel_size: np.ndarray  # (height, width)
    stride: np.ndarray
    padding: np.ndarray

    def __post_init__(self):
        self.input_type = {"input": None}
        self.output_type = {"output": None}


EXTENSION_NODES = {"EGRUCell": EGRUCell, "ReLU": ReLU, "MaxPool2d": MaxPool2d}
STANDARD_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "AvgPool2d", "Flatten")


# --------------------------------------------------------------------------- export

def to_nir(graph: Graph) -> nir.NIRGraph:
    """The NIR graph of a float IR graph."""
    if graph.quantized:
        raise ConversionError(f"NIR export: the graph is quantized for profile {graph.profile!r}; NIR holds "
                              f"float weights only (export the float model, or use --format onnx)")
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(graph.input.shape))}
    edges: list[tuple[str, str]] = []
    last = "input"
    shapes = graph.shapes()

    def append(name: str, node: nir.NIRNode) -> None:
        nonlocal last
        nodes[name] = node
        edges.append((last, name))
        last = name

    egru_index = linear_index = conv_index = pool_index = 0
    for i, layer in enumerate(graph.layers):
        shape, out_shape = shapes[i], shapes[i + 1]
        if len(shape) == 3 and not isinstance(layer, (Conv2d, Pool2d)):  # a vector layer reads the frame flattened
            append("flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
        if isinstance(layer, Conv2d):
            name = f"conv{conv_index}"
            conv_index += 1
            append(name, nir.Conv2d(input_shape=shape[1:], weight=layer.weight, stride=layer.stride,
                                    padding=layer.padding, dilation=1, groups=1, bias=layer.bias))
            if layer.relu:
                append(f"{name}_relu", ReLU(shape=np.array(out_shape)))
        elif isinstance(layer, Pool2d):
            window = {f: np.array([v, v]) for f, v in (("kernel_size", layer.kernel), ("stride", layer.stride),
                                                         ("padding", layer.padding))}
            pool = (MaxPool2d if layer.kind == "max" else nir.AvgPool2d)(**window)
            pool.input_type, pool.output_type = {"input": np.array(shape)}, {"output": np.array(out_shape)}
            append(f"pool{pool_index}", pool)  # types given: NIR infers none for pooling
            pool_index += 1
        elif isinstance(layer, Embedding):  # token t enters as a one-hot vector: W.T @ onehot(t) = W[t]
            append("embedding", nir.Linear(weight=np.ascontiguousarray(layer.weight.T)))
        elif isinstance(layer, EGRU):
            name = f"egru{egru_index}"
            egru_index += 1
            h = layer.hidden
            zero = np.zeros((h, layer.in_size), np.float32)
            append(f"{name}_input_kernel", nir.Affine(
                weight=np.concatenate([layer.kernel.T, zero]),
                bias=np.concatenate([layer.bias, np.zeros(h, np.float32)])))
            append(name, EGRUCell(thr=layer.thr, recurrent_bias=layer.recurrent_bias, trace=layer.use_trace,
                                  zoneout=layer.zoneout))
            rk = layer.recurrent_kernel.T  # [3H, H]
            recurrent = np.concatenate([rk[:2 * h], np.zeros((h, h), np.float32), rk[2 * h:]])
            if layer.use_trace:  # the cell outputs [y, trace]; the recurrence reads y only
                recurrent = np.concatenate([recurrent, np.zeros_like(recurrent)], axis=1)
            nodes[f"{name}_recurrent_kernel"] = nir.Linear(weight=recurrent)
            edges += [(name, f"{name}_recurrent_kernel"), (f"{name}_recurrent_kernel", name)]
            if layer.use_trace:
                append(f"{name}_trace", nir.Linear(weight=_trace_selector(h)))
        elif isinstance(layer, Linear):
            name = f"linear{linear_index}"
            linear_index += 1
            append(name, nir.Affine(weight=layer.weight, bias=layer.bias))
            if layer.relu:
                append(f"{name}_relu", ReLU(shape=np.array([layer.out_size])))
    append("output", nir.Output(output_type=np.array([graph.out_size])))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "input_encoding": ONE_HOT_TOKENS if graph.input.tokens else FEATURES,
        "output_mode": graph.output_mode,
        "ir_metadata": json.dumps(graph.metadata, default=str),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _trace_selector(hidden: int) -> np.ndarray:
    """[H, 2H] weight picking the trace half of a trace cell's [y, trace] output."""
    return np.concatenate([np.zeros((hidden, hidden), np.float32), np.eye(hidden, dtype=np.float32)], axis=1)


def export(graph: Graph, path: str | os.PathLike) -> None:
    nir.write(path, to_nir(graph))


# --------------------------------------------------------------------------- import

def read_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """Read a NIR file that may hold the extension nodes (``nir.read`` would reject them)."""
    doc = safe_io.read_hdf5_group(path, "node", ConversionError, _text_field, what="NIR (HDF5) file")
    if not isinstance(doc.get("type"), str) or doc["type"] != "NIRGraph":
        raise ConversionError(f"{path}: expected a NIR file whose top-level node is a NIRGraph")
    groups = {name: _node_group(path, name, d) for name, d in _group(path, "/node/nodes", doc.get("nodes", {})).items()}
    metadata = _group(path, "/node/metadata", doc.get("metadata", {}))
    for key, value in metadata.items():
        if not isinstance(value, (str, np.generic)):  # h5py reads scalars as str or NumPy scalars
            kind = "a group" if isinstance(value, dict) else "an array"
            raise ConversionError(f"{path}: HDF5 /node/metadata/{key}: expected one text or number, got {kind}")
    try:
        nodes = {name: _node_from_dict(name, d) for name, d in groups.items()}
        edges = [(a, b) for a, b in doc.get("edges", [])]
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    except (TypeError, ValueError):
        raise ConversionError(f"{path}: malformed edge list, expected pairs of node names") from None
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def _text_field(where: str) -> bool:
    """HDF5 paths of a NIR file that hold strings: node types, the edge list, metadata."""
    return where.rsplit("/", 1)[-1] in ("type", "edges") or "/metadata/" in where


def _group(path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: HDF5 {where}: expected a group, got a dataset")
    return value


def _node_group(path, name: str, value) -> dict:
    """A node: a group of datasets (its fields) and at most a ``metadata`` group."""
    where = f"/node/nodes/{name}"
    for field, item in _group(path, where, value).items():
        if field == "metadata":
            _group(path, f"{where}/metadata", item)
        elif isinstance(item, dict):
            raise ConversionError(f"{path}: HDF5 {where}/{field}: expected a dataset (a node field), got a group")
    return value


def _node_from_dict(name: str, d: dict) -> nir.NIRNode:
    kind = d.get("type")
    if not isinstance(kind, str):
        raise ConversionError(f"node {name!r}: 'type' must be the text naming a NIR node type, "
                              f"got {'nothing' if kind is None else type(kind).__name__}")
    try:
        if kind in EXTENSION_NODES:
            fields = {k: v for k, v in d.items() if k not in ("type", "metadata")}
            return EXTENSION_NODES[kind](**fields)
        if kind in STANDARD_NODES:
            return nir.dict2NIRNode(dict(d))
    except (TypeError, ValueError, KeyError, AssertionError, IndexError, AttributeError) as e:
        raise ConversionError(f"node {name!r} ({kind}): malformed fields ({type(e).__name__}: {e})") from None
    raise ConversionError(f"node {name!r}: NIR node type {kind!r} is not part of an egru-deploy EGRU graph "
                          f"(expected one of {', '.join(STANDARD_NODES + tuple(EXTENSION_NODES))})")


@dataclass(frozen=True)
class _Edges:
    """Successors and predecessors of every node of a NIR graph."""

    succ: dict
    pred: dict

    @classmethod
    def of(cls, g: nir.NIRGraph) -> "_Edges":
        succ = {name: [] for name in g.nodes}
        pred = {name: [] for name in g.nodes}
        for a, b in g.edges:
            for end in (a, b):
                if end not in g.nodes:
                    raise ConversionError(f"edge ({a!r}, {b!r}): node {end!r} does not exist")
            succ[a].append(b)
            pred[b].append(a)
        return cls(succ, pred)

    def next(self, name: str, skip: str | None = None) -> str:
        """The one successor of ``name`` (other than ``skip``)."""
        following = [b for b in self.succ[name] if b != skip]
        if len(following) != 1:
            raise ConversionError(f"node {name!r}: expected exactly one outgoing edge along the layer chain, "
                                  f"got {following or 'none'}")
        return following[0]

    def expect_preds(self, name: str, expected: set) -> None:
        if set(self.pred[name]) != expected or len(self.pred[name]) != len(expected):
            raise ConversionError(f"node {name!r}: expected incoming edges from {sorted(expected)}, "
                                  f"got {sorted(self.pred[name]) or 'none'}")


def _weight(name: str, node, kind: type, shape: tuple) -> np.ndarray:
    if not isinstance(node, kind):
        raise ConversionError(f"node {name!r}: expected a NIR {kind.__name__}, got {type(node).__name__}")
    weight = np.asarray(node.weight)
    if weight.shape != shape:
        raise ConversionError(f"node {name!r}: expected weight shape {shape}, got {weight.shape}")
    return weight.astype(np.float32)


def _vector(name: str, field: str, value, size: int) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != (size,):
        raise ConversionError(f"node {name!r}: expected {field} shape ({size},), got {value.shape}")
    return value.astype(np.float32)


def _expect_zero(name: str, block: np.ndarray, what: str) -> None:
    if np.any(block):
        raise ConversionError(f"node {name!r}: {what} must be zero in an egru-deploy EGRU graph")


def from_nir(g: nir.NIRGraph) -> Graph:
    """The IR of a NIR graph written by :func:`to_nir` (or by any tool following the same layout)."""
    if g.metadata.get("format") != FORMAT:
        raise ConversionError(f"NIR graph metadata: format {g.metadata.get('format')!r}, expected {FORMAT!r} "
                              f"(only EGRU graphs in the egru-deploy layout can be imported)")
    version = g.metadata.get("format_version", 0)
    if not isinstance(version, (int, np.integer)):
        raise ConversionError(f"NIR graph metadata: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ConversionError(f"NIR graph metadata: format_version {version} is newer than "
                              f"this egru-deploy reads ({FORMAT_VERSION}); upgrade egru-deploy")
    edges = _Edges.of(g)
    inputs = [n for n, node in g.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in g.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionError(f"NIR graph: expected one Input and one Output node, got inputs {inputs}, "
                              f"outputs {outputs}")
    shape = np.asarray(g.nodes[inputs[0]].input_type["input"])
    if shape.shape not in ((1,), (3,)) or not np.issubdtype(shape.dtype, np.integer):
        raise ConversionError(f"node {inputs[0]!r}: expected an input shape [size] or a frame [C, H, W], "
                              f"got {shape.tolist()}")
    frame = tuple(int(n) for n in shape) if shape.shape == (3,) else None  # the frame each step holds
    try:
        graph_input = Input(int(np.prod(shape)), tokens=g.metadata.get("input_encoding") == ONE_HOT_TOKENS,
                            frame=frame)
    except IRError as e:
        raise ConversionError(f"node {inputs[0]!r}: {e}") from None
    size = graph_input.size
    layers = []
    visited = {inputs[0]}
    chain_end, skip = inputs[0], None  # the node the layer chain continues from, its recurrent successor
    while True:
        cur = edges.next(chain_end, skip)
        edges.expect_preds(cur, {chain_end})
        node = g.nodes[cur]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Flatten):  # frames -> vectors, (C, H, W) row-major
            _flatten(cur, node, frame)
            size, frame, chain_end, skip = int(np.prod(frame)), None, cur, None
            visited.add(cur)
            continue
        if isinstance(node, FRAME_NODES):
            layer, names = _frame_layer(g, edges, cur, frame)
            layers.append(layer)
            visited.update(names)
            frame, chain_end, skip = layer.out_shape(frame), names[-1], None
            continue
        if frame is not None:
            raise ConversionError(f"node {cur!r}: expected a Conv2d, AvgPool2d, MaxPool2d or a Flatten (frames "
                                  f"{list(frame)} reach it), got {type(node).__name__}")
        if graph_input.tokens and not layers:
            layer, names, skip = _embedding_layer(cur, node, size), [cur], None
        elif not isinstance(node, nir.Affine):
            raise ConversionError(f"node {cur!r}: expected an Affine (EGRU input kernel or readout) or the "
                                  f"Output here, got {type(node).__name__}")
        elif isinstance(g.nodes[edges.next(cur)], EGRUCell):
            layer, names, skip = _egru_layer(g, edges, cur, size)
        else:
            layer, names, skip = _readout_layer(g, edges, cur, size)
        layers.append(layer)
        visited.update(names)
        size = layer.out_size
        chain_end = names[-1]
    out_shape = np.asarray(node.output_type["output"])
    if out_shape.tolist() != [size]:
        raise ConversionError(f"node {cur!r}: expected output shape [{size}], got {out_shape.tolist()}")
    visited.add(cur)
    stray = sorted(set(g.nodes) - visited)
    if stray:
        raise ConversionError(f"node {stray[0]!r}: not on the path from the Input to the Output")
    ir_metadata = safe_io.loads_json(g.metadata.get("ir_metadata", "{}"), "NIR graph metadata: ir_metadata",
                                     ConversionError)
    try:
        return Graph(graph_input, tuple(layers), g.metadata.get("output_mode", "sequence"), metadata=ir_metadata)
    except (IRError, TypeError) as e:
        raise ConversionError(f"NIR graph: not a valid EGRU graph ({e})") from None


FRAME_NODES = (nir.Conv2d, nir.AvgPool2d, MaxPool2d)


def _pair(name: str, field: str, value) -> int:
    """A square window parameter: one integer, or the same integer for height and width."""
    values = np.asarray(value).reshape(-1)
    if values.size not in (1, 2) or not np.issubdtype(values.dtype, np.integer) or values.min() != values.max():
        raise ConversionError(f"node {name!r}: expected {field} as one integer or an equal (height, width) pair, "
                              f"got {values.tolist()}")
    return int(values[0])


def _frame_layer(g: nir.NIRGraph, edges: _Edges, name: str, frame) -> tuple[Conv2d | Pool2d, list[str]]:
    """Parse Conv2d [-> ReLU] or a pooling node on frames ``frame`` (C, H, W); return (layer, names)."""
    node = g.nodes[name]
    if frame is None:
        raise ConversionError(f"node {name!r}: {type(node).__name__} needs frames, but vectors reach it")
    window = {"stride": _pair(name, "stride", node.stride), "padding": _pair(name, "padding", node.padding)}
    try:
        if not isinstance(node, nir.Conv2d):
            kind = "max" if isinstance(node, MaxPool2d) else "avg"
            layer = Pool2d(kind, _pair(name, "kernel_size", node.kernel_size), **window)
            layer.validate(frame)
            layer.out_shape(frame)
            return layer, [name]
        if isinstance(node.padding, str) or _pair(name, "dilation", node.dilation) != 1 or node.groups != 1:
            raise ConversionError(f"node {name!r}: only integer padding, dilation 1 and groups 1 are supported")
        weight = np.asarray(node.weight)
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3] or weight.shape[1] != frame[0]:
            raise ConversionError(f"node {name!r}: expected a weight [O, {frame[0]}, k, k], got {list(weight.shape)}")
        if node.input_shape is not None and np.asarray(node.input_shape).tolist() != list(frame[1:]):
            raise ConversionError(f"node {name!r}: input_shape {np.asarray(node.input_shape).tolist()} does not "
                                  f"match the frames {list(frame)} reaching it")
        bias = _vector(name, "bias", node.bias, weight.shape[0])
        following = edges.next(name)
        relu = isinstance(g.nodes[following], ReLU)
        layer = Conv2d(weight.astype(np.float32), bias, relu=relu, **window)
        layer.validate(frame)
        out = layer.out_shape(frame)
    except IRError as e:
        raise ConversionError(f"node {name!r}: {e}") from None
    if not relu:
        return layer, [name]
    edges.expect_preds(following, {name})
    shape = np.asarray(g.nodes[following].shape).tolist()
    if shape != list(out):
        raise ConversionError(f"node {following!r}: expected shape {list(out)}, got {shape}")
    return layer, [name, following]


def _flatten(name: str, node, frame) -> None:
    """A ``Flatten`` of the whole frame (start_dim 0, end_dim -1: NIR shapes have no batch axis)."""
    if frame is None:
        raise ConversionError(f"node {name!r}: Flatten needs frames, but vectors reach it")
    shape = node.input_type.get("input")
    if (node.start_dim, node.end_dim) != (0, -1) or shape is None or np.asarray(shape).tolist() != list(frame):
        raise ConversionError(f"node {name!r}: expected a Flatten of the whole frame {list(frame)} "
                              f"(start_dim 0, end_dim -1)")


def _rows(name: str, node) -> int:
    weight = getattr(node, "weight", None)
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        raise ConversionError(f"node {name!r}: expected a 2-D weight [out, in]")
    return weight.shape[0]


def _embedding_layer(name: str, node, vocab: int) -> Embedding:
    weight = _weight(name, node, nir.Linear, (_rows(name, node), vocab))
    return Embedding(np.ascontiguousarray(weight.T))


def _egru_layer(g: nir.NIRGraph, edges: _Edges, kernel_name: str, in_size: int):
    """Parse input kernel -> cell (<-> recurrent kernel) [-> trace selector]; return (EGRU, names, skip)."""
    cell_name = edges.next(kernel_name)
    cell = g.nodes[cell_name]
    thr = np.asarray(cell.thr)
    if thr.ndim != 1:
        raise ConversionError(f"node {cell_name!r}: expected thr of shape [H], got {thr.shape}")
    h = thr.shape[0]
    if np.float32(cell.trace_decay) != np.float32(TRACE_DECAY):
        raise ConversionError(f"node {cell_name!r}: trace_decay {cell.trace_decay} is not supported "
                              f"(expected {TRACE_DECAY})")
    trace = bool(cell.trace)
    zoneout = np.asarray(cell.zoneout)
    if zoneout.shape != () or zoneout.dtype.kind not in "fiu" or not 0.0 <= float(zoneout) < 1.0:
        raise ConversionError(f"node {cell_name!r}: expected zoneout as one number in [0, 1), got "
                              f"{zoneout.tolist() if zoneout.dtype.kind in 'biufc' else zoneout.dtype}")
    out = 2 * h if trace else h
    kernel_node = g.nodes[kernel_name]
    kernel = _weight(kernel_name, kernel_node, nir.Affine, (4 * h, in_size))
    bias = _vector(kernel_name, "bias", kernel_node.bias, 4 * h)
    _expect_zero(kernel_name, kernel[3 * h:], "weight rows 3H:4H (the recurrent-candidate slot)")
    _expect_zero(kernel_name, bias[3 * h:], "bias entries 3H:4H (the recurrent-candidate slot)")
    recurrent_names = [b for b in edges.succ[cell_name] if b in edges.pred[cell_name]]
    if len(recurrent_names) != 1:
        raise ConversionError(f"node {cell_name!r}: expected one recurrent Linear feeding back into the cell, "
                              f"got {recurrent_names or 'none'}")
    recurrent_name = recurrent_names[0]
    edges.expect_preds(cell_name, {kernel_name, recurrent_name})
    edges.expect_preds(recurrent_name, {cell_name})
    edges.next(recurrent_name)  # the cell only
    rk = _weight(recurrent_name, g.nodes[recurrent_name], nir.Linear, (4 * h, out))
    _expect_zero(recurrent_name, rk[2 * h:3 * h], "weight rows 2H:3H (the input-candidate slot)")
    _expect_zero(recurrent_name, rk[:, h:], "weight columns H:2H (the trace half of the cell output)")
    layer = EGRU(
        kernel=np.ascontiguousarray(kernel[:3 * h].T),
        recurrent_kernel=np.ascontiguousarray(np.concatenate([rk[:2 * h, :h], rk[3 * h:, :h]]).T),
        bias=bias[:3 * h],
        recurrent_bias=_vector(cell_name, "recurrent_bias", cell.recurrent_bias, 3 * h),
        thr=thr.astype(np.float32),
        use_trace=trace,
        zoneout=float(zoneout),
    )
    names = [kernel_name, recurrent_name, cell_name]
    if not trace:
        return layer, names, recurrent_name
    selector_name = edges.next(cell_name, skip=recurrent_name)
    edges.expect_preds(selector_name, {cell_name})
    selector = _weight(selector_name, g.nodes[selector_name], nir.Linear, (h, 2 * h))
    if not np.array_equal(selector, _trace_selector(h)):
        raise ConversionError(f"node {selector_name!r}: expected the trace selector weight [0 | I] after "
                              f"trace cell {cell_name!r}")
    return layer, names + [selector_name], None


def _readout_layer(g: nir.NIRGraph, edges: _Edges, name: str, in_size: int):
    """Parse Affine [-> ReLU]; return (Linear, names, skip)."""
    node = g.nodes[name]
    weight = _weight(name, node, nir.Affine, (_rows(name, node), in_size))
    bias = _vector(name, "bias", node.bias, weight.shape[0])
    following = edges.next(name)
    relu = isinstance(g.nodes[following], ReLU)
    names = [name]
    if relu:
        edges.expect_preds(following, {name})
        shape = np.asarray(g.nodes[following].shape).tolist()
        if shape != [weight.shape[0]]:
            raise ConversionError(f"node {following!r}: expected shape [{weight.shape[0]}], got {shape}")
        names.append(following)
    return Linear(weight, bias, relu=relu), names, None


def load(path: str | os.PathLike) -> Graph:
    """Import a ``.nir`` file written by :func:`export`."""
    nir_graph = read_nir(path)
    try:
        return from_nir(nir_graph)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    except (TypeError, ValueError) as e:  # field values of the wrong kind (strings for weights, ...)
        raise ConversionError(f"{path}: malformed node field ({type(e).__name__}: {e})") from None
