"""Running a Loihi 2 bundle: on a board (``Loihi2HwCfg``), on Lava's CPU simulation, or in hwsim.

The board path builds the same process graph as the simulation; only the run configuration
changes.  It needs Intel's ``lava-loihi`` (available to INRC members only), imported lazily.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from egru_deploy import bundle, reference
from egru_deploy.errors import TargetUnavailable
from egru_deploy.hwsim import loihi2 as hwsim
from egru_deploy.ir import Graph
from egru_deploy.targets.loihi2 import network
from egru_deploy.targets.loihi2.mapping import ENERGY

TARGET = "loihi2"
MISSING_LAVA_LOIHI = ("Loihi 2 board runs need Intel's lava-loihi, which is not installed; "
                      "emulate instead: egru-deploy emulate BUNDLE --backend hwsim|lava")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def bundle_graph(bundle_dir, output_mode: str | None = None) -> Graph:
    """The integer graph of a Loihi 2 bundle; refuses bundles for other targets or newer schemas."""
    bundle.read_manifest(bundle_dir, expect_target=TARGET)
    graph = bundle.load_graph(bundle_dir)
    return replace(graph, output_mode=output_mode) if output_mode else graph


def emulate_hwsim(bundle_dir, x: np.ndarray, output_mode: str | None = None,
                  initial_events=None) -> reference.RunResult:
    graph = bundle_graph(bundle_dir, output_mode)
    chip_run = hwsim.run(graph, x, initial_events=initial_events)
    result = chip_run.result(graph)
    per_core = chip_run.activity.per_core_per_step(chip_run.steps)
    estimate = ENERGY.estimate(per_core["synaptic_ops"], per_core["neuron_updates"], per_core["messages"])
    result.hardware = {"chip": "Loihi 2", "neurocores": int(per_core["synaptic_ops"].shape[0]),
                       "synaptic ops per step": estimate["synaptic_ops"],
                       "messages per step": estimate["messages"],
                       "energy per step, nJ (Loihi 1 proxy)": estimate["energy_nj"],
                       "busiest core per step, us (Loihi 1 proxy)": estimate["busiest_core_us"]}
    return result


def emulate_lava(bundle_dir, x: np.ndarray, output_mode: str | None = None,
                 initial_events=None) -> reference.RunResult:
    return network.emulate(bundle_graph(bundle_dir, output_mode), x, initial_events)


def hardware_run_config(board: str | None):
    """``run_config(tag, models)`` for ``network.run`` on a Loihi 2 system.

    ``board``: an IPv4 address selects a directly attached host (Kapoho Point), any other name a
    SLURM board; None keeps the environment's own lava-loihi settings.
    """
    from egru_deploy.targets.loihi2.lava_compat import import_lava

    try:
        import_lava()
    except TargetUnavailable:
        raise TargetUnavailable(MISSING_LAVA_LOIHI) from None
    from lava.utils import loihi

    if not loihi.is_installed():
        raise TargetUnavailable(MISSING_LAVA_LOIHI)
    if board and _IP_ADDRESS.match(board):
        loihi.use_ethernet_host(board)
    elif board:
        loihi.use_slurm_host(board=board)
    from lava.magma.core.run_configs import Loihi2HwCfg

    return lambda tag, models: Loihi2HwCfg(select_tag=tag, exception_proc_model_map=models)


def run_on_board(bundle_dir, x: np.ndarray, board: str | None = None,
                 output_mode: str | None = None, initial_events=None) -> reference.RunResult:
    graph = bundle_graph(bundle_dir, output_mode)
    reference.refuse_initial_events(initial_events, "a Loihi 2 board run")
    return network.run(graph, x, run_config=hardware_run_config(board)).result(graph)
