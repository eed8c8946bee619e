"""Language-model scale: a PTB-sized EGRU (as in Nazeer et al., arXiv 2312.09084) compiled for SpiNNaker2.

Embedding 10,000 x 400 (a host look-up: the embedding never occupies PEs), three EGRU layers of
1,350 units, decoder to 10,000 tokens; random weights, magnitude-pruned, then quantized with the
project's passes, then mapped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from egru_deploy.ir import Graph
from egru_deploy.profiles import SPINNAKER2
from egru_deploy.prune import prune
from egru_deploy.quantize import quantize
from egru_deploy.synthetic import NetworkShape, random_graph
from egru_deploy.targets.spinnaker2.compile import compile_spinnaker2


@dataclass(frozen=True)
class LanguageModelShape:
    vocab: int = 10_000
    embedding: int = 400
    hidden: tuple[int, ...] = (1350, 1350, 1350)
    tied: bool = False  # decoder weight = embedding (EvNN's LM without projection: last hidden == embedding)

    def network(self) -> NetworkShape:
        return NetworkShape(inputs=self.vocab, hidden=tuple(self.hidden), outputs=self.vocab,
                            embedding=self.embedding, tied=self.tied)


PTB = LanguageModelShape()


def random_language_model(shape: LanguageModelShape = PTB, seed: int = 0) -> Graph:
    """Float graph with unit-variance embeddings, weights of variance 1/fan-in, thresholds around 0.1
    (so that a random model, once pruned, still produces events): ``egru_deploy.synthetic.random_graph``."""
    return random_graph(shape.network(), seed, thr_mean=0.1, thr_std=0.02)


def compile_language_model(out_dir, shape: LanguageModelShape = PTB, prune_amount: float = 0.9,
                           seed: int = 0, calibration_steps: int = 8) -> tuple[Graph, dict]:
    """Prune, quantize (random tokens as calibration) and map into ``out_dir``/spinnaker2.

    Returns the quantized graph and the resource report, which adds the stage timings.
    """
    timings = {}
    started = time.perf_counter()
    graph = prune(random_language_model(shape, seed), prune_amount)
    timings["prune_s"] = time.perf_counter() - started
    tokens = np.random.default_rng(seed + 1).integers(0, shape.vocab, (2, calibration_steps))
    mark = time.perf_counter()
    quantized = quantize(graph, SPINNAKER2, tokens)
    timings["quantize_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    report = compile_spinnaker2(quantized, out_dir, graph)
    timings["map_and_images_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    report["timings"] = timings
    report["model"] = {"vocab": shape.vocab, "embedding": shape.embedding, "hidden": list(shape.hidden),
                       "tied": shape.tied, "prune": prune_amount, "embedding_on": "host"}
    return quantized, report
