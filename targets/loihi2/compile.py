"""Loihi 2 artefacts of a bundle, under ``loihi2/``.

``network.json``  the Lava network: processes, shapes, connections, Dense parameters, neuron formats
``weights.npz``   Dense weight matrices in Lava's layout ([out, in], int8) and neuron parameters
``resources.json`` neurocore mapping, memory per core, operations, energy and latency per step
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np

from egru_deploy import ir
from egru_deploy.hwsim import loihi2 as hwsim
from egru_deploy.profiles import LOIHI2
from egru_deploy.report import add_layer_placement
from egru_deploy.targets.loihi2.mapping import assign
from egru_deploy.targets.loihi2.network import check_weights, topology

LOIHI2_DIR = "loihi2"
NETWORK_JSON = "network.json"
WEIGHTS_NPZ = "weights.npz"
RESOURCES_JSON = "resources.json"
NETWORK_SCHEMA_VERSION = 1
NEURON_ARRAYS = {"EGRUNeurons": ("bias", "recurrent_bias", "thr"), "ReadoutNeurons": ("bias",)}


def compile_loihi2(quantized_graph: ir.Graph, bundle_dir, float_graph: ir.Graph | None = None,
                   calibration_x: np.ndarray | None = None) -> dict:
    """Write the Loihi 2 network, weights and resource report into ``bundle_dir/loihi2/``.

    Returns the resource report.  Operations per step are counted by ``hwsim.loihi2`` on
    ``calibration_x`` when it is given; the worst case (every neuron active) is always reported.
    ``float_graph`` is part of the common compiler signature; Loihi 2 needs only the integer graph
    (its floating_pt network is built from the bundle's float graph when asked for).
    """
    hwsim.check_graph(quantized_graph)
    topo = topology(quantized_graph)
    check_weights(topo)
    mapping = assign(topo)
    activity, steps = None, None
    if calibration_x is not None:
        chip_run = hwsim.run(quantized_graph, calibration_x, mapping.layout(len(quantized_graph.layers)))
        activity, steps = chip_run.activity, chip_run.steps
    resources = mapping.report(activity, steps)
    resources["summary"] = _summary(resources)
    add_layer_placement(resources, quantized_graph)  # the front-end runs on the host

    out = Path(bundle_dir) / LOIHI2_DIR
    out.mkdir(parents=True, exist_ok=True)
    arrays = {s.name: s.weights.astype(np.int8) for s in topo.synapses}
    neurons = {}
    for g in topo.groups:
        layer = quantized_graph.layers[g.layer]
        for name in NEURON_ARRAYS[g.process]:
            arrays[f"{g.name}.{name}"] = getattr(layer, name).astype(np.int64)
        neurons[g.name] = {"formats": {f.name: getattr(layer.quant, f.name).to_dict() for f in fields(layer.quant)},
                           "arrays": [f"{g.name}.{name}" for name in NEURON_ARRAYS[g.process]],
                           **({"relu": layer.relu} if g.process == "ReadoutNeurons" else
                              {"use_trace": layer.use_trace, "zoneout": layer.zoneout,
                               "zoneout_gain": LOIHI2.zoneout_gain(layer.zoneout)})}
    network = {"format": "egru-deploy-loihi2-network", "schema_version": NETWORK_SCHEMA_VERSION,
               **topo.describe(), "neurons": neurons, "profile": LOIHI2.describe(),
               "run": {"fixed_pt": "Loihi2SimCfg(select_tag='fixed_pt')", "board": "Loihi2HwCfg (lava-loihi)"}}
    np.savez(out / WEIGHTS_NPZ, **arrays)
    (out / NETWORK_JSON).write_text(json.dumps(network, indent=1))
    (out / RESOURCES_JSON).write_text(json.dumps(resources, indent=1))
    return resources


def _summary(resources: dict) -> dict:
    worst = resources["per_step_worst_case"]
    summary = {"neurocores": resources["neurocores"], "chips": resources["chips"],
               "placement": resources["placement"],
               "synaptic bytes (max per core)": resources["memory"]["synaptic_bytes_max_core"],
               "latency (chip steps)": resources["latency_steps"],
               "synaptic ops per step (worst case)": worst["synaptic_ops"],
               "energy per step, nJ (worst case, Loihi 1 proxy)": worst["energy_nj"]}
    measured = resources["per_step_measured"]
    if measured:
        summary.update({"synaptic ops per step (measured)": measured["synaptic_ops"],
                        "energy per step, nJ (measured, Loihi 1 proxy)": measured["energy_nj"],
                        "busiest core per step, us (measured, Loihi 1 proxy)": measured["busiest_core_us"]})
    return summary
