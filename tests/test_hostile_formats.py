"""Hostile and careless model and data files: every reader refuses them with one line, no traceback.

The corpus is generated here: valid files from the project's own writers (NIR, ONNX, IR graph
directories, checkpoints, .npy/.npz), then corrupted with h5py, onnx, zipfile or raw bytes. Each
case runs the real commands (inspect, export, emulate, compile) and checks the error contract of
``hostile.assert_hostile_case``; the security cases also check that no output holds a planted
secret. Hypothesis mutates NIR structure and ONNX protobuf fields beside the static cases.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
import torch
from hostile import SECRET, assert_hostile_case, assert_no_secret, plant_secret
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format
from onnx import TensorProto, helper, numpy_helper
from test_evnn import CLASSIFIER, make_case, state_dict
from test_nir import config_graph, random_inputs

from egru_deploy import bundle, ir, reference, safe_io
from egru_deploy.converters import evnn, load_model
from egru_deploy.converters import nir as nir_converter
from egru_deploy.converters import onnx as onnx_converter
from egru_deploy.errors import UserError

GRAPH = config_graph("1layer-seq", seed=3)  # 6 inputs, 8 units, readout of 3, sequence output
X = random_inputs(GRAPH, seed=3, batch=2, steps=4)
FUZZ = settings(max_examples=25, deadline=None)


@pytest.fixture
def corpus(tmp_path):
    """``tmp_path`` holding valid inputs (``in/``) and, outside them, a secret (``outside/``)."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "x.npy", X)
    np.savez(folder / "calib.npz", x=X)
    ir.save(GRAPH, folder / "graph")
    plant_secret(tmp_path / "outside")
    return tmp_path


def model_commands(model: Path, root: Path) -> list[list]:
    """The commands that read a model file, writing (if they wrongly succeeded) under ``root/out``."""
    x = root / "in" / "x.npy"
    return [["inspect", model],
            ["export", model, "--format", "onnx", "-o", root / "out" / "m.onnx"],
            ["export", model, "--format", "nir", "-o", root / "out" / "m.nir"],
            ["emulate", model, "--input", x, "--output", root / "out" / "y.npy"]]


def assert_every_command_refuses(model: Path, root: Path, *fragments: str) -> None:
    for args in model_commands(model, root):
        assert_hostile_case(args, root, str(model), *fragments)
    assert_no_secret(root)


def assert_loader_contract(path: Path) -> None:
    """A generated file either loads as a valid graph or fails with one UserError line."""
    try:
        graph = load_model(path)
    except UserError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return
    assert np.all(np.isfinite(reference.run_float(graph, random_inputs(graph, seed=0, batch=1, steps=2)).output))


# --------------------------------------------------------------------------- NIR (HDF5)

def secret_hdf5(root: Path) -> Path:
    """An HDF5 file outside the inputs whose dataset ``/data`` holds the secret bytes."""
    path = root / "outside" / "hdf5" / "secret.bin"  # assert_no_secret skips files of this name
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f["data"] = np.frombuffer(SECRET * 64, np.float32)[:GRAPH.out_size]
    return path


def nir_file(root: Path, change) -> Path:
    """A valid export of GRAPH, then ``change(h5py.File, root)`` applied in place."""
    path = root / "in" / "model.nir"
    nir_converter.export(GRAPH, path)
    with h5py.File(path, "r+") as f:
        change(f, root)
    return path


BIAS = "node/nodes/linear0/bias"  # float32 [3]
WEIGHT = "node/nodes/egru0_input_kernel/weight"  # float32 [32, 6]


def replace(f, name: str, **dataset):
    del f[name]
    f.create_dataset(name, **dataset)


def relink(f, name: str, link):
    del f[name]
    f[name] = link


def deep_groups(f, root):
    group = f["node/nodes/linear0"].create_group("metadata")
    for level in range(20):
        group = group.create_group(f"level{level}")


def half_written(f, root):
    replace(f, WEIGHT, shape=(32, 6), dtype="f4", chunks=(1, 6), compression="gzip")
    f[WEIGHT][:16] = 1.0


def virtual_bias(f, root):
    layout = h5py.VirtualLayout(shape=(GRAPH.out_size,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(secret_hdf5(root)), "data", shape=(GRAPH.out_size,))
    del f[BIAS]
    f.create_virtual_dataset(BIAS, layout)


def self_link(f, root):
    group = f["node/nodes/linear0"]
    group["loop"] = group  # a hard link to itself: a cycle


NIR_CASES = {
    # links and storage that would read other files
    "external_link": (lambda f, root: relink(f, BIAS, h5py.ExternalLink(str(secret_hdf5(root)), "/data")),
                      "/node/nodes/linear0/bias", "external link"),
    "external_link_root": (lambda f, root: relink(f, "node", h5py.ExternalLink(str(secret_hdf5(root)), "/")),
                           "/node", "external link"),
    "soft_link": (lambda f, root: relink(f, BIAS, h5py.SoftLink("/node/nodes/egru0/thr")), "/node/nodes/linear0/bias",
                  "soft link"),
    "external_storage": (lambda f, root: replace(f, BIAS, shape=(GRAPH.out_size,), dtype="f4", external=[
                             (str(root / "outside" / "secret.bin"), 0, 4 * GRAPH.out_size)]),
                         "/node/nodes/linear0/bias", "external file"),
    "virtual_dataset": (virtual_bias, "/node/nodes/linear0/bias", "virtual dataset"),
    # malformed structure
    "nodes_not_a_group": (lambda f, root: replace(f, "node/nodes", data=np.zeros(3)), "/node/nodes",
                          "expected a group"),
    "metadata_not_a_group": (lambda f, root: replace(f, "node/metadata", data=np.zeros(3)), "/node/metadata",
                             "expected a group"),
    "node_not_a_group": (lambda f, root: replace(f, "node/nodes/egru0", data=np.zeros(3)), "/node/nodes/egru0",
                         "expected a group"),
    "root_not_a_group": (lambda f, root: replace(f, "node", data=np.zeros(3)), "/node", "expected a group"),
    "metadata_array": (lambda f, root: replace(f, "node/metadata/format", data=np.array([b"egru-deploy"] * 2)),
                       "/node/metadata/format", "expected one text"),
    "deep_nesting": (deep_groups, "/node/nodes/linear0/metadata", "nested deeper"),
    "hard_link_cycle": (self_link, "/node/nodes/linear0/loop", "nested deeper"),
    "committed_datatype": (lambda f, root: f.__setitem__("node/nodes/linear0/dt", np.dtype("f4")),
                           "/node/nodes/linear0/dt", "expected a group or dataset"),
    # sizes declared but not held
    "enormous_shape": (lambda f, root: replace(f, WEIGHT, shape=(10**6, 10**6), dtype="f4", chunks=(1, 1024),
                                               compression="gzip"), "/node/nodes/egru0_input_kernel/weight",
                       "declares shape [1000000, 1000000]"),
    "enormous_chunk": (lambda f, root: replace(f, WEIGHT, shape=(32, 6), maxshape=(None, None), dtype="f4",
                                               chunks=(2**20, 2**20)), "/node/nodes/egru0_input_kernel/weight",
                       "chunk shape"),
    "never_written": (lambda f, root: replace(f, WEIGHT, shape=(32, 6), dtype="f4"),
                      "/node/nodes/egru0_input_kernel/weight", "never written"),
    "half_written": (half_written, "/node/nodes/egru0_input_kernel/weight", "never written"),
    # types
    "text_weight": (lambda f, root: replace(f, BIAS, data=np.array([b"1.5"] * 3)), "/node/nodes/linear0/bias",
                    "holds text; expected numbers"),
    "compound_weight": (lambda f, root: replace(f, BIAS, data=np.zeros(3, [("a", "f4"), ("b", "i4")])),
                        "/node/nodes/linear0/bias", "not supported (expected numbers)"),
    "complex_weight": (lambda f, root: replace(f, BIAS, data=np.zeros(3, np.complex64)), "/node/nodes/linear0/bias",
                       "not supported (expected numbers)"),
    "unknown_filter": (lambda f, root: replace(f, BIAS, data=np.ones(3, "f4"), scaleoffset=2),
                       "/node/nodes/linear0/bias", "filter 6 (scaleoffset), not supported"),
    "empty_dataspace": (lambda f, root: replace(f, BIAS, data=h5py.Empty("f4")), "/node/nodes/linear0/bias",
                        "empty dataspace"),
    "bad_utf8_type": (lambda f, root: replace(f, "node/nodes/linear0/type", data=b"\xff\xfe",
                                              dtype=h5py.string_dtype()), "/node/nodes/linear0/type", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(NIR_CASES))
def test_hostile_nir(corpus, case):
    change, *fragments = NIR_CASES[case]
    path = nir_file(corpus, change)
    assert_every_command_refuses(path, corpus, *fragments)


def test_valid_nir_still_loads(corpus):
    path = nir_file(corpus, lambda f, root: None)
    assert load_model(path).summary() == GRAPH.summary()


def _valid_nir_bytes() -> bytes:
    buffer = io.BytesIO()
    nir_converter.export(GRAPH, buffer)
    return buffer.getvalue()


def _object_names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return sorted(names)


VALID_NIR = _valid_nir_bytes()
with h5py.File(io.BytesIO(VALID_NIR), "r") as _f:
    NIR_OBJECTS = _object_names(_f)
NIR_MUTATIONS = ("delete", "group", "scalar", "text", "integer", "bool", "flatten", "add_dim", "grow", "nan",
                 "soft_link", "hard_link", "unwritten", "complex")


def reachable_by_hard_links(f: h5py.File, name: str) -> bool:
    """Whether every component of ``name`` still exists as a hard link (earlier mutations may remove or relink)."""
    group, parts = f, name.split("/")
    for depth, part in enumerate(parts):
        if not isinstance(group, h5py.Group) or not isinstance(group.get(part, getlink=True), h5py.HardLink):
            return False
        group = group[part] if depth < len(parts) - 1 else group
    return True


def mutate_hdf5(f: h5py.File, name: str, kind: str, other: str) -> None:
    """Change object ``name`` of ``f`` as ``kind`` says (``other``: a second object, for links)."""
    obj = f[name]
    data = obj[()] if isinstance(obj, h5py.Dataset) else None
    del f[name]
    if kind == "delete":
        return
    if kind == "soft_link":
        f[name] = h5py.SoftLink("/" + other)
    elif kind == "hard_link":
        if reachable_by_hard_links(f, other):  # else (``other`` was ``name``) the object stays deleted
            f[name] = f[other]  # the same object twice, or a cycle when ``other`` is an ancestor
    elif kind == "group" or data is None:
        f.create_group(name)
    elif kind == "unwritten":
        f.create_dataset(name, shape=np.shape(data) or (1,), dtype="f4")
    elif kind == "scalar":
        f[name] = 0.5
    elif kind == "text":
        f[name] = "text"
    elif isinstance(data, (bytes, str)) or getattr(data, "dtype", None) == object:
        f[name] = 3
    else:
        array = np.asarray(data)
        with warnings.catch_warnings():  # casts of an earlier mutation's NaN or complex values
            warnings.simplefilter("ignore")
            f[name] = {"integer": lambda: array.astype(np.int64), "bool": lambda: array > 0,
                       "flatten": lambda: array.reshape(-1), "add_dim": lambda: array[None],
                       "grow": lambda: np.concatenate([array.reshape(-1)] * 2),
                       "nan": lambda: np.full(array.shape, np.nan),
                       "complex": lambda: array.astype(np.complex64)}[kind]()


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(NIR_MUTATIONS), st.sampled_from(NIR_OBJECTS),
                                    st.sampled_from(NIR_OBJECTS)), min_size=1, max_size=3))
def test_generated_nir_structures_load_or_fail_with_one_line(tmp_path_factory, mutations):
    path = tmp_path_factory.getbasetemp() / "mutated.nir"
    path.write_bytes(VALID_NIR)
    with h5py.File(path, "r+") as f:
        for kind, name, other in mutations:
            if name.startswith("node/") and reachable_by_hard_links(f, name):
                mutate_hdf5(f, name, kind, other)
    assert_loader_contract(path)


# --------------------------------------------------------------------------- ONNX

def onnx_file(root: Path, change) -> Path:
    """GRAPH as ONNX, then ``change(model, root)``; written as raw bytes (onnx.save would touch external data)."""
    model = onnx_converter.to_onnx(GRAPH)
    change(model, root)
    path = root / "in" / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def initializer(model, name: str) -> TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def external(tensor: TensorProto, location: str, length: int) -> None:
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(length)}.items():
        tensor.external_data.add(key=key, value=value)


def external_bias(model, root):
    external(initializer(model, "layers.1.bias"), "../outside/secret.bin", 4 * GRAPH.out_size)


def external_in_scan_body(model, root):
    body = next(n for n in model.graph.node if n.op_type == "Scan").attribute[0].g
    tensor = numpy_helper.from_array(np.zeros(3, np.float32), "body.constant")
    external(tensor, str(root / "outside" / "secret.bin"), 12)
    body.initializer.append(tensor)


def external_constant_attribute(model, root):
    tensor = numpy_helper.from_array(np.zeros(3, np.float32), "value")
    external(tensor, "../outside/secret.bin", 12)
    model.graph.node.insert(0, helper.make_node("Constant", [], ["c"], name="constant", value=tensor))


def set_dims(name: str, dims: list[int]):
    def change(model, root):
        tensor = initializer(model, name)
        del tensor.dims[:]
        tensor.dims.extend(dims)
    return change


def set_type(name: str, data_type: int):
    return lambda model, root: setattr(initializer(model, name), "data_type", data_type)


def set_prop(key: str, value: str):
    def change(model, root):
        next(p for p in model.metadata_props if p.key == key).value = value
    return change


ONNX_CASES = {
    "external_data": (external_bias, "graph initializer 'layers.1.bias'", "stored outside the model file"),
    "external_data_in_scan_body": (external_in_scan_body, "initializer 'body.constant'", "stored outside"),
    "external_constant_attribute": (external_constant_attribute, "node 'constant' attribute 'value'",
                                    "stored outside"),
    "enormous_dims": (set_dims("layers.1.bias", [10**6, 10**6]), "layers.1.bias", "declares shape [1000000, 1000000]"),
    "overflowing_dims": (set_dims("layers.1.bias", [2**62, 2**62, 16]), "layers.1.bias", "declares shape"),
    "negative_dims": (set_dims("layers.1.bias", [-3]), "layers.1.bias", "negative dimension"),
    "string_tensor": (set_type("layers.1.bias", TensorProto.STRING), "layers.1.bias", "data type STRING not supported"),
    "unknown_data_type": (set_type("layers.1.bias", 999), "layers.1.bias", "data type 999 not supported"),
    "deeply_nested_metadata": (set_prop(onnx_converter.META_GRAPH, "[" * 100_000), "egru_deploy.graph",
                               "nested too deeply"),
    "metadata_wrong_types": (set_prop(onnx_converter.META_GRAPH, json.dumps({"format": "egru-deploy-graph",
                                                                            "schema_version": 1, "layers": 7})),
                             "egru_deploy.graph", "malformed graph description"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_hostile_onnx(corpus, case):
    change, *fragments = ONNX_CASES[case]
    assert_every_command_refuses(onnx_file(corpus, change), corpus, *fragments)


@pytest.mark.parametrize("content, fragment", [
    (b"", "not an EGRU exported by egru-deploy"),  # an empty message is a valid, empty ModelProto
    (b"\xff" * 64, "not a readable ONNX model"),
    (b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 16, "not a readable ONNX model"),  # a length beyond the end
], ids=["empty", "garbage", "length_beyond_end"])
def test_unparsable_onnx(corpus, content, fragment):
    path = corpus / "in" / "model.onnx"
    path.write_bytes(content)
    for args in model_commands(path, corpus):
        assert_hostile_case(args, corpus, str(path), fragment)


VALID_ONNX = onnx_converter.to_onnx(GRAPH)
ONNX_MUTATIONS = ("dims", "data_type", "truncate_raw", "external", "op_type", "drop_input", "attribute",
                  "metadata", "input_type", "opset", "drop_node", "body_op_type")


def mutate_onnx(model: onnx.ModelProto, kind: str, which: int, value: int, text: str) -> None:
    tensor = model.graph.initializer[which % len(model.graph.initializer)]
    node = model.graph.node[which % len(model.graph.node)]
    if kind == "dims":
        del tensor.dims[:]
        tensor.dims.extend([value % 7 - 1, value // 7 % 5][: which % 3])
    elif kind == "data_type":
        tensor.data_type = value % 30
    elif kind == "truncate_raw":
        tensor.raw_data = tensor.raw_data[: value % (len(tensor.raw_data) + 1)]
    elif kind == "external":
        external(tensor, text or "weights.bin", value)
    elif kind == "op_type":
        node.op_type = text or "Relu"
    elif kind == "drop_input" and node.input:
        del node.input[value % len(node.input)]
    elif kind == "attribute" and node.attribute:
        attr = node.attribute[value % len(node.attribute)]
        attr.i, attr.type = value, onnx.AttributeProto.INT
    elif kind == "metadata":
        model.metadata_props[which % len(model.metadata_props)].value = text
    elif kind == "input_type":
        model.graph.input[0].type.tensor_type.elem_type = value % 30
    elif kind == "opset":
        model.opset_import[0].version = value % 30
    elif kind == "drop_node":
        del model.graph.node[which % len(model.graph.node)]
    elif kind == "body_op_type":  # inside a Scan body: the checks recurse into subgraphs
        for scan in [n for n in model.graph.node if n.op_type == "Scan"][:1]:
            body = scan.attribute[0].g
            body.node[value % len(body.node)].op_type = text or "Abs"


@FUZZ
@given(mutations=st.lists(st.tuples(st.sampled_from(ONNX_MUTATIONS), st.integers(0, 10**6), st.integers(0, 2**40),
                                    st.text(max_size=12)), min_size=1, max_size=3))
def test_generated_onnx_models_load_or_fail_with_one_line(tmp_path_factory, mutations):
    model = onnx.ModelProto()
    model.CopyFrom(VALID_ONNX)
    for mutation in mutations:
        mutate_onnx(model, *mutation)
    path = tmp_path_factory.getbasetemp() / "mutated.onnx"
    path.write_bytes(model.SerializeToString())
    assert_loader_contract(path)


# --------------------------------------------------------------------------- .npy / .npz

def npy_bytes(shape, descr: str = "<f4", data: bytes = b"") -> bytes:
    """An .npy header declaring ``shape`` of ``descr``, followed by ``data``."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue() + data


def npz_file(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    """An .npz written member by member (raw .npy bytes), so members can lie."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def npy_of(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


INPUT_CASES = {  # file content -> what the one line must say
    "enormous_shape": (npy_bytes((10**6, 10**6, 10**6), data=b"\0" * 64), "declares shape [1000000, 1000000, 1000000]"),
    "truncated": (npy_of(X)[:-40], "bytes of data follow it"),
    "trailing_bytes": (npy_of(X) + b"\0" * 8, "bytes of data follow it"),
    "object_dtype": (npy_of(np.array([{"a": 1}], dtype=object)), "dtype object is not numeric"),
    "structured_dtype": (npy_of(np.zeros(3, [("a", "f4")])), "is not numeric"),
    "bad_header": (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n", "not a valid .npy header"),
    "format_3": (b"\x93NUMPY\x03\x00" + npy_bytes((2,))[8:], "format version 3.0"),
    "not_npy": (b"hello, world", "not an .npy array"),
    "hdf5_instead": (VALID_NIR, "it is an HDF5 file"),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_hostile_emulate_input(corpus, case):
    content, fragment = INPUT_CASES[case]
    x = corpus / "in" / "bad.npy"
    x.write_bytes(content)
    assert_hostile_case(["emulate", corpus / "in" / "graph", "--input", x, "--output", corpus / "out" / "y.npy"],
                        corpus, str(x), fragment)


def test_npz_given_as_emulate_input(corpus):
    x = npz_file(corpus / "in" / "x.npz", {"x.npy": npy_of(X)})
    assert_hostile_case(["emulate", corpus / "in" / "graph", "--input", x, "--output", corpus / "out" / "y.npy"],
                        corpus, str(x), "is an .npz archive", "expected a single .npy array")


def test_valid_inputs_still_load(corpus):
    big_endian = X.astype(">f4")
    path = corpus / "in" / "be.npy"
    np.save(path, np.asfortranarray(big_endian))
    x = safe_io.load_npy(path, UserError)
    assert x.dtype == np.float32 and np.array_equal(x, X)
    np.savez_compressed(corpus / "in" / "d.npz", x=X, y=np.arange(2))
    arrays = safe_io.load_npz(corpus / "in" / "d.npz", UserError)
    assert np.array_equal(arrays["x"], X) and arrays["y"].tolist() == [0, 1]


DATA_CASES = {  # .npz members -> what the one line must say
    "member_declares_more": ({"x.npy": npy_bytes((10**5, 4, 6), data=npy_of(X)[128:])}, "member 'x.npy'",
                             "bytes of data follow it"),
    "member_enormous": ({"x.npy": npy_bytes((10**9, 10**9))}, "member 'x.npy'", "declares shape"),
    "member_not_npy": ({"x.npy": npy_of(X), "notes.txt": b"hello"}, "member 'notes.txt'", "not an .npy array"),
    "member_twice": ({"x.npy": npy_of(X), "y.npy": npy_of(np.arange(2)), "x.npy ": b""}, "member 'x.npy '",
                     "not an .npy array"),
    "member_pickled": ({"x.npy": npy_of(np.array([None, X], dtype=object))}, "dtype object is not numeric"),
    "not_a_zip": (None, "not a readable .npz archive"),
    "not_npz_at_all": ("text", "not an .npz or .npy file"),
}


def data_file(path: Path, members) -> Path:
    if members is None:
        path.write_bytes(b"PK\x03\x04 this is not an archive")
        return path
    if members == "text":
        path.write_text("x = [1, 2, 3]")
        return path
    return npz_file(path, members)


@pytest.mark.parametrize("option", ["--calibration", "--eval"])
@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_hostile_compile_data(corpus, case, option):
    members, *fragments = DATA_CASES[case]
    path = data_file(corpus / "in" / "data.npz", members)
    calibration = path if option == "--calibration" else corpus / "in" / "calib.npz"
    args = ["compile", corpus / "in" / "graph", "--target", "spinnaker2", "-o", corpus / "out" / "bundle",
            "--calibration", calibration]
    if option == "--eval":
        args += ["--eval", path]
    assert_hostile_case(args, corpus, str(path), *fragments)


def test_duplicate_npz_member(corpus):
    path = corpus / "in" / "data.npz"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("x.npy", npy_of(X))
        archive.writestr("x.npy", npy_of(X))
    assert_hostile_case(["compile", corpus / "in" / "graph", "--target", "loihi2", "-o", corpus / "out" / "b",
                         "--calibration", path], corpus, str(path), "appears twice")


def test_compressed_bomb_beyond_the_size_limit(corpus, monkeypatch):
    """A deflated member that declares (and really holds) more than the limit: refused before inflating."""
    monkeypatch.setattr(safe_io, "MAX_BYTES", 1 << 20)
    path = npz_file(corpus / "in" / "bomb.npz", {"x.npy": npy_of(np.zeros((1 << 16, 4, 6), np.float32))})
    assert path.stat().st_size < 1 << 16
    assert_hostile_case(["compile", corpus / "in" / "graph", "--target", "spinnaker2", "-o", corpus / "out" / "b",
                         "--calibration", path], corpus, str(path), "beyond the 1,048,576 bytes")


def test_npz_whose_directory_lies_about_sizes(corpus):
    path = npz_file(corpus / "in" / "lie.npz", {"x.npy": npy_of(X)}, compression=zipfile.ZIP_STORED)
    content = bytearray(path.read_bytes())
    directory = content.rindex(b"PK\x01\x02")  # central directory entry: uncompressed size at offset 24
    struct.pack_into("<I", content, directory + 24, 10**9)
    path.write_bytes(bytes(content))
    assert_hostile_case(["compile", corpus / "in" / "graph", "--target", "spinnaker2", "-o", corpus / "out" / "b",
                         "--calibration", path], corpus, str(path))


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


VALID_FILES = {  # file name -> valid content, corrupted below byte by byte
    "model.nir": VALID_NIR,
    "model.onnx": VALID_ONNX.SerializeToString(),
    "data.npz": _npz_bytes(x=X, y=np.arange(2)),
    "x.npy": npy_of(X),
}


@FUZZ
@given(name=st.sampled_from(sorted(VALID_FILES)), kind=st.sampled_from(["truncate", "overwrite"]),
       data=st.binary(min_size=1, max_size=64), position=st.integers(0, 10**6))
def test_corrupt_bytes_load_or_fail_with_one_line(tmp_path_factory, name, kind, data, position):
    valid = VALID_FILES[name]
    start = position % len(valid)
    content = valid[:start] if kind == "truncate" else valid[:start] + data + valid[start + len(data):]
    path = tmp_path_factory.getbasetemp() / name
    path.write_bytes(content)
    if path.suffix in (".nir", ".onnx"):
        assert_loader_contract(path)
        return
    try:
        safe_io.load_npz_or_npy(path, UserError)
    except UserError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)


# --------------------------------------------------------------------------- IR graph directories and bundles

def graph_dir(root: Path, change) -> Path:
    """``in/graph`` (a valid IR directory) after ``change(folder)``."""
    folder = root / "in" / "graph"
    change(folder)
    return folder


def edit_doc(edit):
    def change(folder):
        doc = json.loads((folder / ir.GRAPH_JSON).read_text())
        edit(doc)
        (folder / ir.GRAPH_JSON).write_text(json.dumps(doc))
    return change


def write(name: str, content: bytes):
    return lambda folder: (folder / name).write_bytes(content)


def drop_array(key: str):
    def change(folder):
        arrays = dict(np.load(folder / ir.WEIGHTS_NPZ))
        del arrays[key]
        np.savez(folder / ir.WEIGHTS_NPZ, **arrays)
    return change


def link_outside(name: str):
    def change(folder):
        (folder / name).unlink()
        (folder / name).symlink_to(folder.parents[1] / "outside" / "secret.bin")
    return change


def replace_member(key: str, content: bytes):
    def change(folder):
        arrays = dict(np.load(folder / ir.WEIGHTS_NPZ))
        members = {f"{k}.npy": npy_of(a) for k, a in arrays.items()}
        members[f"{key}.npy"] = content
        npz_file(folder / ir.WEIGHTS_NPZ, members)
    return change


GRAPH_CASES = {
    "not_json": (write(ir.GRAPH_JSON, b"{not json"), "graph.json is not valid JSON"),
    "not_utf8": (write(ir.GRAPH_JSON, b'{"a": "\xff"}'), "not UTF-8"),
    "deeply_nested": (write(ir.GRAPH_JSON, b"[" * 100_000), "nested too deeply"),
    "huge_integer": (write(ir.GRAPH_JSON, b"1" * 5000), "graph.json is not valid JSON"),
    "layers_not_a_list": (edit_doc(lambda d: d.update(layers=7)), "malformed graph description"),
    "layer_not_an_object": (edit_doc(lambda d: d["layers"].__setitem__(0, "EGRU")), "malformed graph description"),
    "infinite_size": (edit_doc(lambda d: d["input"].update(size=float("inf"))), "malformed graph description"),
    "size_is_text": (edit_doc(lambda d: d["input"].update(size="six")), "malformed graph description"),
    "missing_array": (drop_array("layers.0.kernel"), "'layers.0.kernel' missing from weights"),
    "array_is_a_number": (edit_doc(lambda d: d["layers"][0].update(kernel=3)), "expected a NumPy array"),
    "weights_link_outside": (link_outside(ir.WEIGHTS_NPZ), "outside the graph directory"),
    "graph_link_outside": (link_outside(ir.GRAPH_JSON), "outside the graph directory"),
    "graph_json_is_a_folder": (lambda folder: ((folder / ir.GRAPH_JSON).unlink(), (folder / ir.GRAPH_JSON).mkdir()),
                               "graph.json: missing"),
    "weights_enormous_member": (replace_member("layers.0.kernel", npy_bytes((10**7, 10**7))), "declares shape"),
    "weights_object_member": (replace_member("layers.0.kernel", npy_of(np.array([1, None]))), "not numeric"),
    "weights_not_a_zip": (write(ir.WEIGHTS_NPZ, b"\x93NUMPY garbage"), "weights.npz: not a readable .npz archive"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_hostile_graph_directory(corpus, case):
    change, fragment = GRAPH_CASES[case]
    folder = graph_dir(corpus, change)
    assert_every_command_refuses(folder, corpus, fragment)


def test_json_beyond_the_size_limit(corpus, monkeypatch):
    monkeypatch.setattr(safe_io, "MAX_JSON_BYTES", 64)
    folder = corpus / "in" / "graph"
    assert_hostile_case(["inspect", folder], corpus, str(folder / ir.GRAPH_JSON), "JSON description may take")


def test_hostile_bundle_weights(corpus):
    folder = corpus / "in" / "bundle"
    for graph_folder in (folder, folder / bundle.FLOAT_DIR):
        ir.save(GRAPH, graph_folder)
        replace_member("layers.1.weight", npy_bytes((3, 10**9)))(graph_folder)
    bundle.write_manifest(folder, "spinnaker2", None)
    assert_every_command_refuses(folder, corpus, "weights.npz: member 'layers.1.weight.npy'", "declares shape")


def test_symlink_inside_the_graph_directory_is_fine(corpus):
    folder = corpus / "in" / "graph"
    (folder / ir.WEIGHTS_NPZ).rename(folder / "weights-v1.npz")
    (folder / ir.WEIGHTS_NPZ).symlink_to("weights-v1.npz")
    assert ir.load(folder).summary() == GRAPH.summary()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=8)


@FUZZ
@given(path=st.lists(st.integers(0, 20), min_size=1, max_size=4), value=JSON_VALUES)
def test_generated_graph_descriptions_load_or_fail_with_one_line(tmp_path_factory, path, value):
    folder = tmp_path_factory.getbasetemp() / "graph"
    ir.save(GRAPH, folder)
    doc = json.loads((folder / ir.GRAPH_JSON).read_text())
    parent, key = None, None
    node = doc
    for step in path:  # walk to a random member, then replace it
        if isinstance(node, dict) and node:
            parent, key = node, sorted(node)[step % len(node)]
        elif isinstance(node, list) and node:
            parent, key = node, step % len(node)
        else:
            break
        node = parent[key]
    if parent is not None:
        parent[key] = value
    (folder / ir.GRAPH_JSON).write_text(json.dumps(doc))
    assert_loader_contract(folder)


# --------------------------------------------------------------------------- PyTorch checkpoints

NET, _ = make_case(12, CLASSIFIER)


def checkpoint(root: Path, sd: dict, name: str = "model.pt", **save_args) -> Path:
    path = root / "in" / name
    torch.save(sd, path, **save_args)
    return path


def with_tensor(key: str, tensor: torch.Tensor) -> dict:
    return {**state_dict(NET), key: tensor}


def rewrite_pickle(path: Path, change) -> Path:
    """Apply ``change(bytes) -> bytes`` to data.pkl of a torch zip checkpoint."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            content = source.read(info.filename)
            archive.writestr(info, change(content) if info.filename.endswith("data.pkl") else content)
    return path


def small_tensor_declaring(root: Path, old: bytes, new: bytes) -> Path:
    """A checkpoint of a 3-element tensor whose pickle declares a size of 2**30 (``old`` -> ``new``)."""
    return rewrite_pickle(checkpoint(root, {"k": torch.zeros(3)}), lambda content: content.replace(old, new))


class Reduce:
    """Pickles as a call of ``function(*args)``: what a hostile checkpoint holds."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def torchscript(root: Path) -> Path:
    path = root / "in" / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; old files still exist
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    return path


CHECKPOINT_CASES = {
    "zero_strides": (lambda root: checkpoint(root, with_tensor("rnns.0.kernel", torch.zeros(1).expand(4, 18))),
                     "rnns.0.kernel: strides [0, 0]", "share storage"),
    "enormous_zero_strides": (lambda root: checkpoint(root, with_tensor("rnns.0.kernel",
                                                                        torch.zeros(1).expand(10**6, 18))),
                              "rnns.0.kernel", "share storage"),
    "overlapping_strides": (lambda root: checkpoint(root, with_tensor("rnns.0.kernel",
                                                                      torch.zeros(30).as_strided((4, 18), (1, 1)))),
                            "rnns.0.kernel", "share storage"),
    # The pickle of {"k": zeros(3)} holds the size as (3,) = K\x03\x85 and the storage's numel as K\x03 t.
    "storage_smaller_than_shape": (lambda root: small_tensor_declaring(root, b"K\x03\x85", b"J\x00\x00\x00\x40\x85"),
                                   "not a readable PyTorch checkpoint"),
    "storage_declared_larger_than_record": (lambda root: small_tensor_declaring(root, b"K\x03t", b"J\x00\x00\x00\x40t"),
                                            "not a readable PyTorch checkpoint"),
    "blocked_module": (lambda root: checkpoint(root, {"x": Reduce(os.system, "true")}), "posix.system",
                       "safe loading (weights_only) refuses"),
    "unlisted_global": (lambda root: checkpoint(root, {"x": Reduce(Path, "/etc/passwd")}), "pathlib.Path",
                        "refuses"),
    "blocked_module_legacy": (lambda root: checkpoint(root, {"x": Reduce(os.system, "true")},
                                                      _use_new_zipfile_serialization=False), "posix.system"),
    "torchscript": (torchscript, "TorchScript archive"),
    "npz_named_pt": (lambda root: npz_file(root / "in" / "model.pt", {"x.npy": npy_of(X)}), "without data.pkl"),
    "text_named_pt": (lambda root: (root / "in" / "model.pt").write_text("hello") and root / "in" / "model.pt",
                      "neither a zip archive nor a pickle"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_hostile_checkpoint(corpus, case):
    make, *fragments = CHECKPOINT_CASES[case]
    path = make(corpus)
    for args in model_commands(path, corpus):
        line = assert_hostile_case(args, corpus, str(path), *fragments)
        assert "weights_only=False" not in line and "trust" not in line and "add_safe_globals" not in line


def test_files_are_read_by_content_not_by_name(tmp_path):
    """converters.load_model: an HDF5 file is NIR and a torch.save file a checkpoint, whatever the name."""
    (tmp_path / "in").mkdir()
    nir_named_pt = tmp_path / "in" / "model.pt"
    nir_named_pt.write_bytes(VALID_NIR)
    assert load_model(nir_named_pt).summary() == GRAPH.summary()
    checkpoint_named_nir = checkpoint(tmp_path, state_dict(NET), name="model.nir")
    assert load_model(checkpoint_named_nir).summary() == evnn.from_state_dict(state_dict(NET)).summary()


def test_legacy_checkpoint_is_read_by_content(corpus):
    path = checkpoint(corpus, state_dict(NET), name="model.pt", _use_new_zipfile_serialization=False)
    assert safe_io.sniff(path) == "pickle"
    assert evnn.load(path).summary() == evnn.from_state_dict(state_dict(NET)).summary()


def blocked(*messages: str) -> pickle.UnpicklingError:
    """An UnpicklingError raised while handling the previous ones, as torch chains them."""
    error = None
    for message in messages:
        outer = pickle.UnpicklingError(message)
        outer.__context__ = error
        error = outer
    return error


WOULD_BE_ADVICE = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
                   "succeed, but it can result in arbitrary code execution. Do it only if you trust the source.")
TORCH_WORDINGS = {  # inner unpickler message (wrapped in torch's advice) -> the name to report
    "Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default. Please use "
    "`torch.serialization.add_safe_globals([argparse.Namespace])`": "argparse.Namespace",
    "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.": "posix.system",
    "Unsupported global: GLOBAL builtins.eval": "builtins.eval",
    "Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, but got "
    "<class 'argparse.Namespace'>": "argparse.Namespace",
    "Some future wording of a refusal": None,
}


@pytest.mark.parametrize("inner", sorted(TORCH_WORDINGS))
def test_blocked_globals_named_across_torch_wordings(corpus, monkeypatch, inner):
    def refuse(*args, **kwargs):
        raise blocked(inner, WOULD_BE_ADVICE + "\n" + inner)

    monkeypatch.setattr(evnn.torch, "load", refuse)
    path = checkpoint(corpus, state_dict(NET))
    name = TORCH_WORDINGS[inner]
    line = assert_hostile_case(["inspect", path], corpus, str(path), *([name] if name else ["safe loading refuses"]))
    assert "weights_only` set to `False" not in line and "trust" not in line and "add_safe_globals" not in line
