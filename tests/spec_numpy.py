"""The EGRU equations of DESIGN.md in plain NumPy (float64), independent of the package code.

Networks are EvNN-layout dicts of NumPy arrays: ``rnns.<i>.kernel`` ... ``rnns.<i>.thr``, optional
``embeddings.weight``, ``decoder.projection.*`` (with ReLU unless ``projection_relu=False``: EvNN
v0.2.0's decoder has none), ``decoder.decoder.*`` or ``fc.*``. Also EvNN's eval-mode zoneout
(``lib/egru_forward_cpu.cc``: c' = p*c + (1-p)*c' before the threshold), a run from given initial
events y (EvNN's ``state``: c and the trace still start at 0) and the trace into the readout.
"""
from __future__ import annotations

import numpy as np

TRACE_DECAY = 0.9


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def egru_layer(x, kernel, recurrent_kernel, bias, recurrent_bias, thr, zoneout: float = 0.0, y0=None):
    """x (B, T, I) -> events y, traces (B, T, H), and the smallest |c' - thr| met (spike margin).

    ``zoneout`` p: c' is blended with the previous post-reset state, p*c + (1-p)*c', before the
    threshold. ``y0`` (B, H): the events before the first step (they enter only through R).
    """
    batch, steps, _ = x.shape
    hidden = recurrent_kernel.shape[0]
    thr = np.clip(thr, 0.0, 1.0)
    c = np.zeros((batch, hidden))
    y = np.zeros((batch, hidden)) if y0 is None else np.asarray(y0, np.float64).reshape(batch, hidden)
    trace = np.zeros((batch, hidden))
    ys, traces = np.zeros((batch, steps, hidden)), np.zeros((batch, steps, hidden))
    margin = np.inf
    for t in range(steps):
        gx = x[:, t] @ kernel + bias
        gh = y @ recurrent_kernel + recurrent_bias
        z = sigmoid(gx[:, :hidden] + gh[:, :hidden])
        r = sigmoid(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        g = np.tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        c_new = z * c + (1.0 - z) * g
        if zoneout:
            c_new = zoneout * c + (1.0 - zoneout) * c_new
        o = (c_new - thr > 0).astype(np.float64)
        margin = min(margin, float(np.abs(c_new - thr).min()))
        c = c_new - o * thr
        y = o * c_new
        trace = TRACE_DECAY * trace + (1.0 - TRACE_DECAY) * y
        ys[:, t], traces[:, t] = y, trace
    return ys, traces, margin


def layer_count(net: dict) -> int:
    count = 0
    while f"rnns.{count}.kernel" in net:
        count += 1
    return count


def run(net: dict, x, use_trace=False, *, projection_relu: bool = True, zoneout=0.0, initial_events=None) -> dict:
    """Run the network on x: float (B, T, I), or integer tokens (B, T) when it has an embedding.

    ``use_trace``: a bool (every layer but the last feeds its trace to the next layer) or a list,
    one per layer (the last entry: the readout reads the last layer's trace). ``zoneout``: one p
    for every layer or a list. ``initial_events``: None or per layer None or (B, H).

    Returns ``output`` (B, T, O) before any output mode, ``events`` per layer (B, T) counts of
    non-zero y, and ``margin``, the smallest |c' - thr| of any unit at any step (a float32
    implementation can only flip a spike where this is tiny).
    """
    net = {k: np.asarray(v, np.float64) for k, v in net.items()}
    h = net["embeddings.weight"][np.asarray(x)] if "embeddings.weight" in net else np.asarray(x, np.float64)
    events, margin = [], np.inf
    layers = layer_count(net)
    feeds = list(use_trace) if isinstance(use_trace, (list, tuple)) else [bool(use_trace)] * (layers - 1) + [False]
    zoneouts = list(zoneout) if isinstance(zoneout, (list, tuple)) else [zoneout] * layers
    initial = list(initial_events) if initial_events is not None else [None] * layers
    for i in range(layers):
        p = f"rnns.{i}."
        y, trace, layer_margin = egru_layer(h, net[p + "kernel"], net[p + "recurrent_kernel"], net[p + "bias"],
                                            net[p + "recurrent_bias"], net[p + "thr"], zoneouts[i], initial[i])
        events.append((y != 0).sum(axis=2))
        margin = min(margin, layer_margin)
        h = trace if feeds[i] else y
    if "decoder.projection.weight" in net:
        h = h @ net["decoder.projection.weight"].T + net["decoder.projection.bias"]
        if projection_relu:
            h = np.maximum(h, 0.0)
    for readout in ("decoder.decoder.", "fc."):
        if readout + "weight" in net:
            h = h @ net[readout + "weight"].T + net[readout + "bias"]
    return {"output": h, "events": events, "margin": margin}


# --------------------------------------------------------------------------- test networks

def random_net(rng, input_size: int, hidden: list[int], output: int | None = None, vocab: int | None = None,
               projection: int | None = None) -> dict:
    """Random EvNN-layout float32 network, scaled so that units both fire and stay silent.

    With ``vocab`` the input is a ``vocab``-token embedding of dim ``input_size``. The readout is
    ``decoder.decoder`` after ``decoder.projection`` + ReLU when ``projection``, otherwise ``fc``
    (the names ``egru_deploy.model.EGRUNetwork`` uses).
    """
    def uniform(shape, bound):
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    net = {}
    if vocab:
        net["embeddings.weight"] = uniform((vocab, input_size), 1.0)
    sizes = [input_size, *hidden]
    for i, h in enumerate(hidden):
        p = f"rnns.{i}."
        net[p + "kernel"] = uniform((sizes[i], 3 * h), 2.0 / np.sqrt(sizes[i]))
        net[p + "recurrent_kernel"] = uniform((h, 3 * h), 2.0 / np.sqrt(h))
        net[p + "bias"] = uniform((3 * h,), 0.5)
        net[p + "recurrent_bias"] = uniform((3 * h,), 0.5)
        net[p + "thr"] = rng.uniform(0.05, 0.5, h).astype(np.float32)
    last = hidden[-1]
    if projection:
        net["decoder.projection.weight"] = uniform((projection, last), 1.0 / np.sqrt(last))
        net["decoder.projection.bias"] = uniform((projection,), 0.2)
        last = projection
    if output:
        readout = "decoder.decoder." if projection else "fc."
        net[readout + "weight"] = uniform((output, last), 1.0 / np.sqrt(last))
        net[readout + "bias"] = uniform((output,), 0.2)
    return net


def random_input(rng, net: dict, batch: int, steps: int) -> np.ndarray:
    if "embeddings.weight" in net:
        return rng.integers(0, net["embeddings.weight"].shape[0], (batch, steps))
    return rng.normal(0.0, 1.0, (batch, steps, net["rnns.0.kernel"].shape[0])).astype(np.float32)


def well_conditioned(draw, min_margin: float = 2e-5, attempts: int = 200):
    """Call ``draw() -> (net, x, use_trace)`` until every layer both fires and stays silent somewhere
    and no unit comes within ``min_margin`` of its threshold.

    Float32 implementations then cannot flip a spike against this float64 spec, so outputs agree to
    rounding, and the case exercises both sides of the spike. Returns ``(net, x, use_trace, spec_result)``.
    """
    for _ in range(attempts):
        net, x, use_trace = draw()
        result = run(net, x, use_trace)
        hidden = [net[f"rnns.{i}.thr"].shape[0] for i in range(len(result["events"]))]
        active = all(e.any() and (e < h).any() for e, h in zip(result["events"], hidden))
        if active and result["margin"] >= min_margin:
            return net, x, use_trace, result
    raise RuntimeError(f"no well-conditioned case in {attempts} draws")
