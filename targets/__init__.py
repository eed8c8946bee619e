"""Deployment targets: each consumes a quantized IR and writes its artefacts into a bundle.

``COMPILERS`` maps a target name to ``fn(quantized_graph, bundle_dir, float_graph, calibration_x) -> resources``
(the calibration inputs let a target measure activity-dependent costs such as synaptic ops per step).
The target packages import their optional SDKs (Lava, py-spinnaker2) lazily.
"""
from __future__ import annotations


def _compile_loihi2(quantized, bundle_dir, float_graph, calibration_x) -> dict:
    from egru_deploy.targets.loihi2.compile import compile_loihi2

    return compile_loihi2(quantized, bundle_dir, float_graph, calibration_x=calibration_x)


def _compile_spinnaker2(quantized, bundle_dir, float_graph, calibration_x) -> dict:  # noqa: ARG001 (static costs)
    from egru_deploy.targets.spinnaker2.compile import compile_spinnaker2

    return compile_spinnaker2(quantized, bundle_dir, float_graph)


COMPILERS = {
    "loihi2": _compile_loihi2,
    "spinnaker2": _compile_spinnaker2,
}
