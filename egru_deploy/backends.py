"""Execution backends for ``egru-deploy emulate``: an explicit registry of name -> runner.

A runner takes ``(model_path, x, layout, output_mode, initial_events)`` and returns a
``reference.RunResult``.  ``initial_events`` (``reference.check_initial_events``) are taken by the
float, reference and hwsim backends; lava and qemu refuse them in one line.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from egru_deploy import reference
from egru_deploy.errors import UserError


def _float_graph(model_path, layout):
    """The float graph of a checkpoint/model file, or the float graph kept inside a bundle."""
    from egru_deploy import bundle
    from egru_deploy.converters import load_model

    if bundle.is_bundle(model_path):
        return bundle.load_float_graph(model_path)
    return load_model(model_path, layout=layout)


def _quantized_graph(model_path, backend: str, layout=None):
    """A bundle's integer graph, or a quantized model file (e.g. an ONNX export of a bundle)."""
    from egru_deploy import bundle
    from egru_deploy.converters import load_model

    graph = bundle.load_graph(model_path) if bundle.is_bundle(model_path) else load_model(model_path, layout)
    if not graph.quantized:
        raise UserError(f"{model_path}: backend {backend!r} runs a quantized model; "
                        f"run `egru-deploy compile {model_path} --target ... -o BUNDLE` first")
    return graph


def _run_float(model_path, x, layout, output_mode, initial_events=None):
    graph = _float_graph(model_path, layout)
    if graph.quantized:
        raise UserError(f"{model_path}: holds a model quantized for {graph.profile!r}; use --backend reference")
    if output_mode:
        graph = replace(graph, output_mode=output_mode)
    return reference.run_float(graph, x, initial_events)


def _run_reference(model_path, x, layout, output_mode, initial_events=None):
    graph = _quantized_graph(model_path, "reference", layout)
    if output_mode:
        graph = replace(graph, output_mode=output_mode)
    return reference.run(graph, x, initial_events)


def _hwsim_spinnaker2(model_path, x, output_mode, initial_events=None):
    from egru_deploy.hwsim import spinnaker2

    return spinnaker2.run_bundle(model_path, x, output_mode, initial_events)


def _hwsim_loihi2(model_path, x, output_mode, initial_events=None):
    from egru_deploy.hwsim import loihi2

    return loihi2.run_bundle(model_path, x, output_mode, initial_events)


HWSIM = {  # target a bundle was compiled for -> its bit-accurate emulator
    "spinnaker2": _hwsim_spinnaker2,
    "loihi2": _hwsim_loihi2,
}


def _run_hwsim(model_path, x, layout, output_mode, initial_events=None):
    from egru_deploy import bundle

    target = bundle.read_manifest(model_path).get("target")
    if target not in HWSIM:
        raise UserError(f"{model_path}: no hwsim emulator for target {target!r} (have {', '.join(HWSIM)})")
    return HWSIM[target](model_path, x, output_mode, initial_events)


def _run_qemu(model_path, x, layout, output_mode, initial_events=None):
    """SpiNNaker2 bundles: every PE's C program on QEMU, checked against hwsim packet for packet."""
    from egru_deploy.targets.spinnaker2 import qemu

    return qemu.run_bundle(model_path, x, output_mode, initial_events=initial_events)


def _run_lava(model_path, x, layout, output_mode, initial_events=None):
    """Loihi 2 bundles: the compiled Lava processes on Lava's CPU simulation (fixed_pt models)."""
    from egru_deploy.targets.loihi2.run import emulate_lava

    return emulate_lava(model_path, x, output_mode, initial_events)


BACKENDS = {
    "float": _run_float,
    "reference": _run_reference,
    "hwsim": _run_hwsim,
    "qemu": _run_qemu,
    "lava": _run_lava,
}


def run_backend(name: str, model_path, x, output_mode=None, layout=None, initial_events=None) -> reference.RunResult:
    if name not in BACKENDS:
        raise UserError(f"--backend: unknown backend {name!r} (expected one of {', '.join(BACKENDS)})")
    if not Path(model_path).exists():
        raise UserError(f"{model_path}: no such file or directory")
    return BACKENDS[name](model_path, x, layout, output_mode, initial_events)
