"""Write the quantization-aware fine-tuned digits examples that the tests and benchmarks read.

For each profile, from examples/digits_egru.pt:
  examples/digits_egru_qat_<profile>.pt          QAT (``egru_deploy.qat.finetune``);
  examples/digits_egru_qat_prune90_<profile>.pt  QAT with gradual magnitude pruning per matrix to 90 %
                                                 (cubic schedule over the first half of the epochs),
                                                 then the masks fixed.
Deterministic: seeded, one torch thread. Prints the measured test accuracies as JSON.

    python scripts/make_qat_examples.py [EXAMPLES_DIR]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from egru_deploy.profiles import PROFILES
from egru_deploy.qat import finetune

# name suffix -> finetune options. QAT of the dense model only has to absorb rounding: a few epochs
# at a small learning rate. The pruned model has to re-learn with a tenth of its weights; pruning it
# gradually while it trains (Zhu & Gupta 2017) beat pruning once before fine-tuning on a validation
# split carved from the training split. Seed 0 (the default) is shipped, whatever its test accuracy.
RECIPES = {
    "qat": {"prune": 0.0, "epochs": 5, "learning_rate": 3e-4},
    "qat_prune90": {"prune": 0.9, "epochs": 120, "prune_epochs": 60, "learning_rate": 1e-2, "activity_weight": 0.5},
}


def main(directory: str = "examples") -> dict:
    directory = Path(directory)
    results = {}
    for profile in PROFILES:
        for suffix, options in RECIPES.items():
            out = directory / f"digits_egru_{suffix}_{profile}.pt"
            result = finetune(directory / "digits_egru.pt", profile, output_path=out, **options)
            results[out.name] = {kind: result[kind]["accuracy"] for kind in ("float", "ptq", "qat")} | {
                "finetune_seconds": result["finetune_seconds"], "config": result["config"], "prune": result["prune"]}
            print(out.name, json.dumps(results[out.name]), flush=True)
    return results


if __name__ == "__main__":
    main(*sys.argv[1:2])
