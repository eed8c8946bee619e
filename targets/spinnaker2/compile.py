"""SpiNNaker2 compile step: mapping + PE memory images into ``<bundle>/spinnaker2/``.

Writes ``placement.json`` (PEs, layers, routing tables: what hwsim and the board loader read),
``images/peNNNNN.bin`` (one memory image per PE) and ``images.json`` (file, load address and
section offsets of every image).  Every image is checked against the PE's measured capacity here,
so an image that cannot fit is refused at compile time.
"""
from __future__ import annotations

import json
from pathlib import Path

from egru_deploy.ir import Graph
from egru_deploy.profiles import get_profile
from egru_deploy.report import add_layer_placement
from egru_deploy.targets.spinnaker2 import build, images
from egru_deploy.targets.spinnaker2.mapping import BOARD, Mapping, MappingError, map_graph

TARGET_DIR = "spinnaker2"
PLACEMENT_JSON = "placement.json"
IMAGES_JSON = "images.json"


def image_name(pe_index: int) -> str:
    return f"images/pe{pe_index:05d}.bin"


def pe_images(graph: Graph, mapping: Mapping) -> tuple[list[bytes], dict]:
    """Every PE's memory image and the ``images.json`` map (what compile writes, what a reader expects)."""
    profile = get_profile(graph.profile)
    blobs, image_map = [], {}
    for pe in mapping.pes:
        blob, sections = images.pack(graph.layers[pe.layer], profile, pe)
        if len(blob) > mapping.memory.image_capacity:
            raise MappingError(f"PE {pe.index}: image of {len(blob):,} bytes exceeds the PE's "
                               f"{mapping.memory.image_capacity:,} bytes of memory left for the image")
        blobs.append(blob)
        image_map[str(pe.index)] = {"file": image_name(pe.index), "bytes": len(blob), "chip": pe.chip,
                                    "core": pe.core, "load_address": mapping.memory.image_address,
                                    "sections": sections}
    return blobs, image_map


def write_images(graph: Graph, mapping: Mapping, out: Path) -> dict:
    blobs, image_map = pe_images(graph, mapping)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for index, blob in enumerate(blobs):
        (out / image_name(index)).write_bytes(blob)
    return image_map


def resource_report(mapping: Mapping, float_graph: Graph | None) -> dict:
    pes = mapping.pes
    formats = [pe.x_format for pe in pes] + [pe.h_format for pe in pes if pe.h_format]
    lower = mapping.lower_bound_pes()
    routing_sizes = [len(entries) for entries in mapping.routing.values()]
    summary = {
        "pes": len(pes),
        "chips": mapping.chips_used,
        "pes_memory_lower_bound": lower,
        "pes_over_lower_bound": len(pes) / max(lower, 1),
        "image_bytes_total": sum(pe.image_bytes for pe in pes),
        "image_bytes_max": max(pe.image_bytes for pe in pes),
        "image_capacity_bytes": mapping.memory.image_capacity,
        "code_bytes": mapping.memory.code_bytes,
        "runtime_bytes": mapping.memory.runtime_bytes,
        "memory_source": ("measured from the PE program's ELF" if mapping.memory.measured
                          else "conservative defaults (arm-none-eabi-gcc not installed)"),
        "weight_matrices_csr": sum(f != "dense" for f in formats),
        "weight_matrices_dense": sum(f == "dense" for f in formats),
        "nonzero_weights_on_chip": sum(pe.x_nnz + pe.h_nnz for pe in pes),
        "routing_entries_max_per_chip": max(routing_sizes, default=0),
        "routing_entries_limit": mapping.board.routing_entries,
    }
    if float_graph is not None:
        summary["float_parameters"] = float_graph.summary()["parameters"]
    layers = [{"layer": plan.layer, "kind": plan.kind, "units": plan.units, "depth": plan.depth,
               "pes": plan.pes[1] - plan.pes[0], "pes_lower_bound": -(-plan.lower_bound_bytes //
                                                                       mapping.usable_bytes(plan.kind)),
               "image_bytes": sum(pe.image_bytes for pe in pes[plan.pes[0]:plan.pes[1]])} for plan in mapping.layers]
    return {"chip": "SpiNNaker2", "summary": summary, "layers": layers,
            "board": {"chips": mapping.board.chips, "pes_per_chip": mapping.board.pes_per_chip}}


def compile_spinnaker2(quantized_graph: Graph, bundle_tmp_dir, float_graph: Graph | None = None,
                       max_units_per_pe: int | None = None) -> dict:
    """Map ``quantized_graph`` and write its SpiNNaker2 artefacts; return the resource report.

    ``max_units_per_pe`` caps slices below what memory allows (more PEs, shorter ticks).
    """
    mapping = map_graph(quantized_graph, build.measure(), BOARD, max_units_per_pe)
    out = Path(bundle_tmp_dir) / TARGET_DIR
    out.mkdir(parents=True, exist_ok=True)
    image_map = write_images(quantized_graph, mapping, out)
    (out / PLACEMENT_JSON).write_text(json.dumps(mapping.to_json()))
    (out / IMAGES_JSON).write_text(json.dumps(image_map, indent=1))
    return add_layer_placement(resource_report(mapping, float_graph), quantized_graph)  # front-end: host
