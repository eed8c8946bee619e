"""Loihi 2 artefacts of a bundle, under ``loihi2/``.

``network.json``   the stock-process network: populations (Lava class, segments and their levels),
                   connections (Dense/Sparse parameters), phase lines, offsets, the gate tables
``weights.npz``    every connection's weights as (rows, cols, values) in Lava's [out, in] layout
``resources.json`` neurocore mapping, memory per core, the deployed processes and their placement,
                   operations, energy and latency per input step
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from egru_deploy import ir
from egru_deploy.hwsim import loihi2 as hwsim
from egru_deploy.profiles import LOIHI2
from egru_deploy.report import add_layer_placement
from egru_deploy.targets.loihi2.mapping import assign
from egru_deploy.targets.loihi2.netlist import build
from egru_deploy.targets.loihi2.network import check_weights

LOIHI2_DIR = "loihi2"
NETWORK_JSON = "network.json"
WEIGHTS_NPZ = "weights.npz"
RESOURCES_JSON = "resources.json"
NETWORK_SCHEMA_VERSION = 2  # 2: the stock-process circuit (1 held custom EGRU neuron processes)


def compile_loihi2(quantized_graph: ir.Graph, bundle_dir, float_graph: ir.Graph | None = None,
                   calibration_x: np.ndarray | None = None) -> dict:
    """Write the Loihi 2 network, weights and resource report into ``bundle_dir/loihi2/``.

    Returns the resource report.  Operations per input step are counted by ``hwsim.loihi2`` on
    ``calibration_x`` when it is given; the worst case (every neuron active) is always reported.
    ``float_graph`` is part of the common compiler signature; Loihi 2 needs only the integer graph.
    """
    hwsim.check_graph(quantized_graph)
    net = build(quantized_graph)
    check_weights(net)
    mapping = assign(net)
    activity = hwsim.run(quantized_graph, calibration_x).activity if calibration_x is not None else None
    resources = mapping.report(activity)
    resources["summary"] = _summary(resources)
    add_layer_placement(resources, quantized_graph)  # the front-end runs on the host

    out = Path(bundle_dir) / LOIHI2_DIR
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for c in net.connections:
        arrays[f"{c.name}.rows"], arrays[f"{c.name}.cols"] = c.rows.astype(np.int32), c.cols.astype(np.int32)
        arrays[f"{c.name}.values"] = c.values.astype(np.int16)
    network = {"format": "egru-deploy-loihi2-network", "schema_version": NETWORK_SCHEMA_VERSION,
               **net.describe(), "profile": LOIHI2.describe(),
               "run": {"simulation": "Loihi2SimCfg(select_tag='fixed_pt') with the stock fixed_pt models",
                       "board": "Loihi2HwCfg (lava-loihi), neurocore models for every on-chip process"}}
    np.savez(out / WEIGHTS_NPZ, **arrays)
    (out / NETWORK_JSON).write_text(json.dumps(network, indent=1))
    (out / RESOURCES_JSON).write_text(json.dumps(resources, indent=1))
    return resources


def _summary(resources: dict) -> dict:
    worst = resources["per_input_step_worst_case"]
    summary = {"neurocores": resources["neurocores"], "chips": resources["chips"], "placement": resources["placement"],
               "neurons": resources["neurons"], "synapses": resources["synapses"],
               "neurons per EGRU unit": ", ".join(f"{v:g}" for v in resources["neurons_per_egru_unit"].values()),
               "chip steps per input step": resources["chip_steps_per_input_step"],
               "synaptic bytes (max per core)": resources["memory"]["synaptic_bytes_max_core"],
               "latency (chip steps)": resources["latency_steps"],
               "synaptic ops per input step (worst case)": worst["synaptic_ops"],
               "energy per input step, nJ (worst case, Loihi 1 proxy)": worst["energy_nj"]}
    measured = resources["per_input_step_measured"]
    if measured:
        summary.update({"synaptic ops per input step (measured)": measured["synaptic_ops"],
                        "messages per input step (measured)": measured["messages"],
                        "energy per input step, nJ (measured, Loihi 1 proxy)": measured["energy_nj"],
                        "busiest core per input step, us (measured, Loihi 1 proxy)": measured["busiest_core_us"]})
    return summary
