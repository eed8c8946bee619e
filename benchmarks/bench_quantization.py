"""Quantization on the bundled digits example: float vs PTQ vs QAT vs 90 % pruning + QAT, per profile.

Every integer accuracy is what ``egru-deploy compile`` produces (``compile.pipeline``: optional
pruning, then PTQ calibrated on examples/digits_train.npz) run by the integer reference interpreter
(``reference.run_int``) on examples/digits_test.npz. The QAT models are the shipped checkpoints
written by scripts/make_qat_examples.py. Drops are in percentage points below the original float
model's test accuracy. Targets (issue 4): PTQ <= 1.0 pp, QAT <= 0.5 pp, 90 % pruning + QAT <= 2 pp.

Also the integer interpreter's speed against the float reference (target: within 2x), on the digits
example (test set) and on a wider random layer (``common.benchmark_network``, H = 256).
Prints tables and writes benchmarks/results/bench_quantization.json.

    python benchmarks/bench_quantization.py [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

from egru_deploy.compile import pipeline  # noqa: E402
from egru_deploy.converters import load_model  # noqa: E402
from egru_deploy.converters.torch import from_torch  # noqa: E402
from egru_deploy.data import DIGITS_OUTPUT_MODE, evaluate, load_split  # noqa: E402
from egru_deploy.profiles import PROFILES  # noqa: E402
from egru_deploy.qat import compile_and_evaluate  # noqa: E402
from egru_deploy.reference import run_float, run_int  # noqa: E402

EXAMPLES = Path(__file__).parents[1] / "examples"
TARGET_DROP_PP = {"ptq": 1.0, "qat": 0.5, "prune90_qat": 2.0}
TARGET_SPEED_RATIO = 2.0  # float steps/s over integer steps/s
WIDE_HIDDEN, WIDE_INPUT, WIDE_BATCH, WIDE_STEPS = 256, 64, 64, 64


def digits_graph(path: Path):
    return replace(load_model(path), output_mode=DIGITS_OUTPUT_MODE)


def accuracy_rows(x_train, x_test, y_test) -> list[dict]:
    float_accuracy = evaluate(digits_graph(EXAMPLES / "digits_egru.pt"), x_test, y_test)["accuracy"]
    rows = []
    for profile in PROFILES:
        models = {"ptq": ("digits_egru.pt", 0.0), "qat": (f"digits_egru_qat_{profile}.pt", 0.0),
                  "prune90_qat": (f"digits_egru_qat_prune90_{profile}.pt", 0.9)}
        row = {"profile": profile, "float_accuracy": float_accuracy}
        for kind, (name, prune) in models.items():
            metrics = compile_and_evaluate(digits_graph(EXAMPLES / name), profile, x_train, x_test, y_test, prune)
            drop = 100 * (float_accuracy - metrics["accuracy"])
            row[kind] = {"model": f"examples/{name}", "prune": prune, "accuracy": metrics["accuracy"],
                         "sparsity": metrics["sparsity"], "drop_pp": drop, "target_drop_pp": TARGET_DROP_PP[kind],
                         "meets_target": drop <= TARGET_DROP_PP[kind]}
        rows.append(row)
    return rows


def speed_rows(workloads: dict) -> list[dict]:
    """Float reference vs integer interpreter, per workload and profile."""
    rows = []
    for name, (graph, x) in workloads.items():
        batch, steps = x.shape[:2]
        float_rate = common.throughput(lambda: run_float(graph, x), steps, batch)
        for profile in PROFILES:
            qgraph = graph
            for stage in pipeline(profile, x):
                qgraph = stage.apply(qgraph)
            int_rate = common.throughput(lambda: run_int(qgraph, x), steps, batch)
            ratio = float_rate["steps_per_s"] / int_rate["steps_per_s"]
            rows.append({"workload": name, "profile": profile, "hidden": graph.egru_layers[0].hidden,
                         "batch": batch, "steps": steps, "float_steps_per_s": float_rate["steps_per_s"],
                         "float_sample_steps_per_s": float_rate["sample_steps_per_s"],
                         "int_steps_per_s": int_rate["steps_per_s"],
                         "int_sample_steps_per_s": int_rate["sample_steps_per_s"],
                         "float_over_int": ratio, "target_float_over_int": TARGET_SPEED_RATIO,
                         "meets_target": ratio <= TARGET_SPEED_RATIO})
    return rows


def print_accuracy(rows: list[dict]) -> None:
    table = Table(title="digits test accuracy (integer reference interpreter), drop vs float in pp")
    for header in ("profile", "float", "PTQ", "QAT", "prune 90 % + QAT"):
        table.add_column(header, justify="right", no_wrap=True)
    cell = lambda r: (f"{r['accuracy']:.2%} ({r['drop_pp']:+.2f} pp, <= {r['target_drop_pp']:g}"  # noqa: E731
                      f" {'ok' if r['meets_target'] else 'MISSED'})")
    for row in rows:
        table.add_row(row["profile"], f"{row['float_accuracy']:.2%}", cell(row["ptq"]), cell(row["qat"]),
                      cell(row["prune90_qat"]))
    common.console.print(table)


def print_speed(rows: list[dict]) -> None:
    table = Table(title=f"integer interpreter vs float reference (steps/s; target float/int <= {TARGET_SPEED_RATIO:g})")
    for header in ("workload", "profile", "H", "batch", "T", "float steps/s", "int steps/s", "float/int"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["workload"], r["profile"], str(r["hidden"]), str(r["batch"]), str(r["steps"]),
                      f"{r['float_steps_per_s']:,.0f}", f"{r['int_steps_per_s']:,.0f}",
                      f"{r['float_over_int']:.2f} {'ok' if r['meets_target'] else 'MISSED'}")
    common.console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    args = parser.parse_args(argv)
    x_train, _ = load_split(EXAMPLES / "digits_train.npz")
    x_test, y_test = load_split(EXAMPLES / "digits_test.npz")
    workloads = {
        "digits example (test set)": (digits_graph(EXAMPLES / "digits_egru.pt"), x_test),
        "random layer": (from_torch(common.benchmark_network(WIDE_HIDDEN, WIDE_INPUT)),
                         common.benchmark_inputs(WIDE_BATCH, WIDE_STEPS, WIDE_INPUT)),
    }
    with common.limit_threads(args.threads):
        accuracy = accuracy_rows(x_train, x_test, y_test)
        speed = speed_rows(workloads)
    print_accuracy(accuracy)
    print_speed(speed)
    path = common.write_json("bench_quantization", {
        "benchmark": "bench_quantization", "environment": common.environment(args.threads),
        "units": {"accuracy": "fraction of examples/digits_test.npz classified correctly",
                  "drop_pp": "percentage points below the float model's test accuracy",
                  "steps_per_s": common.RATE_UNITS["steps_per_s"],
                  "sample_steps_per_s": common.RATE_UNITS["sample_steps_per_s"]},
        "accuracy": accuracy, "speed": speed})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
