"""Fine-tune again every shipped QAT checkpoint of the loihi2 profile (after a change of its arithmetic).

The digits recipes are ``scripts/make_qat_examples.py``'s, the workload recipes ``benchmarks/bench_workloads.py``'s;
seeded and deterministic like them.  Prints each result as JSON.

    python scripts/make_loihi2_qat.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_workloads  # noqa: E402
import make_qat_examples  # noqa: E402

from egru_deploy.qat import finetune  # noqa: E402

PROFILE = "loihi2"


def main() -> None:
    for suffix, options in make_qat_examples.RECIPES.items():
        out = ROOT / "examples" / f"digits_egru_{suffix}_{PROFILE}.pt"
        result = finetune(ROOT / "examples" / "digits_egru.pt", PROFILE, output_path=out, **options)
        print(out.name, json.dumps({k: result[k]["accuracy"] for k in ("float", "ptq", "qat")}), flush=True)
    for task in bench_workloads.QAT_RECIPES:
        kinds = ["qat"] + (["prune_qat"] if task in bench_workloads.PRUNE_RECIPES else [])
        for kind in kinds:
            path, summary = bench_workloads.make_qat(task, PROFILE, kind, retrain=True, made={})
            print(path.name, json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
