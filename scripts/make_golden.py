"""Regenerate tests/golden/egru_cases.npz from the independent NumPy spec (tests/spec_numpy.py).

Golden files are never edited by hand: change this script and run it
(``.venv/bin/python scripts/make_golden.py``).  Each case stores its EvNN-layout weights as
``<case>/<key>``, plus ``<case>/x``, ``<case>/use_trace``, the expected sequence output
``<case>/output`` (B, T, O) and per-layer event counts ``<case>/events.<i>`` (B, T).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import spec_numpy  # noqa: E402  (lives in tests/, shared with the test suite)

GOLDEN = ROOT / "tests" / "golden" / "egru_cases.npz"
BATCH, STEPS = 2, 12

# name: (random_net arguments, use_trace, tie the decoder to the embedding)
CASES = {
    "one_layer": (dict(input_size=3, hidden=[5]), False, False),
    "two_layers_fc": (dict(input_size=4, hidden=[6, 5], output=3), False, False),
    "three_layers_trace_fc": (dict(input_size=3, hidden=[5, 4, 6], output=2), True, False),
    "two_layers_trace": (dict(input_size=4, hidden=[4, 5]), True, False),
    "lm_projection_tied": (dict(input_size=4, hidden=[5, 6], output=7, vocab=7, projection=4), False, True),
}


def make_case(rng, net_args: dict, use_trace: bool, tied: bool):
    def draw():
        net = spec_numpy.random_net(rng, **net_args)
        if tied:
            net["decoder.decoder.weight"] = net["embeddings.weight"]
        return net, spec_numpy.random_input(rng, net, BATCH, STEPS), use_trace

    net, x, _, result = spec_numpy.well_conditioned(draw)
    return net, x, result


def main() -> None:
    rng = np.random.default_rng(20230501)
    arrays = {}
    for name, (net_args, use_trace, tied) in CASES.items():
        net, x, result = make_case(rng, net_args, use_trace, tied)
        arrays.update({f"{name}/{k}": v for k, v in net.items()})
        arrays[f"{name}/x"] = x
        arrays[f"{name}/use_trace"] = np.array(use_trace)
        arrays[f"{name}/output"] = result["output"]
        arrays.update({f"{name}/events.{i}": e for i, e in enumerate(result["events"])})
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {len(CASES)} cases to {GOLDEN.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
