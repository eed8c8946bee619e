"""Running a Loihi 2 bundle: on a board (``Loihi2HwCfg``) or on Lava's CPU simulation.

The board path builds the same stock-process network as the simulation, with lava-loihi's adapters
at the host boundary; only the run configuration changes.  It needs Intel's ``lava-loihi`` (INRC
members only), imported lazily.  hwsim is reached through ``hwsim.loihi2.run_bundle``.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from egru_deploy import bundle, reference
from egru_deploy.errors import TargetUnavailable
from egru_deploy.ir import Graph
from egru_deploy.targets.loihi2 import network
from egru_deploy.targets.loihi2.netlist import LAVA_CLASSES, ON_CHIP

TARGET = "loihi2"
MISSING_LAVA_LOIHI = ("Loihi 2 board runs need Intel's lava-loihi, which is not installed; "
                      "emulate instead: egru-deploy emulate BUNDLE --backend hwsim|lava")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def bundle_graph(bundle_dir, output_mode: str | None = None) -> Graph:
    """The integer graph of a Loihi 2 bundle; refuses bundles for other targets or newer schemas."""
    bundle.read_manifest(bundle_dir, expect_target=TARGET)
    graph = bundle.load_graph(bundle_dir)
    return replace(graph, output_mode=output_mode) if output_mode else graph


def emulate_lava(bundle_dir, x: np.ndarray, output_mode: str | None = None,
                 initial_events=None) -> reference.RunResult:
    return network.emulate(bundle_graph(bundle_dir, output_mode), x, initial_events)


def hardware_run_config(board: str | None):
    """``run_config(processes)`` for ``network.run`` on a Loihi 2 system: ``checked_board_config``.

    ``board``: an IPv4 address selects a directly attached host (Kapoho Point), any other name a
    SLURM board; None keeps the environment's own lava-loihi settings.  The placement table is printed
    for the first sequence only: every sequence's network has the same processes, so the same models.
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
    printed = []

    def run_config(processes: dict):
        config = checked_board_config(processes, show=not printed)
        printed.append(True)
        return config

    return run_config


# Where a chosen model runs, for the table and the refusal message.
_WHERE = {"neurocore": "on neurocores", "embedded": "on the embedded CPUs", "host": "on the host",
          "sub-processes": "as sub-processes"}


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def placement(model) -> str:
    """Where Lava runs ``model`` on Loihi 2, by the tests ``Loihi2HwCfg`` ranks models with
    (``lava/magma/core/run_configs.py``, ``Loihi2HwCfg._order_according_to_resources``): an NC model
    requires ``NeuroCore`` or ``Loihi2NeuroCore`` and subclasses ``AbstractNcProcessModel``; a C model
    subclasses ``CLoihiProcessModel`` (embedded CPUs); a Py model runs in a host process.  The classes
    are read from ``run_configs`` itself, so this agrees with Lava's ranking, stubs included (without
    lava-loihi, ``run_configs`` stubs ``AbstractNcProcessModel`` and defines no ``CLoihiProcessModel``).
    """
    from lava.magma.core import run_configs
    from lava.magma.core.model.py.model import AbstractPyProcessModel
    from lava.magma.core.model.sub.model import AbstractSubProcessModel
    from lava.magma.core.resources import Loihi2NeuroCore, NeuroCore

    c_model = getattr(run_configs, "CLoihiProcessModel", None)
    if issubclass(model, run_configs.AbstractNcProcessModel) and (
            NeuroCore in model.required_resources or Loihi2NeuroCore in model.required_resources):
        return "neurocore"
    if c_model is not None and issubclass(model, c_model):
        return "embedded"
    if issubclass(model, AbstractSubProcessModel):  # expanded by the compiler, not placed as one
        return "sub-processes"
    return "host" if issubclass(model, AbstractPyProcessModel) else "unknown"


def board_run_config(processes: dict):
    """``(Loihi2HwCfg, rows)``: each process's model as ``Loihi2HwCfg()`` (no select_tag) chooses it,
    pinned in the config's ``exception_proc_model_map`` so the run uses exactly what the rows show.

    Rows: ``{"name", "lava_class", "model", "placement"}`` per process, in ``processes`` order.  Models
    are found as Lava's compiler finds them, ``ProcGroupDiGraphs._find_proc_models``
    (``lava/magma/compiler/compiler_graphs.py``), once per class: the search depends on the class only
    (``type(proc) is cls.implements_process``).  No select_tag: on hardware it would filter the NC
    models too (``AbstractLoihiRunCfg.select``, case 3b(ii)).  Host Py models are the ``fixed_pt``
    variant where the process has one, as in the CPU simulation: untagged, ``Loihi2HwCfg`` takes the
    first Py model found, e.g. the float ``PySendModelFloat`` of the RingBuffer source.
    The map is keyed by Process class: ``select`` looks up ``process.__class__`` (run_configs.py, case 1).
    """
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    from lava.magma.compiler.exceptions import NoProcessModelFound
    from lava.magma.core.model.py.model import AbstractPyProcessModel
    from lava.magma.core.run_configs import Loihi2HwCfg

    chooser = Loihi2HwCfg()
    chosen: dict = {}  # Process class -> model class
    rows = []
    for name, proc in processes.items():
        cls = type(proc)
        if cls not in chosen:
            try:
                models = ProcGroupDiGraphs._find_proc_models(proc)
                model = chooser.select(proc, models)
            except (AssertionError, NotImplementedError, NoProcessModelFound) as e:
                raise TargetUnavailable(f"board run refused: {name} ({_qualified(cls)}): {e}") from None
            if placement(model) == "host" and "fixed_pt" not in model.tags:
                model = next((m for m in models if issubclass(m, AbstractPyProcessModel)
                              and "fixed_pt" in m.tags), model)
            chosen[cls] = model
        model = chosen[cls]
        rows.append({"name": name, "lava_class": _qualified(cls), "model": _qualified(model),
                     "placement": placement(model)})
    return Loihi2HwCfg(exception_proc_model_map=chosen), rows


def refuse_host_neurons(rows: list[dict]) -> None:
    """Refuse a board run in which an EGRU or readout neuron or one of their connections (a process of
    an on-chip class of ``netlist.LAVA_CLASSES``) would not run on neurocores."""
    on_chip = {LAVA_CLASSES[kind] for kind in ON_CHIP}
    for row in rows:
        if row["lava_class"] in on_chip and row["placement"] != "neurocore":
            raise TargetUnavailable(
                f"board run refused: {row['name']} ({row['lava_class']}) would run "
                f"{_WHERE.get(row['placement'], row['placement'])} ({row['model'].rsplit('.', 1)[-1]}); "
                "lava-loihi provides no neurocore model for it")


def print_placement(rows: list[dict]) -> None:
    from rich.table import Table

    from egru_deploy.report import console

    table = Table(title="Loihi 2 board run: process placement")
    for column in ("process", "Lava class", "model", "placement"):
        table.add_column(column, overflow="fold")  # wrap, never elide: every name must be readable
    for row in rows:
        table.add_row(row["name"], row["lava_class"], row["model"], row["placement"])
    console.print(table)


def checked_board_config(processes: dict, show: bool = True):
    """The board's run config: choose and pin every model, print the table, refuse host neurons."""
    config, rows = board_run_config(processes)
    if show:
        print_placement(rows)
    refuse_host_neurons(rows)
    return config


def run_on_board(bundle_dir, x: np.ndarray, board: str | None = None,
                 output_mode: str | None = None, initial_events=None) -> reference.RunResult:
    graph = bundle_graph(bundle_dir, output_mode)
    reference.refuse_initial_events(initial_events, "a Loihi 2 board run")
    return network.run(graph, x, run_config=hardware_run_config(board), board=True).result(graph)
