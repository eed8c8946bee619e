"""Post-training quantization: float graph + profile + calibration data -> integer graph.

Scales are powers of two (the chips rescale with shifts).  Per matrix, the weight scale is the
finest that holds the largest magnitude in the profile's mantissa; calibration data then sets the
input and readout formats from the observed ranges, and any matrix whose exact sums would saturate
the profile's accumulator on the calibration set is given one bit less precision until none does.
Both measurements run the reference interpreters, so they see the model as it runs: each layer's
zoneout blend and whichever of events or trace feeds the next layer or the readout.  The layers keep
``zoneout`` (the profile turns it into its Q.F gain) and ``use_trace``.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from egru_deploy import circuit, reference
from egru_deploy.errors import QuantizationError, UserError
from egru_deploy.ir import EGRU, Conv2d, Embedding, EGRUQuant, Graph, Linear, LinearQuant, Pool2d, QType
from egru_deploy.profiles import Profile

MAX_REFINEMENTS = 8  # bits of precision a matrix may give up to avoid accumulator saturation
FLOAT64_EXACT = 2.0 ** 53  # reference.int_matmul sums in float64


def weight_frac(w: np.ndarray, profile: Profile) -> int:
    """Finest power-of-two scale whose mantissa holds max|w| (a zero matrix gets 0)."""
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    if peak == 0.0:
        return 0
    return math.floor(math.log2(profile.weight_max / peak))


def quantize_weights(w: np.ndarray, frac: int, profile: Profile) -> np.ndarray:
    scaled = w.astype(np.float64) * 2.0 ** frac
    if profile.weight_even:  # Lava's 8-bit mixed-sign Dense applies even mantissas only
        q = 2 * np.round(scaled / 2)
    else:
        q = np.round(scaled)
    return np.clip(q, -profile.weight_max - (0 if profile.weight_even else 1), profile.weight_max).astype(np.int8)


def _fixed(values: np.ndarray, q: QType, what: str) -> np.ndarray:
    """Round to format ``q``; a value outside its range means the profile cannot represent the model."""
    scaled = np.round(values.astype(np.float64) * 2.0 ** q.frac)
    if scaled.size and (scaled.min() < q.min or scaled.max() > q.max):
        peak = float(np.max(np.abs(values)))
        raise QuantizationError(f"{what}: |value| up to {peak:.4g} does not fit {q.bits}-bit format with "
                                f"{q.frac} fractional bits (max {q.max * q.scale:.4g})")
    return scaled.astype(np.int64)


def range_frac(peak: float, bits: int, cap: int) -> int:
    """Finest fraction (<= cap) whose ``bits``-bit range holds ``peak`` with one bit of headroom."""
    if peak <= 0.0:
        return cap
    return min(cap, math.floor(math.log2(((1 << (bits - 1)) - 1) / (2.0 * peak))))


def check_calibration(graph: Graph, x) -> np.ndarray:
    if x is None:
        raise QuantizationError("calibration: no data given (pass --calibration FILE.npz with an 'x' array)")
    x = np.asarray(x)
    if x.size == 0 or (x.ndim >= 1 and x.shape[0] == 0):
        raise QuantizationError("calibration: the calibration set is empty")
    try:
        return reference.check_input(graph, x, name="calibration")
    except UserError as e:
        raise QuantizationError(str(e)) from None


def _quantize_layers(graph: Graph, profile: Profile, x: np.ndarray, linear_peaks: dict[int, float],
                     frac_drop: dict[tuple[int, str], int]) -> Graph:
    f, e = profile.state_frac, profile.event_frac
    state_q = QType(profile.state_bits, f)
    event_q = QType(profile.event_bits, e)
    layers = []
    in_q = None
    for i, layer in enumerate(graph.layers):
        where = f"layer {i} ({type(layer).__name__})"
        if isinstance(layer, Embedding):
            in_q = QType(profile.event_bits, range_frac(float(np.abs(layer.weight).max()), profile.event_bits, e))
            layers.append(replace(layer, weight=_fixed(layer.weight, in_q, f"{where}.weight"), qweight=in_q))
            continue
        if in_q is None:  # float features or frames from the host
            in_q = QType(profile.event_bits, range_frac(float(np.abs(x).max()), profile.event_bits, e))
        if isinstance(layer, Pool2d):  # max and average pooling keep their input's format
            layers.append(layer)
            continue
        if isinstance(layer, EGRU):
            fk = weight_frac(layer.kernel, profile) - frac_drop.get((i, "kernel"), 0)
            fr = weight_frac(layer.recurrent_kernel, profile) - frac_drop.get((i, "recurrent_kernel"), 0)
            quant = EGRUQuant(kernel=QType(profile.weight_bits, fk), recurrent_kernel=QType(profile.weight_bits, fr),
                              bias=state_q, recurrent_bias=state_q, thr=state_q, input=in_q)
            layers.append(replace(
                layer, quant=quant,
                kernel=quantize_weights(layer.kernel, fk, profile),
                recurrent_kernel=quantize_weights(layer.recurrent_kernel, fr, profile),
                bias=_fixed(layer.bias, state_q, f"{where}.bias"),
                recurrent_bias=_fixed(layer.recurrent_bias, state_q, f"{where}.recurrent_bias"),
                thr=_threshold(profile, _fixed(layer.thr, state_q, f"{where}.thr"))))
            _check_exact_sums(layers[-1], in_q, event_q, where)
            in_q = event_q
        elif isinstance(layer, (Linear, Conv2d)):  # a convolution is a Linear over every window
            fw = weight_frac(layer.weight, profile) - frac_drop.get((i, "weight"), 0)
            out_q = QType(profile.event_bits, range_frac(linear_peaks[i], profile.event_bits, f))
            quant = LinearQuant(weight=QType(profile.weight_bits, fw), bias=out_q, input=in_q, output=out_q)
            layers.append(replace(layer, quant=quant, weight=quantize_weights(layer.weight, fw, profile),
                                  bias=_fixed(layer.bias, out_q, f"{where}.bias")))
            _check_exact_sums(layers[-1], in_q, None, where)
            in_q = out_q
    return graph.with_layers(layers, profile=profile.name)


def _threshold(profile: Profile, thr: np.ndarray) -> np.ndarray:
    """The stock circuit holds thresholds in an 8-bit reset weight (``circuit.on_threshold_grid``)."""
    return circuit.on_threshold_grid(thr) if profile.circuit else thr


def _linear_peaks(graph: Graph, x: np.ndarray) -> dict[int, float]:
    """max |output| of each Linear and Conv2d layer on the calibration set (to size their output formats)."""
    peaks = {}

    def observe(i, values):
        if isinstance(graph.layers[i], (Linear, Conv2d)):
            peaks[i] = float(np.abs(values).max())

    reference.run_float(graph, x, observe=observe)
    return peaks


def _check_exact_sums(layer, in_q: QType, rec_q: QType | None, where: str) -> None:
    """Integer sums are formed in float64 by the reference: refuse sizes where that could be inexact."""
    mats = [(layer.kernel if isinstance(layer, EGRU) else
             reference.conv_matrix(layer) if isinstance(layer, Conv2d) else layer.weight.T, in_q)]
    if rec_q is not None:
        mats.append((layer.recurrent_kernel, rec_q))
    for w, q in mats:
        bound = float(np.abs(w.astype(np.int64)).sum(axis=0).max()) * max(abs(q.min), q.max)
        if bound >= FLOAT64_EXACT:
            raise QuantizationError(f"{where}: fan-in too large for exact integer sums ({bound:.3g} >= 2^53)")


def quantize(graph: Graph, profile: Profile, calibration_x) -> Graph:
    """Quantize a float graph for ``profile`` using calibration inputs ``calibration_x``."""
    if graph.quantized:
        raise QuantizationError(f"model is already quantized for profile {graph.profile!r}")
    x = check_calibration(graph, calibration_x)
    linear_peaks = _linear_peaks(graph, x)  # float ranges: the same for every refinement
    frac_drop: dict[tuple[int, str], int] = {}
    for _ in range(MAX_REFINEMENTS + 1):
        qgraph = _quantize_layers(graph, profile, x, linear_peaks, frac_drop)
        saturating = _accumulator_saturations(qgraph, profile, x)
        if not saturating:
            return qgraph
        for key in saturating:
            frac_drop[key] = frac_drop.get(key, 0) + 1
    return qgraph  # still saturating after MAX_REFINEMENTS: the report shows the counts


def _accumulator_saturations(qgraph: Graph, profile: Profile, x: np.ndarray) -> list[tuple[int, str]]:
    """Matrices whose sums saturate the accumulator on the calibration data."""
    sat = reference.run_int(qgraph, x).saturations
    keys = []
    for i, layer in enumerate(qgraph.layers):
        if sat.get(f"layer{i}.accumulator", 0):
            keys += [(i, "kernel"), (i, "recurrent_kernel")] if isinstance(layer, EGRU) else [(i, "weight")]
    return keys
