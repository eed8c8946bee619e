"""Process models of the EGRU and readout neurons.

``fixed_pt``: the integer specification applied to exactly what the Dense processes deliver (their
exact int32 sums): ``reference.egru_neuron_update`` for the EGRU units and
``reference.linear_output`` for the readout.  ``floating_pt``: the EGRU equations of DESIGN.md in
float64, for the float IR.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egru_deploy.ir import EGRUQuant
from egru_deploy.profiles import get_profile
from egru_deploy.reference import TRACE_DECAY, EGRUIntState, egru_neuron_update, linear_output
from egru_deploy.targets.loihi2.process import (FAILURE_MESSAGE_BYTES, SATURATION_KINDS, EGRUNeurons,
                                                ReadoutNeurons)

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402  (Lava imported by .process)
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

PAYLOAD = np.int32  # graded spikes and Dense sums travel as int32 (24-bit payloads)


@dataclass(frozen=True)
class EGRUNeuronParameters:
    """The neuron-side part of an ``ir.EGRU`` (what ``egru_neuron_update`` reads); weights live in Dense."""

    quant: EGRUQuant
    bias: np.ndarray
    recurrent_bias: np.ndarray
    thr: np.ndarray
    use_trace: bool
    zoneout: float

    @property
    def hidden(self) -> int:
        return self.thr.shape[0]


class _WindowedModel(PyLoihiProcessModel):
    """Receives on ``in_ports`` every step; computes ``step`` only in its window of ``steps`` chip
    steps after ``start`` (Lava's time_step counts from 1) and sends zeros outside it."""

    in_ports: tuple[str, ...] = ()
    out_ports: tuple[str, ...] = ()
    failed: np.ndarray = LavaPyType(np.ndarray, np.int64)
    failure: np.ndarray = LavaPyType(np.ndarray, np.int64)
    saturations: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def step(self, *received: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def zeros(self) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def run_spk(self) -> None:
        received = [getattr(self, port).recv() for port in self.in_ports]
        start = self.proc_params["start"]
        sent = None
        if start < self.time_step <= start + self.proc_params["steps"] and not self.failed[0]:
            try:
                sent = self.step(*received)
            except Exception as error:  # noqa: BLE001  (reported by network.run after the run)
                self._record_failure(error)
        for port, values in zip(self.out_ports, sent or self.zeros()):
            getattr(self, port).send(values)

    def _record_failure(self, error: Exception) -> None:
        message = f"chip step {self.time_step}: {type(error).__name__}: {error}".encode()[:FAILURE_MESSAGE_BYTES]
        self.failed = np.ones(1, np.int64)
        self.failure = np.pad(np.frombuffer(message, np.uint8).astype(np.int64),
                              (0, FAILURE_MESSAGE_BYTES - len(message)))

    def count_saturations(self, sat: dict) -> None:
        self.saturations = self.saturations + np.array([sat.get(kind, 0) for kind in SATURATION_KINDS])


class _EGRUModel(_WindowedModel):
    in_ports = ("a_in_x", "a_in_h")
    out_ports = ("s_out", "trace_out")
    spike_counts: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def zeros(self):
        return np.zeros_like(self.events), np.zeros_like(self.trace)


@implements(proc=EGRUNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyEGRUNeuronsFixed(_EGRUModel):
    a_in_x: PyInPort = LavaPyType(PyInPort.VEC_DENSE, PAYLOAD, precision=24)
    a_in_h: PyInPort = LavaPyType(PyInPort.VEC_DENSE, PAYLOAD, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, PAYLOAD, precision=24)
    trace_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, PAYLOAD, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    recurrent_bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    thr: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    c: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    events: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    trace: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def step(self, sums_x, sums_h):
        params = EGRUNeuronParameters(self.proc_params["quant"], self.bias, self.recurrent_bias, self.thr,
                                      self.proc_params["use_trace"], self.proc_params["zoneout"])
        state = EGRUIntState(self.c[None], self.events[None], self.trace[None])
        sat: dict[str, int] = {}
        fired = egru_neuron_update(get_profile(self.proc_params["profile"]), params,
                                   sums_x[None].astype(np.int64), sums_h[None].astype(np.int64), state, sat)
        self.c, self.events, self.trace = state.c[0], state.events[0], state.trace[0]
        self.spike_counts[self.time_step - 1] = np.count_nonzero(fired)
        self.count_saturations(sat)
        return self.events, self.trace


@implements(proc=EGRUNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyEGRUNeuronsFloat(_EGRUModel):
    a_in_x: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_in_h: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    trace_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    recurrent_bias: np.ndarray = LavaPyType(np.ndarray, float)
    thr: np.ndarray = LavaPyType(np.ndarray, float)
    c: np.ndarray = LavaPyType(np.ndarray, float)
    events: np.ndarray = LavaPyType(np.ndarray, float)
    trace: np.ndarray = LavaPyType(np.ndarray, float)

    def step(self, sums_x, sums_h):
        gx, gh = sums_x + self.bias, sums_h + self.recurrent_bias
        h = self.thr.shape[0]
        z = 1 / (1 + np.exp(-(gx[:h] + gh[:h])))
        r = 1 / (1 + np.exp(-(gx[h:2 * h] + gh[h:2 * h])))
        g = np.tanh(gx[2 * h:] + r * gh[2 * h:])
        c_new = z * self.c + (1 - z) * g
        p = self.proc_params["zoneout"]
        if p:  # EvNN's eval zoneout (lib/egru_forward_cpu.cc)
            c_new = p * self.c + (1 - p) * c_new
        fired = c_new - self.thr > 0
        self.c = np.where(fired, c_new - self.thr, c_new)
        self.events = np.where(fired, c_new, 0.0)
        self.trace = TRACE_DECAY * self.trace + (1 - TRACE_DECAY) * self.events
        self.spike_counts[self.time_step - 1] = np.count_nonzero(fired)
        return self.events, self.trace


class _ReadoutModel(_WindowedModel):
    in_ports = ("a_in",)
    out_ports = ("s_out",)

    def zeros(self):
        return (np.zeros_like(self.bias),)


@implements(proc=ReadoutNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutNeuronsFixed(_ReadoutModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, PAYLOAD, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, PAYLOAD, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)

    def step(self, sums):
        sat: dict[str, int] = {}
        out = linear_output(get_profile(self.proc_params["profile"]), self.proc_params["quant"], self.bias,
                            self.proc_params["relu"], sums.astype(np.int64), sat)
        self.count_saturations(sat)
        return (out,)


@implements(proc=ReadoutNeurons, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutNeuronsFloat(_ReadoutModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)

    def step(self, sums):
        out = sums + self.bias
        return (np.maximum(out, 0) if self.proc_params["relu"] else out,)


# Explicit Process -> ProcessModel choice per tag, handed to the run config: Lava's own search
# would execute every module of this package under a bare name, which breaks on dataclasses.
MODELS = {
    "fixed_pt": {EGRUNeurons: PyEGRUNeuronsFixed, ReadoutNeurons: PyReadoutNeuronsFixed},
    "floating_pt": {EGRUNeurons: PyEGRUNeuronsFloat, ReadoutNeurons: PyReadoutNeuronsFloat},
}
