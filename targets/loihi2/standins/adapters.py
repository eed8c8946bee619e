"""Host <-> chip adapters of the Loihi 2 network, and the process models of a CPU simulation.

On a board the host's RingBuffer source and sinks reach the chip through lava-loihi's
``lava.proc.embedded_io.spike.PyToNxAdapter`` / ``NxToPyAdapter`` (ports ``inp`` and ``out``, 24-bit
messages), exactly as public Lava's ``lava/networks/gradedvecnetwork.py`` (``InputVec`` / ``OutputVec``
with ``loihi2=True``) wires them.  Public Lava does not ship that module, so a CPU simulation uses the
stand-ins below: processes with the same ports that pass the messages through in the same chip step.
The whole network then has the same topology in simulation and on a board.

``SIMULATION_MODELS`` is the explicit Process -> ProcessModel choice of a ``Loihi2SimCfg`` run: the stock
processes' bit-accurate ``fixed_pt`` models (public lava-nc 0.10) and the stand-ins' pass-through.
"""
from __future__ import annotations

import numpy as np

from egru_deploy.errors import TargetUnavailable
from egru_deploy.targets.loihi2.lava_compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

EMBEDDED_IO = "lava.proc.embedded_io.spike"


class _PassThrough(AbstractProcess):
    def __init__(self, *, shape: tuple[int, ...], num_message_bits: int = 24):
        super().__init__(shape=shape, num_message_bits=num_message_bits)
        self.inp = InPort(shape=shape)
        self.out = OutPort(shape=shape)


class HostToChipStandIn(_PassThrough):
    """CPU stand-in of ``PyToNxAdapter``: the host's messages, unchanged, in the same step."""


class ChipToHostStandIn(_PassThrough):
    """CPU stand-in of ``NxToPyAdapter``: the chip's messages, unchanged, in the same step."""


class _PassThroughModel(PyLoihiProcessModel):
    inp: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self) -> None:
        self.out.send(self.inp.recv())


@implements(proc=HostToChipStandIn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHostToChipStandIn(_PassThroughModel):
    pass


@implements(proc=ChipToHostStandIn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyChipToHostStandIn(_PassThroughModel):
    pass


def adapters(board: bool):
    """(host -> chip, chip -> host) adapter classes: lava-loihi's on a board, the stand-ins otherwise."""
    if not board:
        return HostToChipStandIn, ChipToHostStandIn
    try:
        from lava.proc.embedded_io.spike import NxToPyAdapter, PyToNxAdapter
    except ImportError:
        raise TargetUnavailable(f"Loihi 2 board runs need lava-loihi's {EMBEDDED_IO} adapters, which are not "
                                "installed; emulate instead: egru-deploy emulate BUNDLE --backend hwsim|lava") from None
    return PyToNxAdapter, NxToPyAdapter


def simulation_models() -> dict:
    """Process class -> fixed_pt ProcessModel class for a ``Loihi2SimCfg`` run."""
    from lava.proc.dense.models import PyDenseModelBitAcc
    from lava.proc.dense.process import Dense
    from lava.proc.graded.models import PyGradedReluVecModelFixed, PyGradedVecModelFixed
    from lava.proc.graded.process import GradedReluVec, GradedVec
    from lava.proc.io.sink import PyReceiveModelFixed, RingBuffer as Sink
    from lava.proc.io.source import PySendModelFixed, RingBuffer as Source
    from lava.proc.prodneuron.models import PyProdNeuronModelFixed
    from lava.proc.prodneuron.process import ProdNeuron
    from lava.proc.sparse.models import PySparseModelBitAcc
    from lava.proc.sparse.process import Sparse

    return {Dense: PyDenseModelBitAcc, Sparse: PySparseModelBitAcc, GradedVec: PyGradedVecModelFixed,
            GradedReluVec: PyGradedReluVecModelFixed, ProdNeuron: PyProdNeuronModelFixed,
            Source: PySendModelFixed, Sink: PyReceiveModelFixed,
            HostToChipStandIn: PyHostToChipStandIn, ChipToHostStandIn: PyChipToHostStandIn}
