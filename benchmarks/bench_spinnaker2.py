"""SpiNNaker2 target benchmark, measured in one run:

1. a PTB-sized language model (10,000-token embedding on the host, 3 EGRU layers of 1,350, decoder
   to 10,000; random weights, 90 % pruned): PEs and chips used vs the memory lower bound, per layer
   and in total, with the flat 128 KB PE memory map (memory_map.py), and the compile time (prune +
   quantize + map + images);
2. hwsim synaptic operations per step vs dense MACs, beside the measured activity sparsity (as in
   the EGRU paper's Table 3), for the trained digits model and the PTB-sized model;
3. hwsim throughput at batch 64 vs the torch float model on the same network.

Prints tables and writes benchmarks/results/bench_spinnaker2.json.

    python benchmarks/bench_spinnaker2.py [--threads 1] [--hidden 256] [--steps 64]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

from egru_deploy.converters import load_model  # noqa: E402
from egru_deploy.converters.torch import from_torch  # noqa: E402
from egru_deploy.hwsim import spinnaker2 as hwsim  # noqa: E402
from egru_deploy.ir import EGRU, Linear  # noqa: E402
from egru_deploy.profiles import SPINNAKER2  # noqa: E402
from egru_deploy.quantize import quantize  # noqa: E402
from egru_deploy.targets.spinnaker2 import build, memory_map  # noqa: E402
from egru_deploy.targets.spinnaker2.compile import PLACEMENT_JSON, TARGET_DIR, compile_spinnaker2  # noqa: E402
from egru_deploy.targets.spinnaker2.language_model import PTB, compile_language_model  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PE_RATIO_TARGET = 1.25
PE_RATIO_AIM = 1.10  # issue 12's aim with the flat memory map
COMPILE_SECONDS_TARGET = 60.0
THROUGHPUT_RATIO_TARGET = 3.0
BATCH = 64


def system_for(graph, directory: Path) -> hwsim.System:
    compile_spinnaker2(graph, directory, None)
    return hwsim.System(graph, json.loads((directory / TARGET_DIR / PLACEMENT_JSON).read_text()))


def dense_macs_per_step(graph) -> int:
    return sum((layer.in_size + layer.hidden) * 3 * layer.hidden if isinstance(layer, EGRU)
               else layer.in_size * layer.out_size for layer in graph.layers if isinstance(layer, (EGRU, Linear)))


def weight_density(graph) -> float:
    mats = [m for layer in graph.layers for m in
            ((layer.kernel, layer.recurrent_kernel) if isinstance(layer, EGRU) else
             (layer.weight,) if isinstance(layer, Linear) else ())]
    return sum(np.count_nonzero(m) for m in mats) / sum(m.size for m in mats)


def synaptic_row(name: str, system: hwsim.System, x) -> dict:
    result = hwsim.simulate(system, x)
    per_step = result.per_step()
    dense = dense_macs_per_step(system.graph)
    return {"workload": name, "activity_sparsity": result.run.sparsity(), "weight_density": weight_density(system.graph),
            "dense_macs_per_step": dense, "hwsim_synaptic_ops_per_step": per_step["synaptic_ops"],
            "reduction": dense / max(per_step["synaptic_ops"], 1e-9),
            "packets_per_step": per_step["packets_sent"], "estimates": result.estimates}


def ptb_section(work: Path) -> tuple[dict, dict]:
    started = time.perf_counter()
    graph, report = compile_language_model(work / "ptb")
    seconds = time.perf_counter() - started
    summary = report["summary"]
    row = {"pes": summary["pes"], "chips": summary["chips"], "pes_lower_bound": summary["pes_memory_lower_bound"],
           "ratio": summary["pes_over_lower_bound"], "compile_s": seconds, "timings": report["timings"],
           "layers": report["layers"], "summary": summary,
           "meets_pe_target": summary["pes_over_lower_bound"] <= PE_RATIO_TARGET,
           "meets_pe_aim": summary["pes_over_lower_bound"] <= PE_RATIO_AIM,
           "meets_time_target": seconds < COMPILE_SECONDS_TARGET}
    system = hwsim.System(graph, json.loads((work / "ptb" / TARGET_DIR / PLACEMENT_JSON).read_text()))
    tokens = np.random.default_rng(1).integers(0, PTB.vocab, (2, 16))
    return row, synaptic_row("PTB-sized 90 % pruned", system, tokens)


def digits_section(work: Path) -> dict | None:
    if not (EXAMPLES / "digits_egru.pt").is_file():
        return None
    calibration = np.load(EXAMPLES / "digits_train.npz")["x"][:64].astype(np.float32)
    x = np.load(EXAMPLES / "digits_test.npz")["x"].astype(np.float32)
    graph = quantize(load_model(EXAMPLES / "digits_egru.pt"), SPINNAKER2, calibration)
    return synaptic_row("digits (trained)", system_for(graph, work / "digits"), x)


def throughput_section(work: Path, hidden: int, steps: int) -> dict:
    net = common.benchmark_network(hidden, 64)
    x = common.benchmark_inputs(BATCH, steps, 64)
    graph = quantize(from_torch(net), SPINNAKER2, x[:16])
    system = system_for(graph, work / "throughput")
    x_torch = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            return net(x_torch)

    torch_rate = common.throughput(run_torch, steps, BATCH)
    hwsim_rate = common.throughput(lambda: hwsim.simulate(system, x), steps, BATCH)
    return {"hidden": hidden, "input": 64, "batch": BATCH, "steps": steps, "pes": len(system.pes),
            "torch": torch_rate, "hwsim": hwsim_rate,
            "torch_over_hwsim": torch_rate["steps_per_s"] / hwsim_rate["steps_per_s"],
            "meets_target": torch_rate["steps_per_s"] / hwsim_rate["steps_per_s"] <= THROUGHPUT_RATIO_TARGET}


def table(title: str, header: list[str], rows: list[list]) -> None:
    t = Table(title=title)
    for h in header:
        t.add_column(h, justify="right")
    for r in rows:
        t.add_row(*(f"{v:,.3g}" if isinstance(v, float) else str(v) for v in r))
    common.console.print(t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=64)
    args = parser.parse_args(argv)
    with common.limit_threads(args.threads), tempfile.TemporaryDirectory(prefix="bench-s2-") as tmp:
        work = Path(tmp)
        ptb, ptb_ops = ptb_section(work)
        digits = digits_section(work)
        speed = throughput_section(work, args.hidden, args.steps)
    table("PE memory map (flat 128 KB, memory_map.py)", ["region", "address", "bytes"],
          [[r["region"], r["address"], r["bytes"]] for r in memory_map.describe()])
    table("PTB-sized LM on SpiNNaker2 (90 % pruned)", ["PEs", "chips", "memory lower bound", "PEs / bound",
                                                        f"target <= {PE_RATIO_TARGET}", f"aim <= {PE_RATIO_AIM}",
                                                        "compile s", f"target < {COMPILE_SECONDS_TARGET:g} s"],
          [[ptb["pes"], ptb["chips"], ptb["pes_lower_bound"], ptb["ratio"], ptb["meets_pe_target"],
            ptb["meets_pe_aim"], ptb["compile_s"], ptb["meets_time_target"]]])
    table("PTB-sized LM: PEs per layer", ["layer", "kind", "units", "PEs", "memory lower bound", "PEs / bound"],
          [[row["layer"], row["kind"], row["units"], row["pes"], row["pes_lower_bound"],
            row["pes"] / max(row["pes_lower_bound"], 1)] for row in ptb["layers"]])
    ops_rows = [r for r in (digits, ptb_ops) if r]
    table("hwsim synaptic operations per step vs dense MACs (per sample)",
          ["workload", "act. sparsity", "w. density", "dense MACs", "synaptic ops", "reduction",
           "us/step @150MHz (est.)", "nJ/step (est.)"],
          [[r["workload"], f"{r['activity_sparsity']:.1%}", f"{r['weight_density']:.1%}", r["dense_macs_per_step"],
            r["hwsim_synaptic_ops_per_step"], f"{r['reduction']:.1f}x",
            r["estimates"]["time_per_step_us"]["150MHz"], r["estimates"]["energy_per_step_nj"]] for r in ops_rows])
    table(f"hwsim vs torch float, H = {speed['hidden']}, batch {BATCH}, T = {speed['steps']}",
          ["PEs", "torch steps/s", "hwsim steps/s", "torch / hwsim", f"target <= {THROUGHPUT_RATIO_TARGET:g}"],
          [[speed["pes"], speed["torch"]["steps_per_s"], speed["hwsim"]["steps_per_s"], speed["torch_over_hwsim"],
            speed["meets_target"]]])
    path = common.write_json("bench_spinnaker2", {
        "environment": common.environment(args.threads),
        "memory_map": memory_map.describe(),
        "program_sizes": build.program_sizes() if build.toolchain_available() else None,
        "ptb": ptb, "synaptic_ops": ops_rows, "throughput": speed,
        "notes": {"estimates": "time and energy per step are estimates from counted operations (hwsim.spinnaker2)",
                  "rates": common.RATE_UNITS}})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
