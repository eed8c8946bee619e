"""IR <-> ONNX, built explicitly with ``onnx.helper`` (standard ops only, opset 18).

Graph input ``input`` float32 (batch, time, I), frames (batch, time, C, H, W), or ``tokens`` int64
(batch, time); output ``output`` float32 (batch, time, O) for the ``sequence`` mode, (batch, O) for
``last``/``mean``.  Batch and sequence length are dynamic: each EGRU layer is one ``Scan`` over the
time axis whose body holds one step (MatMul, Split, Sigmoid/Tanh, Greater, Where, ...).  A frame
front-end runs on all batch x time frames at once, reshaped to (batch*time, ...) inside the graph:
``Conv``/``MaxPool``/``AveragePool`` (``count_include_pad``) in float; in the integer flavour, where
ONNX has no int64 convolution or pooling, the same windows as ``Slice``s of the padded channels-last
frames: ``Concat`` + int64 ``MatMul`` for a convolution (exactly ``reference.conv_windows``),
``Max`` or ``Add`` + rounding division for pooling.

A float graph exports the float equations (``reference.run_float``).  A quantized graph exports
its profile's integer arithmetic exactly (``reference.run_int``): int64 MatMul, ``Clip`` for
saturation, right shifts as floor divisions (``BitShift`` is unsigned-only), and the profile's
sigmoid/tanh as ``Gather`` tables (lookup) or sums of ReLU chords (``circuit.Chords``).  A profile
whose EGRU is a stock-process circuit (Loihi 2, ``Profile.circuit``) exports that circuit's rules
(``circuit.layer_int``, ``circuit.linear_int``: floor shifts, no saturation, 8-bit gates) for its
EGRU layers and readouts; its host front-end keeps the rules above.

Every IR array is an initializer named as in ``ir.to_json_and_arrays`` (``layers.<i>.<field>``)
and the IR description is stored in ``metadata_props``; :func:`load` rebuilds the IR from them
and accepts the file only if re-exporting that IR gives the same nodes and constants.
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from egru_deploy import __version__, circuit, ir, safe_io
from egru_deploy.circuit import ChordGates, Chords
from egru_deploy.errors import ConversionError
from egru_deploy.ir import FRAME_LAYERS, EGRU, Conv2d, Embedding, Graph, Linear, Pool2d, QType
from egru_deploy.profiles import LookupTable, Profile, get_profile
from egru_deploy.reference import TRACE_DECAY, input_format

OPSET = 18
IR_VERSION = 8  # the IR version that introduced opset 18: readable by older runtimes too
FORMAT = "egru-deploy-onnx"
FORMAT_VERSION = 1
META_FORMAT = "egru_deploy.format"
META_VERSION = "egru_deploy.format_version"
META_GRAPH = "egru_deploy.graph"  # the IR as ir.to_json_and_arrays describes it
FEATURES, TOKENS, OUTPUT = "input", "tokens", "output"
BATCH, TIME = "batch", "time"


class _Builder:
    """Nodes of one ONNX graph (the main graph or a Scan body); constants go to the shared table."""

    def __init__(self, prefix: str, initializers: dict[str, TensorProto]):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers = initializers
        self._count = 0

    def op(self, op_type: str, *inputs: str, outputs: int = 1, out: str | None = None, **attrs):
        """Append a node; return its output name (or list of names when ``outputs`` > 1)."""
        self._count += 1
        name = f"{self.prefix}/{op_type}{self._count}"
        names = [out or name] if outputs == 1 else [f"{name}:{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=name, **attrs))
        return names[0] if outputs == 1 else names

    def const(self, value, dtype, name: str | None = None) -> str:
        """A constant initializer, shared by value unless ``name`` is given (for big tables)."""
        array = np.asarray(value, dtype)
        if name is None:
            name = f"const.{array.dtype}.{'_'.join(str(v) for v in array.ravel().tolist())}"
            name += "[]" if array.ndim else ""
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(array, name)
        return name


def _tensor_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _split_gates(b: _Builder, x: str, hidden: int) -> list[str]:
    return b.op("Split", x, b.const([hidden] * 3, np.int64), axis=1, outputs=3)


# --------------------------------------------------------------------------- float arithmetic

class _FloatArithmetic:
    """The float equations of ``reference.run_float``."""

    dtype = np.float32

    def source(self, b: _Builder, graph: Graph, x: str) -> str:
        return x

    def embedding(self, b: _Builder, weight: str, tokens: str) -> str:
        return b.op("Gather", weight, tokens, axis=0)

    def gates_input(self, b: _Builder, layer: EGRU, key: str, x: str) -> str:
        return b.op("Add", b.op("MatMul", x, f"{key}.kernel"), f"{key}.bias")

    def outer_values(self, b: _Builder, layer: EGRU, key: str) -> dict:
        return {name: f"{key}.{name}" for name in ("recurrent_kernel", "recurrent_bias", "thr")}

    def step(self, b: _Builder, layer: EGRU, outer: dict, states: list[str], gx: str):
        c, y = states[:2]
        f32 = np.float32
        zero, one = b.const(0, f32), b.const(1, f32)
        gh = b.op("Add", b.op("MatMul", y, outer["recurrent_kernel"]), outer["recurrent_bias"])
        (gx_z, gx_r, gx_g), (gh_z, gh_r, gh_g) = _split_gates(b, gx, layer.hidden), _split_gates(b, gh, layer.hidden)
        z = b.op("Sigmoid", b.op("Add", gx_z, gh_z))
        r = b.op("Sigmoid", b.op("Add", gx_r, gh_r))
        g = b.op("Tanh", b.op("Add", gx_g, b.op("Mul", r, gh_g)))
        c_new = b.op("Add", b.op("Mul", z, c), b.op("Mul", b.op("Sub", one, z), g))
        if layer.zoneout:  # EvNN's eval zoneout (lib/egru_forward_cpu.cc): c' = p * c + (1 - p) * c'
            p = f32(layer.zoneout)
            c_new = b.op("Add", b.op("Mul", b.const(p, f32), c), b.op("Mul", b.const(f32(1) - p, f32), c_new))
        above = b.op("Sub", c_new, outer["thr"])
        fired = b.op("Greater", above, zero)
        new_states = [b.op("Where", fired, above, c_new), b.op("Where", fired, c_new, zero)]
        if layer.use_trace:
            decay = f32(TRACE_DECAY)
            new_states.append(b.op("Add", b.op("Mul", b.const(decay, f32), states[2]),
                                   b.op("Mul", b.const(f32(1) - decay, f32), new_states[1])))
        return new_states

    def linear(self, b: _Builder, layer: Linear, key: str, x: str) -> str:
        out = b.op("Add", b.op("MatMul", x, b.op("Transpose", f"{key}.weight", perm=[1, 0])), f"{key}.bias")
        return b.op("Relu", out) if layer.relu else out

    readout = linear  # a Linear after the first EGRU: the same equations

    # frames: (N, C, H, W), ONNX's own layout
    def frames(self, b: _Builder, x: str, frame: tuple) -> str:
        return b.op("Reshape", x, b.const([-1, *frame], np.int64))

    def flatten(self, b: _Builder, x: str) -> str:
        return b.op("Flatten", x, axis=1)  # (C, H, W) row-major, as the IR reads a frame

    def conv(self, b: _Builder, layer: Conv2d, key: str, x: str, shapes: tuple) -> str:
        out = b.op("Conv", x, f"{key}.weight", f"{key}.bias", **_window_attrs(layer))
        return b.op("Relu", out) if layer.relu else out

    def pool(self, b: _Builder, layer: Pool2d, x: str, shapes: tuple) -> str:
        if layer.kind == "max":
            return b.op("MaxPool", x, **_window_attrs(layer))
        return b.op("AveragePool", x, count_include_pad=1, **_window_attrs(layer))  # torch's default

    def to_float(self, b: _Builder, graph: Graph, x: str) -> str:
        return x


def _window_attrs(layer) -> dict:
    k, s, p = layer.kernel, layer.stride, layer.padding
    return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4}


# --------------------------------------------------------------------------- integer arithmetic

class _IntArithmetic:
    """The exact integer arithmetic of ``reference.run_int`` for one profile, on int64 tensors."""

    dtype = np.int64

    def __init__(self, profile: Profile):
        if not isinstance(profile.activation, (LookupTable, ChordGates)):
            raise ConversionError(f"ONNX export: profile {profile.name!r} uses activation "
                                  f"{type(profile.activation).__name__}, which has no ONNX lowering here")
        self.profile = profile
        self.one = 1 << profile.state_frac

    # integer primitives (profiles.saturate / rshift_round, circuit.shift)
    def saturate(self, b: _Builder, x: str, bits: int) -> str:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return b.op("Clip", x, b.const(lo, np.int64), b.const(hi, np.int64))

    def rshift_round(self, b: _Builder, x: str, shift: int) -> str:
        if shift > 0:
            x = b.op("Add", x, b.const(1 << (shift - 1), np.int64))
        return self.shift(b, x, -shift)

    def shift(self, b: _Builder, x: str, exp: int) -> str:
        """``circuit.shift``: ``<< exp``, or the floor of ``>> -exp``."""
        if exp > 0:
            return b.op("Mul", x, b.const(1 << exp, np.int64))
        return self.floor_div(b, x, 1 << -exp) if exp < 0 else x

    def floor_div(self, b: _Builder, x: str, divisor: int) -> str:
        # ONNX integer Div truncates toward zero; Mod (fmod=0) takes the divisor's sign, so x - x mod d
        # is an exact multiple of d and the truncating division of it is the floor.
        d = b.const(divisor, np.int64)
        return b.op("Div", b.op("Sub", x, b.op("Mod", x, d)), d)

    def relu(self, b: _Builder, x: str) -> str:
        return b.op("Max", x, b.const(0, np.int64))  # onnxruntime has no int64 Relu

    def int64(self, b: _Builder, name: str) -> str:
        return b.op("Cast", name, to=TensorProto.INT64)

    # activations (profiles.LookupTable / circuit.ChordGates), format F in and out
    def sigmoid(self, b: _Builder, a: str) -> str:
        act, frac = self.profile.activation, self.profile.state_frac
        if isinstance(act, LookupTable):
            return self._lookup(b, a, "sigmoid", act.sigmoid_log2_range)
        return self.shift(b, self.chords(b, act.sigmoid_table(frac), a), frac - circuit.GATE_FRAC)

    def tanh(self, b: _Builder, a: str) -> str:
        act, frac = self.profile.activation, self.profile.state_frac
        if isinstance(act, LookupTable):
            return self._lookup(b, a, "tanh", act.tanh_log2_range)
        return self.chords(b, act.tanh_table(frac), a)

    def chords(self, b: _Builder, table: Chords, a: str) -> str:
        """``Chords.__call__``: ``low + shift(sum_k w_k * relu(a - knot_k), exp)``; the chord units along
        a new last axis, summed with their weights by an exact int64 MatMul."""
        units = self.relu(b, b.op("Sub", b.op("Unsqueeze", a, b.const([-1], np.int64)),
                                  b.const(table.knots, np.int64)))
        out = self.shift(b, b.op("MatMul", units, b.const(table.weights, np.int64)), table.exp)
        return b.op("Add", out, b.const(table.low, np.int64)) if table.low else out

    def _lookup(self, b: _Builder, a: str, fn: str, log2_range: int) -> str:
        act = self.profile.activation
        frac = self.profile.state_frac
        shift = frac + log2_range + 1 - act.index_bits
        offset = 1 << (frac + log2_range)
        if shift <= 0:
            raise ConversionError(f"ONNX export: {fn} table of profile {self.profile.name!r} indexes with a "
                                  f"left shift ({shift}); only right shifts are lowered")
        index = self.floor_div(b, b.op("Add", a, b.const(offset, np.int64)), 1 << shift)
        index = b.op("Clip", index, b.const(0, np.int64), b.const((1 << act.index_bits) - 1, np.int64))
        return b.op("Gather", b.const(act.table(fn, frac), np.int64, name=f"const.{fn}_table"), index, axis=0)

    # layers
    def source(self, b: _Builder, graph: Graph, x: str) -> str:
        if graph.input.tokens:
            return x
        frac = input_format(graph).frac
        bits = self.profile.event_bits
        scaled = b.op("Round", b.op("Mul", b.op("Cast", x, to=TensorProto.DOUBLE), b.const(2.0 ** frac, np.float64)))
        clipped = b.op("Clip", scaled, b.const(-(1 << (bits - 1)), np.float64),
                       b.const((1 << (bits - 1)) - 1, np.float64))
        return self.int64(b, clipped)

    def embedding(self, b: _Builder, weight: str, tokens: str) -> str:
        return b.op("Gather", self.int64(b, weight), tokens, axis=0)

    def gates_input(self, b: _Builder, layer: EGRU, key: str, x: str) -> str:
        q, p = layer.quant, self.profile
        acc = self.saturate(b, b.op("MatMul", x, self.int64(b, f"{key}.kernel")), p.acc_bits)
        shifted = self.rshift_round(b, acc, q.input.frac + q.kernel.frac - p.state_frac)
        return b.op("Add", shifted, self.int64(b, f"{key}.bias"))

    def outer_values(self, b: _Builder, layer: EGRU, key: str) -> dict:
        return {name: self.int64(b, f"{key}.{name}") for name in ("recurrent_kernel", "recurrent_bias", "thr")}

    def step(self, b: _Builder, layer: EGRU, outer: dict, states: list[str], gx: str):
        p, q = self.profile, layer.quant
        f, h = p.state_frac, layer.hidden
        c, events = states[:2]
        acc_h = self.saturate(b, b.op("MatMul", events, outer["recurrent_kernel"]), p.acc_bits)
        gh = b.op("Add", self.rshift_round(b, acc_h, p.event_frac + q.recurrent_kernel.frac - f),
                  outer["recurrent_bias"])
        (gx_z, gx_r, gx_g), (gh_z, gh_r, gh_g) = _split_gates(b, gx, h), _split_gates(b, gh, h)
        z = self.sigmoid(b, self.saturate(b, b.op("Add", gx_z, gh_z), p.state_bits))
        r = self.sigmoid(b, self.saturate(b, b.op("Add", gx_r, gh_r), p.state_bits))
        a_g = b.op("Add", gx_g, self.rshift_round(b, b.op("Mul", r, gh_g), f))
        g = self.tanh(b, self.saturate(b, a_g, p.state_bits))
        # c' = c + (1 - z) * (g - c), as the reference writes it
        update = self.rshift_round(b, b.op("Mul", b.op("Sub", b.const(self.one, np.int64), z), b.op("Sub", g, c)), f)
        c_new = self.saturate(b, b.op("Add", c, update), p.state_bits)
        gain = p.zoneout_gain(layer.zoneout)
        if gain:  # profiles.zoneout_blend: c' += rshift_round(gain * (c - c'), F)
            blend = b.op("Mul", b.const(gain, np.int64), b.op("Sub", c, c_new))
            c_new = b.op("Add", c_new, self.rshift_round(b, blend, f))
        fired = b.op("Greater", c_new, outer["thr"])
        zero = b.const(0, np.int64)
        y = b.op("Where", fired, c_new, zero)
        new_events = self.saturate(b, self.rshift_round(b, y, f - p.event_frac), p.event_bits)
        new_states = [b.op("Where", fired, b.op("Sub", c_new, outer["thr"]), c_new), new_events]
        if layer.use_trace:
            trace = states[2]
            gain = b.op("Mul", b.const(p.trace_gain, np.int64), b.op("Sub", new_events, trace))
            new_states.append(b.op("Add", trace, self.rshift_round(b, gain, f)))
        return new_states

    def linear(self, b: _Builder, layer: Linear, key: str, x: str) -> str:
        return self.linear_output(b, layer, key, self.weight_sums(b, key, x))

    readout = linear  # a Linear after the first EGRU: the same rules as on the host

    def weight_sums(self, b: _Builder, key: str, x: str) -> str:
        """The exact sums ``x @ weight.T`` of a Linear."""
        return b.op("MatMul", x, b.op("Transpose", self.int64(b, f"{key}.weight"), perm=[1, 0]))

    def linear_output(self, b: _Builder, layer: Linear | Conv2d, key: str, acc: str) -> str:
        """``reference.linear_output`` after the exact sum ``acc``."""
        q, p = layer.quant, self.profile
        acc = self.saturate(b, acc, p.acc_bits)
        out = b.op("Add", self.rshift_round(b, acc, q.input.frac + q.weight.frac - q.output.frac),
                   self.int64(b, f"{key}.bias"))
        if layer.relu:
            out = self.relu(b, out)
        return self.saturate(b, out, q.output.bits)

    # frames: (N, H, W, C) int64, channels-last as in the reference
    def frames(self, b: _Builder, x: str, frame: tuple) -> str:
        return b.op("Transpose", b.op("Reshape", x, b.const([-1, *frame], np.int64)), perm=[0, 2, 3, 1])

    def flatten(self, b: _Builder, x: str) -> str:
        return b.op("Flatten", b.op("Transpose", x, perm=[0, 3, 1, 2]), axis=1)

    def windows(self, b: _Builder, layer, x: str, out_shape: tuple, pad_value: int) -> list[str]:
        """Element (i, j) of every window, for i, j in row order: strided ``Slice``s (N, Ho, Wo, C)."""
        k, s, p = layer.kernel, layer.stride, layer.padding
        _, ho, wo = out_shape
        if p:
            x = b.op("Pad", x, b.const([0, p, p, 0, 0, p, p, 0], np.int64), b.const(pad_value, np.int64))
        axes, steps = b.const([1, 2], np.int64), b.const([s, s], np.int64)
        return [b.op("Slice", x, b.const([i, j], np.int64), b.const([i + s * (ho - 1) + 1, j + s * (wo - 1) + 1],
                                                                     np.int64), axes, steps)
                for i in range(k) for j in range(k)]

    def conv(self, b: _Builder, layer: Conv2d, key: str, x: str, shapes: tuple) -> str:
        rows = b.op("Concat", *self.windows(b, layer, x, shapes[1], 0), axis=3)  # (N, Ho, Wo, k*k*C): i, j, c
        weight = b.op("Reshape", b.op("Transpose", self.int64(b, f"{key}.weight"), perm=[2, 3, 1, 0]),
                      b.const([-1, layer.weight.shape[0]], np.int64))  # [(i, j, c), O]
        return self.linear_output(b, layer, key, b.op("MatMul", rows, weight))

    def pool(self, b: _Builder, layer: Pool2d, x: str, shapes: tuple) -> str:
        if layer.kind == "max":
            return b.op("Max", *self.windows(b, layer, x, shapes[1], np.iinfo(np.int64).min))
        parts = self.windows(b, layer, x, shapes[1], 0)
        total = parts[0]
        for part in parts[1:]:
            total = b.op("Add", total, part)
        n = layer.kernel * layer.kernel  # profiles.div_round: the rounding shift, or floor((2x + n) / 2n)
        if n & (n - 1) == 0:
            return self.rshift_round(b, total, n.bit_length() - 1)
        return self.floor_div(b, b.op("Add", b.op("Mul", total, b.const(2, np.int64)), b.const(n, np.int64)), 2 * n)

    def to_float(self, b: _Builder, graph: Graph, x: str) -> str:
        last = graph.layers[-1]
        q = last.quant.output if isinstance(last, Linear) else QType(self.profile.event_bits, self.profile.event_frac)
        scaled = b.op("Mul", b.op("Cast", x, to=TensorProto.DOUBLE), b.const(q.scale, np.float64))
        return b.op("Cast", scaled, to=TensorProto.FLOAT)


class _CircuitArithmetic(_IntArithmetic):
    """A circuit profile's chip arithmetic (``circuit.layer_int``, ``circuit.linear_int``) for the EGRU
    layers and readouts: floor shifts, nothing saturated, gates in format G.  The host front-end and
    the input rounding keep ``_IntArithmetic``'s rules, as ``reference.run_int`` does."""

    def conn(self, b: _Builder, weight: int, x: str, exp: int) -> str:
        """A connection with one weight: ``shift(weight * x, exp)``."""
        return self.shift(b, b.op("Mul", b.const(weight, np.int64), x), exp)

    def gates_input(self, b: _Builder, layer: EGRU, key: str, x: str) -> str:
        # The circuit adds b + recurrent_bias to A_z and A_r at once; without saturation the sum is the
        # same when each bias joins its own half (here and in step).
        k = circuit.layer_constants(self.profile, layer)
        acc = b.op("MatMul", x, self.int64(b, f"{key}.kernel"))
        return b.op("Add", self.shift(b, acc, k.in_exp), self.int64(b, f"{key}.bias"))

    def outer_values(self, b: _Builder, layer: EGRU, key: str) -> dict:
        values = super().outer_values(b, layer, key)
        # The soft reset subtracts conn(thr_weights, fired, thr_exp) with thr_weights = shift(thr, -thr_exp)
        # (circuit.threshold_weights), i.e. shift(thr_weights, thr_exp) where the unit fires.
        e = circuit.layer_constants(self.profile, layer).thr_exp
        values["reset"] = self.shift(b, self.shift(b, values["thr"], -e), e)
        return values

    def step(self, b: _Builder, layer: EGRU, outer: dict, states: list[str], gx: str):
        p, h = self.profile, layer.hidden
        sig, tanh = p.activation.sigmoid_table(p.state_frac), p.activation.tanh_table(p.state_frac)
        k = circuit.layer_constants(p, layer)
        c, y = states[:2]
        gh = b.op("Add", self.shift(b, b.op("MatMul", y, outer["recurrent_kernel"]), k.rec_exp),
                  outer["recurrent_bias"])
        (gx_z, gx_r, gx_g), (gh_z, gh_r, gh_g) = _split_gates(b, gx, h), _split_gates(b, gh, h)
        z = self.chords(b, sig, b.op("Add", gx_z, gh_z))  # format G
        r = self.chords(b, sig, b.op("Add", gx_r, gh_r))
        p_r = self.shift(b, b.op("Mul", r, gh_g), -circuit.PRODUCT_EXP)
        g_minus_c = b.op("Sub", self.chords(b, tanh, b.op("Add", p_r, gx_g)), c)
        one_minus_z = b.op("Sub", b.const(1 << circuit.GATE_FRAC, np.int64), z)
        update = self.shift(b, b.op("Mul", one_minus_z, g_minus_c), -circuit.PRODUCT_EXP)
        w_zo, e_zo = k.zoneout
        if (w_zo, e_zo) != circuit.IDENTITY:  # conn(2, P_z, -1) is P_z exactly: no nodes without zoneout
            update = self.conn(b, w_zo, update, e_zo)
        c_new = b.op("Add", c, update)
        # fired = relu(c' - thr) - relu(c' - thr - 1) is exactly [c' > thr] on integers, and shift(0) = 0:
        # the products by it are Where.
        fired = b.op("Greater", c_new, outer["thr"])
        new_y = b.op("Where", fired, self.shift(b, c_new, p.event_frac - p.state_frac), b.const(0, np.int64))
        new_states = [b.op("Where", fired, b.op("Sub", c_new, outer["reset"]), c_new), new_y]
        if layer.use_trace:
            new_states.append(b.op("Add", self.conn(b, circuit.TRACE_DECAY_WEIGHT, states[2], circuit.TRACE_EXP),
                                   self.conn(b, circuit.TRACE_GAIN_WEIGHT, new_y, circuit.TRACE_EXP)))
        return new_states

    def readout(self, b: _Builder, layer: Linear, key: str, x: str) -> str:
        q = layer.quant
        out = b.op("Add", self.shift(b, self.weight_sums(b, key, x), q.output.frac - q.input.frac - q.weight.frac),
                   self.int64(b, f"{key}.bias"))
        return self.relu(b, out) if layer.relu else out


# --------------------------------------------------------------------------- export

def _egru(main: _Builder, arith, layer: EGRU, key: str, x: str, batch: str) -> str:
    """One Scan over time; returns the (batch, time, H) events or trace."""
    h = layer.hidden
    gx = arith.gates_input(main, layer, key, x)
    outer = arith.outer_values(main, layer, key)
    elem = _tensor_type(arith.dtype)
    zeros = main.op("ConstantOfShape", main.op("Concat", batch, main.const([h], np.int64), axis=0),
                    value=helper.make_tensor("zero", elem, [1], [0]))
    step = _Builder(f"{key}.step", main.initializers)
    state_names = ("c", "y", "trace")[:3 if layer.use_trace else 2]
    states = [f"{key}.step/{name}" for name in state_names]
    gx_t = f"{key}.step/gates_input"
    new_states = arith.step(step, layer, outer, states, gx_t)
    scan_out = step.op("Identity", new_states[-1] if layer.use_trace else new_states[1])
    body = helper.make_graph(
        step.nodes, f"{key}.step",
        inputs=[helper.make_tensor_value_info(s, elem, [BATCH, h]) for s in states]
        + [helper.make_tensor_value_info(gx_t, elem, [BATCH, 3 * h])],
        outputs=[helper.make_tensor_value_info(s, elem, [BATCH, h]) for s in [*new_states, scan_out]])
    outs = main.op("Scan", *[zeros] * len(states), gx, outputs=len(states) + 1, body=body,
                   num_scan_inputs=1, scan_input_axes=[1], scan_output_axes=[1])
    return outs[-1]


def _output(main: _Builder, seq: str, mode: str) -> str:
    if mode == "last":
        return main.op("Gather", seq, main.const(-1, np.int64), axis=1, out=OUTPUT)
    if mode == "mean":  # as reference.apply_output_mode: float64 mean of the float32 sequence
        total = main.op("ReduceSum", main.op("Cast", seq, to=TensorProto.DOUBLE), main.const([1], np.int64),
                        keepdims=0)
        steps = main.op("Cast", main.op("Shape", seq, start=1, end=2), to=TensorProto.DOUBLE)
        return main.op("Cast", main.op("Div", total, steps), to=TensorProto.FLOAT, out=OUTPUT)
    return main.op("Identity", seq, out=OUTPUT)


def to_onnx(graph: Graph) -> onnx.ModelProto:
    """The ONNX model of a float or quantized IR graph."""
    doc, arrays = ir.to_json_and_arrays(graph)
    initializers = {key: numpy_helper.from_array(np.ascontiguousarray(a), key) for key, a in arrays.items()}
    if graph.quantized:
        profile = get_profile(graph.profile)
        arith = (_CircuitArithmetic if profile.circuit else _IntArithmetic)(profile)
    else:
        arith = _FloatArithmetic()
    main = _Builder("main", initializers)
    if graph.input.tokens:
        graph_input = helper.make_tensor_value_info(TOKENS, TensorProto.INT64, [BATCH, TIME])
    else:
        graph_input = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [BATCH, TIME, *graph.input.shape])
    x = arith.source(main, graph, graph_input.name)
    batch = main.op("Shape", graph_input.name, start=0, end=1)
    shapes = graph.shapes()
    if graph.input.frame is not None:  # every step's frame at once: (batch * time, ...)
        x = arith.frames(main, x, graph.input.frame)
    for i, layer in enumerate(graph.layers):
        key = f"layers.{i}"
        if len(shapes[i]) == 3 and not isinstance(layer, FRAME_LAYERS):  # back to (batch, time, C*H*W)
            x = main.op("Reshape", arith.flatten(main, x),
                        main.op("Concat", batch, main.const([-1, int(np.prod(shapes[i]))], np.int64), axis=0))
        if isinstance(layer, Conv2d):
            x = arith.conv(main, layer, key, x, shapes[i:i + 2])
        elif isinstance(layer, Pool2d):
            x = arith.pool(main, layer, x, shapes[i:i + 2])
        elif isinstance(layer, Embedding):
            x = arith.embedding(main, f"{key}.weight", x)
        elif isinstance(layer, EGRU):
            x = _egru(main, arith, layer, key, x, batch)
        else:  # the front-end runs on the host; a readout on the chip
            x = (arith.linear if i < len(graph.frontend) else arith.readout)(main, layer, key, x)
    out = _output(main, arith.to_float(main, graph, x), graph.output_mode)
    out_shape = [BATCH, TIME, graph.out_size] if graph.output_mode == "sequence" else [BATCH, graph.out_size]
    onnx_graph = helper.make_graph(
        main.nodes, "egru", inputs=[graph_input],
        outputs=[helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        initializer=list(initializers.values()))
    arithmetic = f"integer profile {graph.profile}" if graph.quantized else "float32"
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="egru-deploy", producer_version=__version__,
        doc_string=f"EGRU network exported by egru-deploy ({arithmetic}, output mode {graph.output_mode})")
    helper.set_model_props(model, {META_FORMAT: FORMAT, META_VERSION: str(FORMAT_VERSION),
                                   META_GRAPH: json.dumps(doc, default=str)})
    return model


def export(graph: Graph, path: str | os.PathLike) -> None:
    onnx.save(to_onnx(graph), str(path))


# --------------------------------------------------------------------------- import

def load(path: str | os.PathLike) -> Graph:
    """Import an ONNX file written by :func:`export` (float or quantized)."""
    source = safe_io.regular_file(path, ConversionError)
    size = source.stat().st_size
    if size > safe_io.MAX_BYTES:
        raise ConversionError(f"{path}: {size:,} bytes, beyond the {safe_io.MAX_BYTES:,} egru-deploy reads")
    # Parsed from bytes, not onnx.load: that would guess a text format from the suffix and read the
    # external data files this one names.
    try:
        model = onnx.ModelProto.FromString(source.read_bytes())
    except Exception as e:  # noqa: BLE001 - protobuf reports undecodable bytes in several ways
        raise ConversionError(f"{path}: not a readable ONNX model ({type(e).__name__}: {safe_io.first_line(e)})") \
            from None
    _check_tensors(model, str(path))
    props = {p.key: p.value for p in model.metadata_props}
    if props.get(META_FORMAT) != FORMAT:
        raise ConversionError(f"{path}: not an EGRU exported by egru-deploy (metadata_props {META_FORMAT!r} is "
                              f"{props.get(META_FORMAT)!r}, expected {FORMAT!r})")
    if not props.get(META_VERSION, "").isdigit() or int(props[META_VERSION]) > FORMAT_VERSION:
        raise ConversionError(f"{path}: metadata_props {META_VERSION!r} is {props.get(META_VERSION)!r}; this "
                              f"egru-deploy reads versions up to {FORMAT_VERSION}")
    doc = safe_io.loads_json(props.get(META_GRAPH, ""), f"{path}: metadata_props {META_GRAPH!r}", ConversionError)
    try:
        arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.startswith("layers.")}
        graph = ir.from_json_and_arrays(doc, arrays, where=f"metadata_props {META_GRAPH!r}")
        _expect_same_graph(to_onnx(graph).graph, model.graph)
    except (ir.IRError, ConversionError) as e:
        raise ConversionError(f"{path}: {e}") from None
    except (ValueError, TypeError) as e:  # a tensor whose data does not fit its dims or type
        raise ConversionError(f"{path}: unreadable tensor ({e})") from None
    return graph


# Every type egru-deploy writes, and the other plain numeric ones (no strings, no exotic packings).
NUMERIC_TENSOR_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BOOL,
                        TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
                        TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}


def _check_tensors(model: onnx.ModelProto, path: str) -> None:
    """Before any tensor is converted: all data inside the file, numeric, of a sane declared size."""
    budget = safe_io.SizeBudget(ConversionError)
    for where, tensor in _all_tensors(model):
        where = f"{path}: {where}"
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            location = {e.key: e.value for e in tensor.external_data}.get("location")
            raise ConversionError(f"{where}: data stored outside the model file (external data {location!r}); "
                                  f"egru-deploy reads self-contained ONNX files only")
        if tensor.data_type not in NUMERIC_TENSOR_TYPES:
            kind = TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in TensorProto.DataType.values() \
                else tensor.data_type
            raise ConversionError(f"{where}: data type {kind} not supported (expected a numeric tensor)")
        budget.take(where, tensor.dims, helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize)


def _all_tensors(model: onnx.ModelProto):
    """``(where, TensorProto)`` for every tensor of the model: initializers, attributes, subgraphs, functions."""
    yield from _graph_tensors(model.graph, "graph")
    for function in model.functions:
        yield from _node_tensors(function.node, f"function {function.name!r}")


def _graph_tensors(graph: onnx.GraphProto, where: str):
    for tensor in graph.initializer:
        yield f"{where} initializer {tensor.name!r}", tensor
    for sparse in graph.sparse_initializer:
        yield f"{where} sparse initializer {sparse.values.name!r}", sparse.values
        yield f"{where} sparse initializer {sparse.values.name!r} indices", sparse.indices
    yield from _node_tensors(graph.node, where)


def _node_tensors(nodes, where: str):
    for node in nodes:
        for attr in node.attribute:
            at = f"{where} node {node.name!r} attribute {attr.name!r}"
            sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
            tensors = ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for tensor in tensors + [s.values for s in sparse] + [s.indices for s in sparse]:
                yield at, tensor
            for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graph_tensors(graph, f"{at} graph {graph.name!r}")


def _expect_same_graph(expected: onnx.GraphProto, actual: onnx.GraphProto) -> None:
    """Raise naming the first node, value or constant of ``actual`` that differs from ``expected``."""
    where = f"graph {actual.name!r}"
    for kind in ("input", "output"):
        want = [helper.printable_value_info(v) for v in getattr(expected, kind)]
        got = [helper.printable_value_info(v) for v in getattr(actual, kind)]
        if want != got:
            raise ConversionError(f"{where}: expected {kind}s {want}, got {got}")
    want_init = {t.name: t for t in expected.initializer}
    got_init = {t.name: t for t in actual.initializer}
    missing = sorted(set(want_init) - set(got_init)) or sorted(set(got_init) - set(want_init))
    if missing:
        state = "missing" if missing[0] in want_init else "unexpected"
        raise ConversionError(f"{where}: initializer {missing[0]!r} {state}")
    for name, tensor in want_init.items():
        a, b = numpy_helper.to_array(tensor), numpy_helper.to_array(got_init[name])
        if a.dtype != b.dtype or not np.array_equal(a, b):
            raise ConversionError(f"{where}: constant {name!r} differs from what egru-deploy writes")
    for k, want_node in enumerate(expected.node):
        if k >= len(actual.node):
            raise ConversionError(f"{where}: node {want_node.name!r} ({want_node.op_type}) missing")
        _expect_same_node(want_node, actual.node[k])
    if len(actual.node) > len(expected.node):
        extra = actual.node[len(expected.node)]
        raise ConversionError(f"node {extra.name!r} ({_text(extra.op_type)}): unexpected in an egru-deploy EGRU "
                              f"graph")


def _expect_same_node(want: onnx.NodeProto, got: onnx.NodeProto) -> None:
    signature = (want.op_type, list(want.input), list(want.output), want.domain)
    if (got.op_type, list(got.input), list(got.output), got.domain) != signature:
        raise ConversionError(f"node {got.name!r}: expected {_signature(want)}, got {_signature(got)}")
    want_attrs = {a.name: a for a in want.attribute}
    got_attrs = {a.name: a for a in got.attribute}
    if set(want_attrs) != set(got_attrs):
        raise ConversionError(f"node {got.name!r} ({_text(got.op_type)}): expected attributes "
                              f"{sorted(want_attrs)}, got {sorted(got_attrs)}")
    for name, attr in want_attrs.items():
        if attr.type == onnx.AttributeProto.GRAPH:
            _expect_same_graph(attr.g, got_attrs[name].g)
        elif attr.SerializeToString() != got_attrs[name].SerializeToString():
            raise ConversionError(f"node {got.name!r} ({_text(got.op_type)}): attribute {name!r} differs from what "
                                  f"egru-deploy writes")


def _text(text: str | bytes) -> str:
    """Text from the file, fit for a one-line message: escaped unless plainly printable (protobuf hands
    strings that are not UTF-8 over as bytes)."""
    return text if isinstance(text, str) and text.isprintable() else repr(text)


def _signature(node: onnx.NodeProto) -> str:
    return f"{_text(node.op_type)}({', '.join(map(_text, node.input))}) -> {', '.join(map(_text, node.output))}"
