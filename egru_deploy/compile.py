"""``egru-deploy compile``: float model -> pipeline of passes -> bundle for a target.

The pipeline is a plain list of ``Graph -> Graph`` passes; every stage's graph is kept in the
bundle under ``stages/NN-name/`` so a user can inspect what each pass produced.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from egru_deploy import bundle, files, ir
from egru_deploy.errors import UserError
from egru_deploy.profiles import get_profile
from egru_deploy.prune import prune
from egru_deploy.quantize import quantize


@dataclass(frozen=True)
class Stage:
    name: str
    apply: Callable[[ir.Graph], ir.Graph]


def pipeline(profile_name: str, calibration_x, prune_amount: float = 0.0) -> list[Stage]:
    """The compile passes, in order."""
    profile = get_profile(profile_name)
    stages = []
    if prune_amount:
        stages.append(Stage("prune", partial(prune, amount=prune_amount)))
    stages.append(Stage("quantize", partial(quantize, profile=profile, calibration_x=calibration_x)))
    return stages


def _target_compilers() -> dict:
    """Target name -> function(quantized_graph, bundle_dir, float_graph, calibration_x) -> resource report."""
    from egru_deploy.targets import COMPILERS

    return COMPILERS


def compile_model(graph: ir.Graph, target: str, out_dir, calibration_x, prune_amount: float = 0.0,
                  eval_data: tuple[np.ndarray, np.ndarray] | None = None, source: str = "",
                  inputs: tuple = (), force: bool = False) -> dict:
    """Run the pipeline and write a complete bundle atomically; return the compile report.

    ``inputs`` are the files the user named (never replaced); ``force`` allows replacing an
    existing bundle at ``out_dir``.
    """
    compilers = _target_compilers()
    if target not in compilers:
        raise UserError(f"--target: unknown target {target!r} (expected one of {', '.join(compilers)})")
    if graph.quantized:
        raise UserError(f"{source or 'model'}: already quantized for {graph.profile!r}; compile a float model")
    from egru_deploy.report import quantization_report, save_report_plot

    files.check_output_folder(Path(out_dir), inputs, force, bundle.is_bundle)  # before the slow part
    started = time.perf_counter()
    stages = pipeline(target, calibration_x, prune_amount)
    graphs = [("float", graph)]
    for stage in stages:
        graphs.append((stage.name, stage.apply(graphs[-1][1])))
    quantized = graphs[-1][1]
    reference_float = graphs[-2][1]  # the float graph the quantizer saw (pruned if pruning was asked)
    with bundle.writing(out_dir, inputs, force) as tmp:
        ir.save(quantized, tmp)
        ir.save(reference_float, tmp / bundle.FLOAT_DIR)
        for index, (name, g) in enumerate(graphs):
            ir.save(g, tmp / "stages" / f"{index:02d}-{name}")
        report = quantization_report(graph, quantized, calibration_x, eval_data,
                                     pruned=reference_float if prune_amount else None)
        report["target"] = target
        report["source"] = str(source)
        report["resources"] = compilers[target](quantized, tmp, reference_float, calibration_x)
        report["compile_seconds"] = time.perf_counter() - started
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=_jsonable))
        save_report_plot(report, tmp / "report.png")
        bundle.write_manifest(tmp, target, quantized.profile, {"source": str(source), "prune": prune_amount})
    return report


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def with_output_mode(graph: ir.Graph, mode: str | None) -> ir.Graph:
    return replace(graph, output_mode=mode) if mode else graph
