"""Loihi 2: hwsim vs Lava's CPU simulation, hwsim vs the torch float model, compile time of the example.

Workload: ``common.benchmark_network`` (one EGRU layer, input 64, ~83 % zero events) at H = 128 and
512, quantized for the loihi2 profile, T = 64 steps.
  * Lava: ``Loihi2SimCfg(select_tag="fixed_pt")`` runs one sequence per run.  Its rate is given
    end to end (build + compile + run) and in steady state (the extra time of a longer run), the
    latter being the more favourable to Lava; speed-ups use the steady-state rate.
  * hwsim: batch 1 (steps/s, like Lava) and batch 64 (sample-steps/s); its sinks are checked
    equal to Lava's on the timed sequence.
  * torch: the float model, batch 64, no_grad.
  * compile: ``egru-deploy compile`` of examples/digits_egru.pt for loihi2 (quantization included),
    and the Loihi 2 part alone (``compile_loihi2``), with the example's resource report.
Prints tables and writes benchmarks/results/bench_loihi2.json.

    python benchmarks/bench_loihi2.py [--hidden 128 512] [--steps 64] [--threads 1]
"""
from __future__ import annotations

from egru_deploy.targets.loihi2 import lava_compat

lava_compat.import_lava()  # Lava sets the multiprocessing start method: before anything else can

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

from egru_deploy import data  # noqa: E402
from egru_deploy.compile import compile_model, with_output_mode  # noqa: E402
from egru_deploy.converters import load_model  # noqa: E402
from egru_deploy.converters.torch import from_torch  # noqa: E402
from egru_deploy.hwsim import loihi2 as hwsim  # noqa: E402
from egru_deploy.profiles import LOIHI2  # noqa: E402
from egru_deploy.quantize import quantize  # noqa: E402
from egru_deploy.targets.loihi2 import network  # noqa: E402
from egru_deploy.targets.loihi2.compile import compile_loihi2  # noqa: E402

INPUT_SIZE = 64
BATCH = 64
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def lava_rates(graph, x: np.ndarray) -> tuple[dict, hwsim.ChipRun]:
    """Lava on one sequence: end-to-end rate of a full run, steady-state rate from a quarter-length run."""
    steps, short = x.shape[1], x.shape[1] // 4
    start = time.perf_counter()
    chip_run = network.run(graph, x)
    full = time.perf_counter() - start
    start = time.perf_counter()
    network.run(graph, x[:, :short])
    partial = time.perf_counter() - start
    steady = (steps - short) / max(full - partial, 1e-9)
    return {"seconds_per_run": full, "steps_per_s": steady, "sample_steps_per_s": steady,
            "end_to_end_steps_per_s": steps / full}, chip_run


def bench_hidden(hidden: int, steps: int) -> tuple[list[dict], dict]:
    net = common.benchmark_network(hidden, INPUT_SIZE)
    x = common.benchmark_inputs(BATCH, steps, INPUT_SIZE)
    graph = quantize(from_torch(net), LOIHI2, x)
    x_torch = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            return net(x_torch)

    lava, lava_run = lava_rates(graph, x[:1])
    hw_run = hwsim.run(graph, x[:1])
    exact = all(np.array_equal(a, b) for a, b in [(lava_run.output, hw_run.output),
                                                   *zip(lava_run.layer_events, hw_run.layer_events),
                                                   *zip(lava_run.spike_counts, hw_run.spike_counts)])
    workload = {"hidden": hidden, "steps": steps, "input": INPUT_SIZE,
                "activity_sparsity": hwsim.emulate(graph, x).sparsity()}
    rows = [{"implementation": "Lava Loihi2SimCfg fixed_pt", "batch": 1, **workload, **lava},
            {"implementation": "hwsim.loihi2", "batch": 1, **workload,
             **common.throughput(lambda: hwsim.run(graph, x[:1]), steps, 1)},
            {"implementation": "hwsim.loihi2", "batch": BATCH, **workload,
             **common.throughput(lambda: hwsim.run(graph, x), steps, BATCH)},
            {"implementation": "torch float (no_grad)", "batch": BATCH, **workload,
             **common.throughput(run_torch, steps, BATCH)}]
    lava_rate, hw1, hw64, torch64 = (r["sample_steps_per_s"] for r in rows)
    ratios = {"hidden": hidden, "hwsim_equals_lava": exact,
              "hwsim_b1_over_lava_steps_per_s": hw1 / lava_rate,
              "hwsim_b64_over_lava_sample_steps_per_s": hw64 / lava_rate,
              "torch_b64_over_hwsim_b64": torch64 / hw64}
    return rows, ratios


def bench_compile() -> dict:
    graph = with_output_mode(load_model(EXAMPLES / "digits_egru.pt"), "last")
    x_train, _ = data.load_split(EXAMPLES / "digits_train.npz")
    x_test, _ = data.load_split(EXAMPLES / "digits_test.npz")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = compile_model(graph, "loihi2", Path(tmp) / "digits", x_train, source="digits_egru.pt")
        total = time.perf_counter() - start
        quantized = load_model(Path(tmp) / "digits")
        start = time.perf_counter()
        resources = compile_loihi2(quantized, Path(tmp) / "alone", None, x_test)
        alone = time.perf_counter() - start
    return {"compile_seconds": total, "compile_seconds_reported": report["compile_seconds"],
            "compile_loihi2_seconds": alone, "digits_resources": resources}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    args = parser.parse_args(argv)
    rows, ratios = [], []
    with common.limit_threads(args.threads):
        for hidden in args.hidden:
            r, q = bench_hidden(hidden, args.steps)
            rows += r
            ratios.append(q)
        compiled = bench_compile()
    common.print_table(f"Loihi 2 emulation throughput, 1 EGRU layer, input {INPUT_SIZE}, T = {args.steps}, "
                       f"{args.threads} thread(s)", rows,
                       [("implementation", "implementation"), ("H", "hidden"), ("batch", "batch"),
                        ("activity sparsity", "activity_sparsity"), ("s/run", "seconds_per_run")])
    table = common.Table(title="ratios (targets: hwsim >= 100x Lava; torch <= 3x hwsim at batch 64)")
    for header in ("H", "hwsim == Lava", "hwsim b1 / Lava (steps/s)", "hwsim b64 / Lava (sample-steps/s)",
                   "torch b64 / hwsim b64"):
        table.add_column(header, justify="right")
    for q in ratios:
        table.add_row(str(q["hidden"]), str(q["hwsim_equals_lava"]), f"{q['hwsim_b1_over_lava_steps_per_s']:.1f}x",
                      f"{q['hwsim_b64_over_lava_sample_steps_per_s']:.0f}x", f"{q['torch_b64_over_hwsim_b64']:.2f}x")
    common.console.print(table)
    summary = compiled["digits_resources"]["summary"]
    common.console.print(f"compile examples/digits_egru.pt --target loihi2: {compiled['compile_seconds']:.2f} s "
                         f"(Loihi 2 part {compiled['compile_loihi2_seconds']:.2f} s; target < 5 s); "
                         + "; ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in summary.items()))
    path = common.write_json("bench_loihi2", {"benchmark": "bench_loihi2",
                                              "environment": common.environment(args.threads),
                                              "units": {**common.RATE_UNITS,
                                                        "end_to_end_steps_per_s": "Lava: steps / (build + "
                                                        "compile + run) of one sequence"},
                                              "results": rows, "ratios": ratios, "compile": compiled})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
