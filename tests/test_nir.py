"""NIR export/import: round trips, nirtorch execution of the exported graph, bad files, the CLI.

``random_graph``, ``random_inputs``, ``CONFIGS`` and ``assert_same_graph`` are shared with
test_onnx.py (tests/ is importable, see conftest.py).
"""
from __future__ import annotations

from dataclasses import fields, replace

import h5py
import nir
import numpy as np
import pytest
from click.testing import CliRunner

from egru_deploy import ir, reference
from egru_deploy.cli import main
from egru_deploy.converters import load_model
from egru_deploy.converters import nir as nir_converter
from egru_deploy.errors import ConversionError
from egru_deploy.ir import EGRU, Embedding, Graph, Input, Linear, QType

TOL = 1e-5

# (hidden sizes, trace, vocabulary or None, projection size or None, readout size or None, output mode)
CONFIGS = {
    "1layer-seq": ((6, 8), False, None, None, 3, "sequence"),
    "2layer-trace-last": ((5, 7, 6), True, None, None, 4, "last"),
    "3layer-tokens-proj-mean": ((4, 6, 5, 7), True, 11, 9, 3, "mean"),
    "tokens-no-readout": ((5, 6), False, 9, None, None, "sequence"),
    "trace-into-output": ((3, 5), True, None, None, None, "last"),
    "trace-readout-zoneout": ((4, 7, 6), True, None, None, 3, "sequence"),
}
# Beyond the tuple: the last layer's trace into the readout, and EvNN's eval zoneout in every layer.
CONFIG_EXTRAS = {"trace-readout-zoneout": {"last_trace": True, "zoneout": 0.3}}


def random_graph(seed, sizes, trace=False, vocab=None, projection=None, readout=None, mode="sequence",
                 last_trace=False, zoneout=0.0) -> Graph:
    """Random float graph; trace layers feed traces onward (the last one too when ``last_trace``)."""
    rng = np.random.default_rng(seed)

    def f32(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    layers = [Embedding(f32(vocab, sizes[0], scale=0.7))] if vocab else []
    n_egru = len(sizes) - 1
    for i in range(n_egru):
        n_in, h = sizes[i], sizes[i + 1]
        layers.append(EGRU(f32(n_in, 3 * h, scale=1.5 / np.sqrt(n_in)), f32(h, 3 * h, scale=1 / np.sqrt(h)),
                           f32(3 * h, scale=0.5), f32(3 * h, scale=0.3), rng.uniform(0.05, 0.5, h).astype(np.float32),
                           use_trace=trace and (i < n_egru - 1 or last_trace), zoneout=zoneout))
    if projection:
        layers.append(Linear(f32(projection, sizes[-1], scale=0.5), f32(projection, scale=0.2), relu=True))
    if readout:
        layers.append(Linear(f32(readout, projection or sizes[-1], scale=0.5), f32(readout, scale=0.2)))
    return Graph(Input(vocab, tokens=True) if vocab else Input(sizes[0]), tuple(layers), mode)


def config_graph(name: str, seed: int = 0) -> Graph:
    sizes, trace, vocab, projection, readout, mode = CONFIGS[name]
    extras = {"last_trace": not readout and trace, **CONFIG_EXTRAS.get(name, {})}
    return random_graph(seed, sizes, trace, vocab, projection, readout, mode, **extras)


def random_inputs(graph: Graph, seed: int, batch: int = 3, steps: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    if graph.input.tokens:
        return rng.integers(0, graph.input.size, (batch, steps))
    return rng.random((batch, steps, graph.input.size)).astype(np.float32)


def assert_same_graph(a: Graph, b: Graph) -> None:
    """Same structure, flags, formats, and bit-equal arrays of equal dtype."""
    assert (a.input, a.output_mode, a.profile, len(a.layers)) == (b.input, b.output_mode, b.profile, len(b.layers))
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        for f in fields(la):
            va, vb = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), f.name
            else:
                assert va == vb, f.name


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_gives_identical_ir(tmp_path, name):
    graph = replace(config_graph(name), metadata={"source": "unit test"})
    path = tmp_path / "model.nir"
    nir_converter.export(graph, path)
    back = nir_converter.load(path)
    assert_same_graph(graph, back)
    assert back.metadata == {"source": "unit test"}


def test_file_uses_standard_nodes_plus_the_extension(tmp_path):
    path = tmp_path / "model.nir"
    nir_converter.export(config_graph("3layer-tokens-proj-mean"), path)
    with h5py.File(path) as f:
        types = {name: node["type"][()].decode() for name, node in f["node/nodes"].items()}
    assert set(types.values()) == {"Input", "Linear", "Affine", "EGRUCell", "ReLU", "Output"}
    assert types["egru0_input_kernel"] == "Affine" and types["egru0_recurrent_kernel"] == "Linear"
    with pytest.raises(Exception):  # why read_nir exists: nir.read refuses the extension nodes
        nir.read(path)


# --------------------------------------------------------------------------- nirtorch


def _nirtorch_module(nir_graph):
    """nirtorch GraphModule of our graph: our EGRUCell/ReLU modules and a bias-keeping Affine."""
    nirtorch = pytest.importorskip("nirtorch")
    import torch

    class EGRUCellModule(torch.nn.Module):
        """docs/nir_egrucell.md, written from the document (not from egru_deploy.reference)."""

        def __init__(self, node):
            super().__init__()
            self.thr = torch.from_numpy(np.asarray(node.thr))
            self.recurrent_bias = torch.from_numpy(np.asarray(node.recurrent_bias))
            self.trace, self.decay, self.zoneout = bool(node.trace), float(node.trace_decay), float(node.zoneout)

        def forward(self, u, state=None):
            h = self.thr.shape[0]
            if state is None:
                state = (torch.zeros(u.shape[0], h),) * 2
            c, trace = state
            rb = self.recurrent_bias
            z = torch.sigmoid(u[:, :h] + rb[:h])
            r = torch.sigmoid(u[:, h:2 * h] + rb[h:2 * h])
            g = torch.tanh(u[:, 2 * h:3 * h] + r * (u[:, 3 * h:] + rb[2 * h:]))
            c_new = z * c + (1 - z) * g
            c_new = self.zoneout * c + (1 - self.zoneout) * c_new
            fired = (c_new - self.thr > 0).to(u.dtype)
            y = fired * c_new
            trace = self.decay * trace + (1 - self.decay) * y
            out = torch.cat([y, trace], dim=1) if self.trace else y
            return out, (c_new - fired * self.thr, trace)

    def affine(node):  # nirtorch 2.6's default Affine map assigns the bias to weight.bias and drops it
        module = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        module.weight.data = torch.from_numpy(node.weight)
        module.bias.data = torch.from_numpy(node.bias)
        return module

    node_map = {nir_converter.EGRUCell: EGRUCellModule, nir_converter.ReLU: lambda node: torch.nn.ReLU(),
                nir.Affine: affine}
    return nirtorch.nir_to_torch(nir_graph, node_map)


def run_nirtorch(graph: Graph, path, x: np.ndarray) -> np.ndarray:
    """Run the NIR file step by step in torch; returns the (B, T, O) output sequence."""
    import torch

    module = _nirtorch_module(nir_converter.read_nir(path))
    x = torch.from_numpy(x)
    if graph.input.tokens:  # the NIR graph takes tokens as one-hot vectors
        x = torch.nn.functional.one_hot(x, graph.input.size).float()
    state, outputs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out, state = module(x[:, t], state)
            outputs.append(out)
    return torch.stack(outputs, dim=1).numpy()


@pytest.mark.parametrize("name", ["2layer-trace-last", "3layer-tokens-proj-mean", "trace-into-output",
                                  "trace-readout-zoneout"])
def test_nirtorch_run_of_exported_graph_equals_float_reference(tmp_path, name):
    graph = config_graph(name, seed=3)
    path = tmp_path / "model.nir"
    nir_converter.export(graph, path)
    x = random_inputs(graph, seed=3)
    ref = reference.run_float(graph, x)
    assert 0.2 < ref.sparsity() < 0.98  # the comparison exercises both spikes and silence
    seq = run_nirtorch(graph, path, x)
    assert np.abs(seq - ref.sequence).max() < TOL
    assert np.abs(reference.apply_output_mode(seq, graph.output_mode) - ref.output).max() < TOL


# --------------------------------------------------------------------------- bad input


def test_quantized_graph_is_refused():
    graph = config_graph("1layer-seq")
    layer = graph.layers[0]
    q = QType(8, 4)
    qlayer = replace(layer, kernel=np.zeros(layer.kernel.shape, np.int8),
                     recurrent_kernel=np.zeros(layer.recurrent_kernel.shape, np.int8),
                     bias=np.zeros(layer.bias.shape, np.int64), recurrent_bias=np.zeros(layer.bias.shape, np.int64),
                     thr=np.zeros(layer.thr.shape, np.int64),
                     quant=ir.EGRUQuant(q, q, QType(24, 12), QType(24, 12), QType(24, 12), q))
    quantized = Graph(graph.input, (qlayer,), profile="loihi2")
    with pytest.raises(ConversionError, match="quantized for profile 'loihi2'.*float weights only"):
        nir_converter.to_nir(quantized)


def _write_modified(path, change):
    """Export a good graph, let ``change(nodes, edges, metadata)`` edit it, write it with nir.write."""
    g = nir_converter.to_nir(config_graph("2layer-trace-last"))
    nodes, edges, metadata = dict(g.nodes), list(g.edges), dict(g.metadata)
    change(nodes, edges, metadata)
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False))
    return path


def _drop_edge(edges, edge):
    edges.remove(edge)


BAD_GRAPHS = {
    "wrong shape": (lambda n, e, m: n.update(egru1_input_kernel=nir.Affine(weight=np.zeros((24, 5), np.float32),
                                                                           bias=np.zeros(24, np.float32))),
                    r"node 'egru1_input_kernel': expected weight shape \(24, 7\), got \(24, 5\)"),
    "missing recurrent edge": (lambda n, e, m: _drop_edge(e, ("egru0_recurrent_kernel", "egru0")),
                               r"node 'egru0': expected one recurrent Linear"),
    "missing chain edge": (lambda n, e, m: _drop_edge(e, ("linear0", "output")),
                           r"node 'linear0': expected exactly one outgoing edge"),
    "stray node": (lambda n, e, m: n.update(extra=nir.Affine(weight=np.zeros((2, 2)), bias=np.zeros(2))),
                   r"node 'extra': not on the path"),
    "foreign graph": (lambda n, e, m: m.pop("format"), r"metadata: format None, expected 'egru-deploy'"),
    "nonzero slot": (lambda n, e, m: n["egru0_recurrent_kernel"].weight.__setitem__((15, 0), 1.0),
                     r"node 'egru0_recurrent_kernel': weight rows 2H:3H"),
    "zoneout not a probability": (lambda n, e, m: setattr(n["egru1"], "zoneout", 1.0),
                                  r"node 'egru1': expected zoneout as one number in \[0, 1\), got 1.0"),
}


@pytest.mark.parametrize("case", BAD_GRAPHS)
def test_bad_graphs_name_the_node(tmp_path, case):
    change, message = BAD_GRAPHS[case]
    path = _write_modified(tmp_path / "bad.nir", change)
    with pytest.raises(ConversionError, match=message) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(path))


def test_unknown_node_type_is_named(tmp_path):
    path = _write_modified(tmp_path / "bad.nir", lambda n, e, m: n.update(
        egru0=nir.LIF(tau=np.ones(7), r=np.ones(7), v_leak=np.zeros(7), v_threshold=np.ones(7))))
    with pytest.raises(ConversionError, match=r"node 'egru0': NIR node type 'LIF' is not part of an egru-deploy"):
        nir_converter.load(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.nir"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ConversionError, match="not a readable NIR"):
        nir_converter.load(path)


# --------------------------------------------------------------------------- CLI


def test_cli_export_inspect_emulate(tmp_path):
    graph = config_graph("3layer-tokens-proj-mean", seed=5)
    ir.save(graph, tmp_path / "graph")
    runner = CliRunner()
    out = tmp_path / "out" / "model.nir"
    result = runner.invoke(main, ["export", str(tmp_path / "graph"), "--format", "nir", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and not list(out.parent.glob(".*partial*"))
    result = runner.invoke(main, ["inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    x = random_inputs(graph, seed=5)
    np.save(tmp_path / "x.npy", x)
    result = runner.invoke(main, ["emulate", str(out), "--input", str(tmp_path / "x.npy"),
                                  "--output", str(tmp_path / "y.npy")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(tmp_path / "y.npy"), reference.run_float(graph, x).output)


def test_cli_bad_file_exits_2_with_one_line(tmp_path):
    path = _write_modified(tmp_path / "bad.nir", lambda n, e, m: _drop_edge(e, ("egru0_recurrent_kernel", "egru0")))
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "egru0" in result.output
