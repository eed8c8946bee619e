"""Lava processes of the EGRU network: the EGRU neurons and the readout neurons.

Synapses are Lava's own ``Dense``; inputs and outputs are Lava's ``RingBuffer`` source and sinks.
Each neuron process is active for ``steps`` chip steps starting at its depth in the schedule
(``hwsim.loihi2.schedule``); before and after that window it sends zeros.  Importing this module
imports Lava (through ``lava_compat``), so only the functions that run Lava import it.
"""
from __future__ import annotations

import numpy as np

from egru_deploy.targets.loihi2.lava_compat import import_lava

import_lava()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402

# Saturation counters kept by the neuron models, named as in reference.run_int.
SATURATION_KINDS = ("accumulator", "state", "event", "output")
# A model that raises would hang Lava 0.10's runtime (it waits forever for the dead process), so the
# neuron models catch the error, keep the network stepping with zeros, and leave the message here.
FAILURE_MESSAGE_BYTES = 240


class _NeuronProcess(AbstractProcess):
    """The counters every neuron process keeps: saturations, and a failure report."""

    def __init__(self, **params):
        super().__init__(**params)
        self.saturations = Var(shape=(len(SATURATION_KINDS),), init=0)
        self.failed = Var(shape=(1,), init=0)
        self.failure = Var(shape=(FAILURE_MESSAGE_BYTES,), init=0)  # UTF-8, zero padded


class EGRUNeurons(_NeuronProcess):
    """``hidden`` EGRU units.  ``a_in_x``/``a_in_h`` receive the gate sums (z, r, g blocks of 3H) of the
    input and recurrent Dense; ``s_out`` sends the graded events, ``trace_out`` the trace.

    ``quant`` (an ``ir.EGRUQuant``) and ``profile`` are given for the fixed_pt model, None for floating_pt.
    ``zoneout`` is the layer's zoneout probability (``ir.EGRU.zoneout``).
    """

    def __init__(self, *, bias: np.ndarray, recurrent_bias: np.ndarray, thr: np.ndarray, use_trace: bool,
                 start: int, steps: int, zoneout: float = 0.0, quant=None, profile: str | None = None,
                 name: str | None = None):
        hidden = thr.shape[0]
        super().__init__(start=start, steps=steps, quant=quant, profile=profile, name=name, use_trace=use_trace,
                         zoneout=zoneout)
        self.a_in_x = InPort(shape=(3 * hidden,))
        self.a_in_h = InPort(shape=(3 * hidden,))
        self.s_out = OutPort(shape=(hidden,))
        self.trace_out = OutPort(shape=(hidden,))
        self.bias = Var(shape=(3 * hidden,), init=bias)
        self.recurrent_bias = Var(shape=(3 * hidden,), init=recurrent_bias)
        self.thr = Var(shape=(hidden,), init=thr)
        self.c = Var(shape=(hidden,), init=0)
        self.events = Var(shape=(hidden,), init=0)
        self.trace = Var(shape=(hidden,), init=0)
        self.spike_counts = Var(shape=(start + steps,), init=0)  # per chip step, like an activity probe


class ReadoutNeurons(_NeuronProcess):
    """A Linear layer's neurons: ``a_in`` receives the Dense sums, ``s_out`` sends the outputs."""

    def __init__(self, *, bias: np.ndarray, relu: bool, start: int, steps: int, quant=None,
                 profile: str | None = None, name: str | None = None):
        size = bias.shape[0]
        super().__init__(relu=relu, start=start, steps=steps, quant=quant, profile=profile, name=name)
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))
        self.bias = Var(shape=(size,), init=bias)
