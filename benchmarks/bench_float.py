"""Float baseline: throughput of the torch EGRU module and the float NumPy reference.

One EGRU layer (input 64, H = 256 and 1024), batch 1 and 64, T = 64 steps, the same weights and
inputs for both implementations (``common.benchmark_network``: ~83 % zero events). This is the
baseline the bit-accurate emulators are compared with.
Prints a table and writes benchmarks/results/bench_float.json.

    python benchmarks/bench_float.py [--hidden 256 1024] [--batch 1 64] [--steps 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

from egru_deploy.converters.torch import from_torch  # noqa: E402
from egru_deploy.reference import run_float  # noqa: E402

INPUT_SIZE = 64


def bench_pair(hidden: int, batch: int, steps: int) -> list[dict]:
    """Rows for torch and the NumPy reference on one (hidden, batch) workload."""
    net = common.benchmark_network(hidden, INPUT_SIZE)
    graph = from_torch(net)
    x = common.benchmark_inputs(batch, steps, INPUT_SIZE)
    x_torch = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            return net(x_torch)

    sparsity = run_float(graph, x).sparsity()
    workload = {"hidden": hidden, "batch": batch, "steps": steps, "input": INPUT_SIZE, "layers": 1,
                "activity_sparsity": sparsity}
    return [{"implementation": "torch (no_grad)", **workload,
             **common.throughput(run_torch, steps, batch)},
            {"implementation": "NumPy run_float", **workload,
             **common.throughput(lambda: run_float(graph, x), steps, batch)}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1: a fair, "
                                                                 "quiet baseline on a shared machine)")
    args = parser.parse_args(argv)
    rows = []
    with common.limit_threads(args.threads):
        for hidden in args.hidden:
            for batch in args.batch:
                rows += bench_pair(hidden, batch, args.steps)
    common.print_table(f"float EGRU throughput, 1 layer, input {INPUT_SIZE}, T = {args.steps}, "
                       f"{args.threads} thread(s)", rows,
                       [("implementation", "implementation"), ("H", "hidden"), ("batch", "batch"),
                        ("activity sparsity", "activity_sparsity"), ("s/run", "seconds_per_run")])
    path = common.write_json("bench_float", {"benchmark": "bench_float",
                                             "environment": common.environment(args.threads),
                                             "units": common.RATE_UNITS, "results": rows})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
