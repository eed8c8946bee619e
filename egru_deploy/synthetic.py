"""Random but trained-like float graphs, for scale checks where only sizes and activity matter.

A trained EGRU is sparse in time: 10-30 % of its units emit an event at a step (the EGRU paper's
activity figures).  A random EGRU with the default initialisation is not (wide layers barely spike),
so these graphs use weights of variance 1/fan-in and thresholds that can be fitted to a target
activity on sample inputs (:func:`fit_thresholds`).

:func:`random_graph` builds any chain ``[Embedding] -> EGRU+ -> [Linear]``
(``egru_deploy.targets.spinnaker2.language_model`` uses it); :data:`PAPER_WORKLOADS` are the sizes of the
EGRU paper's models (Subramoney et al., ICLR 2023; EvNN's ``benchmarks/``), with task-like random inputs,
for ``benchmarks/bench_scale.py`` and ``tests/test_scale.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from egru_deploy import reference
from egru_deploy.ir import EGRU, Embedding, Graph, Input, Linear


@dataclass(frozen=True)
class NetworkShape:
    """Sizes of a chain ``[Embedding] -> EGRU layers -> [readout]``.

    ``inputs``: features per step, or the vocabulary of a token model (``embedding`` set: its width;
    the embedding is a host look-up). ``outputs``: readout width, None for no readout; ``tied``: the
    readout weight is the embedding matrix (EvNN's LM without projection: last hidden == embedding).
    ``use_trace``: per EGRU layer (or one bool for all), whether its trace instead of its events feeds
    the next layer or the readout.
    """

    inputs: int
    hidden: tuple[int, ...]
    outputs: int | None = None
    embedding: int | None = None
    tied: bool = False
    use_trace: bool | tuple[bool, ...] = False
    output_mode: str = "sequence"

    def traces(self) -> tuple[bool, ...]:
        if isinstance(self.use_trace, bool):
            return (self.use_trace,) * len(self.hidden)
        if len(self.use_trace) != len(self.hidden):
            raise ValueError(f"use_trace: expected one entry per EGRU layer ({len(self.hidden)})")
        return tuple(bool(t) for t in self.use_trace)

    def parameters(self) -> int:
        sizes = [self.embedding or self.inputs, *self.hidden]
        n = sum((i + h + 2) * 3 * h + h for i, h in zip(sizes[:-1], sizes[1:]))
        if self.embedding:
            n += self.inputs * self.embedding
        if self.outputs:
            n += (0 if self.tied else self.outputs * sizes[-1]) + self.outputs
        return n


def random_graph(shape: NetworkShape, seed: int = 0, thr_mean: float = 0.1, thr_std: float = 0.02) -> Graph:
    """Float graph: unit-variance embeddings, weights uniform with variance 1/fan-in, zero biases,
    thresholds ~ N(thr_mean, thr_std) clipped to [0, 1].

    Draws in a fixed order (embedding, then per layer kernel, recurrent kernel, thresholds, then the
    readout), so a shape and seed always give the same graph.
    """
    if shape.tied and (not shape.embedding or shape.hidden[-1] != shape.embedding or shape.outputs != shape.inputs):
        raise ValueError("tied readout: needs an embedding, last hidden == embedding and outputs == vocabulary")
    rng = np.random.default_rng(seed)

    def uniform(fan_in: int, *dims: int) -> np.ndarray:
        bound = np.sqrt(3.0 / fan_in)
        return rng.uniform(-bound, bound, dims).astype(np.float32)

    layers: list = []
    size = shape.inputs
    if shape.embedding:
        layers.append(Embedding(rng.normal(0, 1.0, (shape.inputs, shape.embedding)).astype(np.float32)))
        size = shape.embedding
    for h, trace in zip(shape.hidden, shape.traces()):
        layers.append(EGRU(kernel=uniform(size, size, 3 * h), recurrent_kernel=uniform(h, h, 3 * h),
                           bias=np.zeros(3 * h, np.float32), recurrent_bias=np.zeros(3 * h, np.float32),
                           thr=np.clip(rng.normal(thr_mean, thr_std, h), 0, 1).astype(np.float32),
                           use_trace=trace))
        size = h
    if shape.outputs:
        weight = layers[0].weight.copy() if shape.tied else uniform(size, shape.outputs, size)
        layers.append(Linear(weight, np.zeros(shape.outputs, np.float32)))
    return Graph(Input(shape.inputs, tokens=bool(shape.embedding)), tuple(layers), shape.output_mode)


def fit_thresholds(graph: Graph, x: np.ndarray, activity: float = 0.2, iterations: int = 12) -> Graph:
    """Scale each EGRU layer's thresholds (one factor per layer, first layer first) so that a fraction
    ``activity`` of its units emits an event per step on ``x``, as far as thresholds in [0, 1] allow.

    Bisection on log(factor); each layer is fitted on the events of the already-fitted layers below.
    Returns the graph with the new thresholds (weights unchanged).
    """
    values = reference.frontend_float(graph, x)
    layers = list(graph.layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, EGRU):
            continue
        base = np.maximum(layer.thr, 1e-3)

        def rate(log_factor: float) -> float:
            trial = replace(layer, thr=np.clip(base * np.exp(log_factor), 1e-4, 1).astype(np.float32))
            _, _, counts = reference.egru_layer_float(trial, values)
            return float(counts.mean()) / layer.hidden

        low, high = np.log(1e-4 / base.max()), np.log(1.0 / base.min())
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if rate(mid) > activity else (low, mid)  # higher thresholds, fewer events
        layers[i] = replace(layer, thr=np.clip(base * np.exp(0.5 * (low + high)), 1e-4, 1).astype(np.float32))
        y, trace, _ = reference.egru_layer_float(layers[i], values)
        values = trace if layers[i].use_trace else y
    return graph.with_layers(layers)


def activity(graph: Graph, x: np.ndarray) -> list[float]:
    """Per EGRU layer, the fraction of units emitting an event per step on ``x`` (float run)."""
    return [1.0 - s for s in reference.run_float(graph, x).layer_sparsity()]


# --------------------------------------------------------------------------- the paper's workloads

INPUT_KINDS = ("pixels", "events", "tokens")


@dataclass(frozen=True)
class Workload:
    """A model size, the kind of input it reads, a task sequence length and the pruning per target.

    ``inputs``: "pixels" (sMNIST: one pixel in [0, 1] per step, ~19 % non-zero as MNIST's), "events"
    (DVS frames: event counts scaled to [0, 1], ~10 % of the features non-zero per step) or "tokens"
    (word ids drawn from a Zipf law over the vocabulary, as word frequencies are).
    """

    name: str
    shape: NetworkShape
    inputs: str
    steps: int
    prune: dict = field(default_factory=dict)  # target -> fraction of weights pruned before quantization
    source: str = ""

    def __post_init__(self):
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"inputs: expected one of {INPUT_KINDS}, got {self.inputs!r}")

    def prune_for(self, target: str) -> float:
        return float(self.prune.get(target, 0.0))

    def scaled(self, factor: int, steps: int | None = None) -> "Workload":
        """The same workload with every width (hidden, embedding, vocabulary, input features) divided by
        ``factor``; the readout of a classifier keeps its classes."""
        def down(n: int) -> int:
            return max(4, math.ceil(n / factor))

        s = self.shape
        vocab = down(s.inputs) if s.embedding else None
        shape = replace(s, inputs=vocab or (s.inputs if s.inputs == 1 else down(s.inputs)),
                        hidden=tuple(down(h) for h in s.hidden), embedding=down(s.embedding) if s.embedding else None,
                        outputs=vocab if s.embedding else s.outputs)
        return replace(self, name=f"{self.name}/{factor}", shape=shape, steps=steps or self.steps)

    def sample(self, batch: int, steps: int | None = None, seed: int = 0) -> np.ndarray:
        """Task-like random inputs (B, T, I) float32, or (B, T) token ids."""
        rng = np.random.default_rng(seed)
        t = steps or self.steps
        if self.inputs == "tokens":
            p = 1.0 / np.arange(1, self.shape.inputs + 1)
            return rng.choice(self.shape.inputs, size=(batch, t), p=p / p.sum())
        density = 0.19 if self.inputs == "pixels" else 0.10
        values = rng.random((batch, t, self.shape.inputs), dtype=np.float32)
        keep = rng.random((batch, t, self.shape.inputs)) < density
        return np.where(keep, np.float32(1) - values, np.float32(0)).astype(np.float32)  # non-zero in (0, 1]

    def graph(self, target: str | None = None, seed: int = 0, activity: float = 0.2, fit_batch: int = 2,
              fit_steps: int | None = None, iterations: int = 10) -> Graph:
        """The float graph to compile for ``target``: :func:`random_graph` with thresholds fitted
        (:func:`fit_thresholds`) to ``activity`` on :meth:`sample` inputs, *after* the target's pruning,
        so that the graph ``compile`` prunes runs at that activity. Weights are not pruned here."""
        from egru_deploy.prune import prune

        base = random_graph(self.shape, seed)
        amount = self.prune_for(target) if target else 0.0
        x = self.sample(fit_batch, fit_steps, seed + 1000)
        fitted = fit_thresholds(prune(base, amount) if amount else base, x, activity, iterations)
        return base.with_layers([replace(layer, thr=fit.thr) if isinstance(layer, EGRU) else layer
                                 for layer, fit in zip(base.layers, fitted.layers)])


_LM_PRUNE = {"spinnaker2": 0.9}  # as benchmarks/bench_spinnaker2.py (Nazeer et al. prune the LM on SpiNNaker2)

PAPER_WORKLOADS = (
    Workload("smnist", NetworkShape(1, (590,), 10, use_trace=True, output_mode="last"), "pixels", 784,
             source="EvNN benchmarks/README.md: smnist.py --units 590 --use-output-trace (1 layer, 784 pixels, "
                    "readout on the last step's trace)"),
    Workload("dvs", NetworkShape(2048, (1024,), 11, use_trace=True, output_mode="mean"), "events", 68,
             source="DVS gesture without CNN: 2 x 32 x 32 frames flattened (2,048 inputs), 1 layer of 1,024, "
                    "trace into fc, mean over steps (--use-all-timesteps); 68 steps = 1.7 s of 25 ms frames"),
    Workload("ptb-1350", NetworkShape(10_000, (1350, 1350, 788), 10_000, embedding=788, tied=True), "tokens", 70,
             _LM_PRUNE, "EvNN benchmarks/lm/README.md (pre-0.2): --layers 3 --hidden_dim 1350 --emb_dim 788, no "
                        "--projection: the last layer has emb_dim units and the decoder is tied; bptt 70"),
    Workload("ptb-2000", NetworkShape(10_000, (2000, 2000, 786), 10_000, embedding=786, tied=True), "tokens", 70,
             _LM_PRUNE, "EvNN benchmarks/lm/README.md (pre-0.2): --layers 3 --hidden_dim 2000 --emb_dim 786, no "
                        "--projection (last layer 786, tied decoder)"),
    Workload("ptb-3x1350", NetworkShape(10_000, (1350, 1350, 1350), 10_000, embedding=400), "tokens", 70,
             _LM_PRUNE, "targets/spinnaker2/language_model.PTB (benchmarks/bench_spinnaker2.py): 3 full layers of "
                        "1,350, embedding 400, untied decoder 1,350 -> 10,000"),
)
WORKLOADS = {w.name: w for w in PAPER_WORKLOADS}
