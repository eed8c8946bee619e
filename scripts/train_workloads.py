"""Train the paper-scale workloads (EGRU + same-size GRU baseline each) and write checkpoints + metrics.

    python scripts/train_workloads.py                 # every task, EGRU then GRU, one after another
    python scripts/train_workloads.py --task smnist   # one task
    python scripts/train_workloads.py --task smnist --arch egru --epochs 1 --max-batches 5 --dry-run
    python scripts/train_workloads.py --table         # the README table from examples/workloads.json

EGRU checkpoints go to ``examples/<task>_egru.pt`` (EvNN layout: the state_dict of
``egru_deploy.model.EGRUNetwork``); GRU baselines keep only their metrics. Metrics of every finished
run are merged into ``examples/workloads.json`` (key ``<task>/<arch>``) as soon as the run ends.
Seeded and on one torch thread: the same command gives the same files. Needs the data of
``scripts/setup_data.sh``. Recipes: ``egru_deploy.train_tasks.RECIPES``. Run it niced in the
background on a shared machine (``nohup nice -n 19 ... > log 2>&1 &``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from egru_deploy import tasks  # noqa: E402
from egru_deploy.files import atomic_output  # noqa: E402
from egru_deploy.train_tasks import RECIPES, train_task  # noqa: E402

GRU_EPOCHS = {}  # task -> epochs for the GRU baseline, when it differs from the EGRU's
CHECKPOINTS = {"fmnist-rows": "fmnist_rows_egru.pt", "smnist": "smnist_egru.pt", "brown-lm": "brown_lm_egru.pt"}


def merge_metrics(path: Path, key: str, metrics: dict) -> None:
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[key] = metrics
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def markdown_table(results: dict) -> str:
    """The README table: metric, parameters, activity sparsity, effective vs dense MACs per step."""
    rows = ["| task | model | size | test metric | parameters | activity sparsity | MACs/step effective / dense |",
            "|---|---|---|---|---|---|---|"]
    for key in sorted(results, key=lambda k: (list(RECIPES).index(k.split("/")[0]), k.split("/")[1])):
        m = results[key]
        c = m["config"]
        size = f"{c['layers']}x{c['hidden']}" + (f", emb {c['embedding']}" if "embedding" in c else "")
        if "evaluation_error" in m:
            metric = "not evaluated"
        elif m["metric"] == "accuracy":
            metric = f"{m['test_accuracy']:.2%} accuracy"
        else:
            metric = f"{m['test_perplexity']:.1f} perplexity"
        sparsity = f"{m['test_sparsity']:.1%}" if m["arch"] == "egru" and "test_sparsity" in m else "0 (dense)"
        macs = (f"{m['macs_effective']:,.0f} / {m['macs_dense']:,}" if "macs_dense" in m else "-")
        rows.append(f"| {m['task']} | {m['arch'].upper()} | {size} | {metric} | {m['parameters']:,} | {sparsity} "
                    f"| {macs} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=sorted(RECIPES), help="task to run (repeatable)")
    parser.add_argument("--arch", action="append", choices=["egru", "gru"], help="architecture (repeatable)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--max-batches", type=int, help="batches per epoch (timing runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe entry, e.g. --set learning_rate=1e-3 (repeatable)")
    parser.add_argument("--out-dir", default=str(ROOT / "examples"))
    parser.add_argument("--metrics", default=None, help="metrics JSON (default OUT_DIR/workloads.json)")
    parser.add_argument("--dry-run", action="store_true", help="write nothing (timing runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true",
                        help="print the metrics JSON as a markdown table, train nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out_dir = Path(args.out_dir)
    metrics_path = Path(args.metrics) if args.metrics else out_dir / "workloads.json"
    if args.table:
        print(markdown_table(json.loads(metrics_path.read_text())))
        return 0
    for name in args.task or list(RECIPES):
        for arch in args.arch or ["egru", "gru"]:
            options = dict(RECIPES[name], seed=args.seed)
            if arch == "gru" and name in GRU_EPOCHS:
                options["epochs"] = GRU_EPOCHS[name]
            if args.epochs:
                options["epochs"] = args.epochs
            if args.max_batches:
                options["max_batches"] = args.max_batches
            for item in args.set:
                key, _, value = item.partition("=")
                try:
                    options[key] = json.loads(value)
                except ValueError:
                    options[key] = value  # a plain string such as fan_in
            checkpoint = None if args.dry_run or arch == "gru" else out_dir / CHECKPOINTS[name]
            start = time.perf_counter()
            metrics = train_task(name, arch, checkpoint, **options)
            metrics["wall_seconds"] = time.perf_counter() - start
            metrics["torch"] = torch.__version__
            if name == "brown-lm" and not args.dry_run:
                tasks.write_vocab(out_dir / "brown_vocab.txt", tasks.brown_corpus().vocab)
            if not args.dry_run:
                merge_metrics(metrics_path, f"{name}/{arch}", metrics)
            print(json.dumps({k: v for k, v in metrics.items() if k != "history"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
