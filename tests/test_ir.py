"""IR: validation on construction, JSON + npz round trips, bundles written atomically."""
import json
from dataclasses import replace

import numpy as np
import pytest
from test_nir import assert_same_graph
from test_quantize import random_graph, random_inputs

from egru_deploy import bundle, ir
from egru_deploy.profiles import SPINNAKER2
from egru_deploy.quantize import quantize


@pytest.mark.parametrize("quantized", [False, True])
def test_round_trip_is_identical(tmp_path, quantized):
    graph = random_graph(0, sizes=(6, 10, 8), trace=True, tokens=20, relu_projection=5)
    if quantized:
        graph = quantize(graph, SPINNAKER2, random_inputs(graph, 0))
    ir.save(graph, tmp_path / "g")
    assert_same_graph(graph, ir.load(tmp_path / "g"))


def test_graph_is_frozen_and_validated():
    graph = random_graph(1)
    with pytest.raises(Exception):
        graph.output_mode = "last"
    egru = graph.layers[0]
    with pytest.raises(ir.IRError, match=r"EGRU.kernel: expected shape"):
        ir.Graph(graph.input, (replace(egru, kernel=egru.kernel[:, :-1]),))
    with pytest.raises(ir.IRError, match="NaN"):
        ir.Graph(graph.input, (replace(egru, bias=np.full_like(egru.bias, np.nan)),))
    with pytest.raises(ir.IRError, match=r"\[0, 1\]"):
        ir.Graph(graph.input, (replace(egru, thr=egru.thr + 2),))
    with pytest.raises(ir.IRError, match="ordered"):
        ir.Graph(graph.input, (egru, ir.Embedding(np.ones((4, 4), np.float32))))
    with pytest.raises(ir.IRError, match="output_mode"):
        replace(graph, output_mode="max")


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    ir.save(random_graph(2), tmp_path)
    doc = json.loads((tmp_path / ir.GRAPH_JSON).read_text())
    doc["schema_version"] = ir.SCHEMA_VERSION + 1
    (tmp_path / ir.GRAPH_JSON).write_text(json.dumps(doc))
    with pytest.raises(ir.IRError, match="newer"):
        ir.load(tmp_path)
    (tmp_path / ir.GRAPH_JSON).write_text("{not json")
    with pytest.raises(ir.IRError, match="not valid JSON"):
        ir.load(tmp_path)
    doc["schema_version"] = 1
    doc["layers"][0]["thr"] = [0.2]  # a literal where an array reference belongs
    (tmp_path / ir.GRAPH_JSON).write_text(json.dumps(doc))
    with pytest.raises(ir.IRError):
        ir.load(tmp_path)


def test_bundle_writing_is_atomic(tmp_path):
    out = tmp_path / "bundle"
    with bundle.writing(out) as tmp:
        (tmp / "a").write_text("first")
        bundle.write_manifest(tmp, "spinnaker2", "spinnaker2")
    with pytest.raises(RuntimeError):
        with bundle.writing(out, force=True) as tmp:
            (tmp / "a").write_text("second")
            raise RuntimeError("interrupted")
    assert (out / "a").read_text() == "first"  # the old bundle survives a failed rewrite whole
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no partial directories left behind


def test_bundle_for_another_target_or_newer_schema_is_refused(tmp_path):
    with bundle.writing(tmp_path / "b") as tmp:
        bundle.write_manifest(tmp, "spinnaker2", "spinnaker2")
    with pytest.raises(bundle.BundleError, match="compiled for target 'spinnaker2'"):
        bundle.read_manifest(tmp_path / "b", expect_target="loihi2")
    manifest = tmp_path / "b" / bundle.BUNDLE_JSON
    doc = json.loads(manifest.read_text())
    doc["schema_version"] = bundle.BUNDLE_SCHEMA_VERSION + 1
    manifest.write_text(json.dumps(doc))
    with pytest.raises(bundle.BundleError, match="newer"):
        bundle.read_manifest(tmp_path / "b")
