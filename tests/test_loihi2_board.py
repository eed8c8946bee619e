"""Loihi 2 board path without lava-loihi: per-process model choice, placement table, refusal of host neurons.

Lava's model selection only (no runtime): fake NC models stand in for lava-loihi's, appended to what
``ProcGroupDiGraphs._find_proc_models`` finds (``lava/magma/compiler/compiler_graphs.py``; Lava otherwise
discovers models by scanning the process module's directory, where fakes defined here are not).
"""
from __future__ import annotations

import numpy as np
import pytest

from egru_deploy import reference, synthetic
from egru_deploy.errors import TargetUnavailable
from egru_deploy.profiles import LOIHI2
from egru_deploy.quantize import quantize

from lava_env import LAVA_ERROR  # noqa: E402  (imports Lava first, see lava_env)

pytestmark = pytest.mark.skipif(LAVA_ERROR is not None, reason=f"Lava not importable: {LAVA_ERROR}")

ON_CHIP = ("GradedVec", "GradedReluVec", "ProdNeuron", "Dense", "Sparse")


@pytest.fixture(scope="module")
def processes() -> dict:
    """The Lava processes of a one-layer EGRU with readout (every on-chip class), stand-in adapters."""
    from egru_deploy.targets.loihi2 import netlist, network

    graph = synthetic.random_graph(synthetic.NetworkShape(inputs=3, hidden=(4,), outputs=2), seed=0)
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32)
    q = quantize(graph, LOIHI2, x)
    net = netlist.build(q)
    sequence = reference.quantize_input(q, x, {})[0]
    return network.build_lava(net, sequence, net.chip_steps(sequence.shape[0]), board=False).processes


def _stock_classes() -> dict:
    from lava.proc.dense.process import Dense
    from lava.proc.graded.process import GradedReluVec, GradedVec
    from lava.proc.prodneuron.process import ProdNeuron
    from lava.proc.sparse.process import Sparse

    return {c.__name__: c for c in (GradedVec, GradedReluVec, ProdNeuron, Dense, Sparse)}


def _fake_nc_model(proc_cls):
    """An NC model of ``proc_cls`` as lava-loihi would declare one: the NC base class (run_configs' stub
    without lava-loihi, ``lava/magma/core/run_configs.py``), ``@requires(Loihi2NeuroCore)``."""
    from lava.magma.core import run_configs
    from lava.magma.core.decorator import implements, requires
    from lava.magma.core.model.model import AbstractProcessModel
    from lava.magma.core.resources import Loihi2NeuroCore
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    # Public Lava 0.10 has no lava.magma.core.model.nc: its stub is a plain class, so add the model base.
    bases = (run_configs.AbstractNcProcessModel,)
    if not issubclass(bases[0], AbstractProcessModel):
        bases += (AbstractProcessModel,)
    model = type(f"FakeNc{proc_cls.__name__}Model", bases, {})
    return implements(proc=proc_cls, protocol=LoihiProtocol)(requires(Loihi2NeuroCore)(model))


@pytest.fixture
def console(monkeypatch):
    """The report console, wide enough that no table cell wraps."""
    from rich.console import Console

    from egru_deploy import report

    wide = Console(width=400, record=True, highlight=False, markup=False)
    monkeypatch.setattr(report, "console", wide)
    return wide


@pytest.fixture
def fake_board(monkeypatch):
    """Register fake NC models for the named stock classes; returns {class name: fake model}."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    from lava.magma.core import run_configs

    # Lava 0.10's ImportError fallback defines ``AbstractCProcessModel`` where ``Loihi2HwCfg`` uses
    # ``CLoihiProcessModel`` (run_configs.py, top), so select raises NameError without lava-loihi.
    if not hasattr(run_configs, "CLoihiProcessModel"):
        monkeypatch.setattr(run_configs, "CLoihiProcessModel", type("CLoihiProcessModel", (), {}), raising=False)
    find = ProcGroupDiGraphs._find_proc_models
    fakes: dict = {}

    def register(*names: str) -> dict:
        fakes.update({_stock_classes()[n]: _fake_nc_model(_stock_classes()[n]) for n in names})
        return {cls.__name__: model for cls, model in fakes.items()}

    def find_with_fakes(proc):
        return find(proc) + ([fakes[type(proc)]] if type(proc) in fakes else [])

    monkeypatch.setattr(ProcGroupDiGraphs, "_find_proc_models", staticmethod(find_with_fakes))
    return register


def test_fake_nc_models_put_every_neuron_and_connection_on_neurocores(processes, fake_board, console):
    from egru_deploy.targets.loihi2.run import board_run_config, checked_board_config

    fakes = fake_board(*ON_CHIP)
    config, rows = board_run_config(processes)
    assert [r["name"] for r in rows] == list(processes)
    kinds = {r["lava_class"].rsplit(".", 1)[-1] for r in rows}
    assert set(ON_CHIP) <= kinds
    for row in rows:
        short = row["lava_class"].rsplit(".", 1)[-1]
        assert row["placement"] == ("neurocore" if short in ON_CHIP else "host"), row
    # The config pins exactly the table's choices: the fakes on chip, fixed_pt Py models on the host.
    pinned = {cls.__name__: model for cls, model in config.exception_proc_model_map.items()}
    assert {n: pinned[n] for n in ON_CHIP} == fakes
    models = {f"{m.__module__}.{m.__qualname__}" for m in config.exception_proc_model_map.values()}
    assert models == {r["model"] for r in rows}
    host = [m for cls, m in config.exception_proc_model_map.items() if cls.__name__ not in ON_CHIP]
    assert host and all("fixed_pt" in m.tags for m in host)
    assert type(config).__name__ == "Loihi2HwCfg" and config.select_tag is None
    # The compiler's own selection (compiler_graphs.py, _map_proc_to_model) with this config gives the pins.
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs as Graphs

    for cls, model in config.exception_proc_model_map.items():
        proc = next(p for p in processes.values() if type(p) is cls)
        assert Graphs._select_proc_models(proc, Graphs._find_proc_models(proc), config) is model
    checked_board_config(processes)  # no refusal; prints the table
    lines = console.export_text().splitlines()
    for row in rows:  # one table line per process, with its class, model and placement
        assert any(all(row[k] in line for k in ("name", "lava_class", "model", "placement")) for line in lines), row


def test_refuses_when_one_class_has_no_neurocore_model(processes, fake_board, console):
    from egru_deploy.targets.loihi2.run import checked_board_config

    fake_board("GradedVec", "GradedReluVec", "Dense", "Sparse")  # no ProdNeuron
    first = next(name for name, p in processes.items() if type(p).__name__ == "ProdNeuron")
    with pytest.raises(TargetUnavailable) as err:
        checked_board_config(processes)
    message = str(err.value)
    assert "\n" not in message
    assert message == (f"board run refused: {first} (lava.proc.prodneuron.process.ProdNeuron) would run on the "
                       "host (PyProdNeuronModelFixed); lava-loihi provides no neurocore model for it")
    assert first in console.export_text()  # the table comes before the refusal


def test_refuses_when_everything_would_run_on_the_host(processes, fake_board):
    from egru_deploy.targets.loihi2.run import board_run_config, refuse_host_neurons

    fake_board()  # only the NameError stub
    _, rows = board_run_config(processes)
    assert {r["placement"] for r in rows} == {"host"}
    first = next(r for r in rows if r["lava_class"].rsplit(".", 1)[-1] in ON_CHIP)
    with pytest.raises(TargetUnavailable, match=rf"^board run refused: {first['name']} \(") as err:
        refuse_host_neurons(rows)
    assert "would run on the host" in str(err.value) and "\n" not in str(err.value)


def test_board_config_without_lava_loihi_is_unavailable():
    from lava.utils import loihi

    from egru_deploy.targets.loihi2.run import MISSING_LAVA_LOIHI, hardware_run_config

    if loihi.is_installed():
        pytest.skip("lava-loihi is installed")
    with pytest.raises(TargetUnavailable, match="lava-loihi"):
        hardware_run_config("192.0.2.1")
    assert "lava-loihi" in MISSING_LAVA_LOIHI
