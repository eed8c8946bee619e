"""Paper-size scale checks: the EGRU paper's models compiled and emulated on both targets (issue 13).

Workloads (``egru_deploy.synthetic.PAPER_WORKLOADS``; random but trained-like weights, sizes only):
sMNIST 590 units x 784 steps; DVS gesture 1,024 units on 2,048 inputs; PTB language models with a
10,000-word vocabulary: 3 x 1,350 and the 2,000-unit variant as EvNN's README trains them (last layer
= embedding width, tied decoder), and 3 full layers of 1,350 (``bench_spinnaker2``'s shape).

For each workload and target:
  1. the float graph: ``synthetic.random_graph`` (weights of variance 1/fan-in), thresholds fitted so
     that ~20 % of the units emit an event per step on task-like inputs (after the target's pruning);
  2. ``egru_deploy.compile.compile_model`` (what ``egru-deploy compile`` runs: prune, quantize on 4
     calibration samples, quantization report, target mapping, bundle) in a fresh subprocess that
     loads the saved float graph; its wall time, and its peak memory as the child's max RSS measured by
     ``/usr/bin/time -f %M`` (see :func:`run_child` for why not ``getrusage(RUSAGE_CHILDREN)``),
     beside the max RSS of a child that only imports the same modules;
  3. resources: Loihi 2 neurocores and chips (and the synaptic-memory lower bound), SpiNNaker2 PEs and
     chips vs the memory lower bound;
  4. in this process, one thread: the target's hwsim on the compiled bundle and the torch float model
     (``EGRUNetwork`` holding the bundle's float graph) on the same inputs, sample-steps per second of
     each and the ratio; hwsim's output is checked equal to the integer reference's.

Pruning: the language models at 90 % for SpiNNaker2 (as ``bench_spinnaker2``); nothing else is pruned
(Loihi 2's Dense synapses are stored dense, so pruning would not change its cores; the paper trains
sMNIST and DVS dense).  A compile that fails or exceeds 60 s / 4 GiB is recorded as such, with its error.

Prints a table and writes benchmarks/results/bench_scale.json.

    python benchmarks/bench_scale.py [--workloads smnist dvs ...] [--targets loihi2 spinnaker2]
                                     [--threads 1] [--compile-threads 1] [--scale 1]
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

from egru_deploy import bundle, ir, reference, synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("loihi2", "spinnaker2")
COMPILE_SECONDS_LIMIT = 60.0
COMPILE_BYTES_LIMIT = 4 * 1024 ** 3
CALIBRATION_SAMPLES = 4
EMULATION_BATCH = 4
ACTIVITY = 0.2
CHILD_TIMEOUT_S = 900
GNU_TIME = "/usr/bin/time"
MEMORY_MAP_FILES = ("targets/spinnaker2/memory_map.py", "targets/spinnaker2/pe/pe.ld",
                    "targets/spinnaker2/images.py", "targets/spinnaker2/mapping.py")


# --------------------------------------------------------------------------- the compile child

def child_main(argv: list[str]) -> int:
    """``--child compile MODEL_DIR TARGET BUNDLE CALIBRATION.npz PRUNE`` or ``--child baseline``."""
    from egru_deploy.compile import compile_model
    from egru_deploy.report import save_report_plot  # noqa: F401  (imported by compile: same baseline)
    from egru_deploy.targets import COMPILERS  # noqa: F401
    from egru_deploy.targets.loihi2 import compile as _l2  # noqa: F401
    from egru_deploy.targets.spinnaker2 import compile as _s2  # noqa: F401

    if argv[0] == "baseline":
        print(json.dumps({"vm_hwm_bytes": vm_hwm_bytes()}))
        return 0
    _, model_dir, target, out, calibration, amount = argv
    started = time.perf_counter()
    graph = ir.load(model_dir)
    x = np.load(calibration)["x"]
    loaded = time.perf_counter()
    report = compile_model(graph, target, Path(out), x, float(amount))
    done = time.perf_counter()
    print(json.dumps({"load_s": loaded - started, "compile_s": done - loaded,
                      "compile_seconds_reported": report["compile_seconds"], "vm_hwm_bytes": vm_hwm_bytes()}))
    return 0


def run_child(args: list[str], threads: int) -> dict:
    """Run this script as a child under ``/usr/bin/time``: wall time, max RSS, exit code and output.

    Peak memory is GNU time's "maximum resident set size" (``%M``, the rusage of the process it
    forks): a child forked straight from this process would report at least *this* process's RSS
    (Linux carries the pre-exec high-water mark into ``ru_maxrss``, of ``os.wait4`` and
    ``getrusage(RUSAGE_CHILDREN)`` alike), and GNU time forks from a small process.  The child also
    reports its own ``VmHWM`` (/proc/self/status) as a cross-check.
    """
    env = {**os.environ, **{name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "MKL_NUM_THREADS")}}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    with tempfile.TemporaryDirectory() as tmp:
        timed = Path(tmp) / "time.txt"
        wrapper = [GNU_TIME, "-f", "%M", "-o", str(timed)] if Path(GNU_TIME).is_file() else []
        started = time.perf_counter()
        try:
            done = subprocess.run(wrapper + command, capture_output=True, text=True, env=env, cwd=ROOT,
                                  timeout=CHILD_TIMEOUT_S)
            rc, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            rc, stdout, stderr = "timeout", "", f"timed out after {CHILD_TIMEOUT_S} s\n{e.stderr or ''}"
        wall = time.perf_counter() - started
        lines = timed.read_text().split() if timed.is_file() else []
    result = {"rc": rc, "wall_s": wall,
              "max_rss_bytes": int(lines[-1]) * 1024 if lines and lines[-1].isdigit() else None,
              "max_rss_source": "GNU time %M" if wrapper else None}
    if rc == 0:
        result.update(json.loads(stdout.strip().splitlines()[-1]))
        if result["max_rss_bytes"] is None:
            result["max_rss_bytes"], result["max_rss_source"] = result["vm_hwm_bytes"], "child VmHWM"
    else:
        lines = [line for line in (stderr or "").strip().splitlines() if line.strip()]
        result["error"] = lines[-1] if lines else f"exit {rc}"
        result["stderr_tail"] = lines[-15:]
    return result


def vm_hwm_bytes() -> int:
    """This process's peak resident set since its exec (``VmHWM``, KiB in /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- one workload on one target

def resources(target: str, report: dict) -> dict:
    res = report["resources"]
    if target == "loihi2":
        synaptic = res["memory"]["synaptic_bytes_total"]
        per_core = res["limits"]["synaptic_bytes_per_core"]
        bound = sum(-(-sum(c["synaptic_bytes"] for c in res["cores"] if c["population"] == p["name"]) // per_core)
                    for p in res["populations"])
        return {"units": "neurocores", "cores": res["neurocores"], "chips": res["chips"],
                "cores_per_chip": res["limits"]["neurocores_per_chip"], "fits_one_chip": res["fits_one_chip"],
                "placement": res["placement"], "memory_lower_bound": bound,
                "over_lower_bound": res["neurocores"] / max(bound, 1), "synaptic_bytes_total": synaptic,
                "synaptic_bytes_max_core": res["memory"]["synaptic_bytes_max_core"],
                "neurons_per_egru_unit": res["neurons_per_egru_unit"],
                "populations": [{k: p[k] for k in ("name", "layer", "neurons")} | {"cores": len(p["cores"])}
                                for p in res["populations"]]}
    s = res["summary"]
    return {"units": "PEs", "cores": s["pes"], "chips": s["chips"], "cores_per_chip": res["board"]["pes_per_chip"],
            "fits_one_chip": s["chips"] <= 1, "memory_lower_bound": s["pes_memory_lower_bound"],
            "over_lower_bound": s["pes_over_lower_bound"], "image_bytes_total": s["image_bytes_total"],
            "image_capacity_bytes": s["image_capacity_bytes"], "code_bytes": s["code_bytes"],
            "memory_source": s["memory_source"], "weight_matrices_csr": s["weight_matrices_csr"],
            "weight_matrices_dense": s["weight_matrices_dense"], "layers": res["layers"]}


def emulator(target: str, bundle_dir: Path):
    """``fn(x) -> RunResult``: the target's hwsim on the bundle, as ``egru-deploy emulate --backend hwsim``
    runs it, with the bundle read once (outside the timing)."""
    if target == "loihi2":
        from egru_deploy.hwsim import loihi2
        from egru_deploy.targets.loihi2.run import bundle_graph

        graph = bundle_graph(bundle_dir)
        return lambda x: loihi2.run(graph, x).result(graph)
    from egru_deploy.hwsim import spinnaker2

    system = spinnaker2.load(bundle_dir)  # placement and images checked against the graph
    return lambda x: spinnaker2.simulate(system, x).run


def emulate(workload: synthetic.Workload, target: str, bundle_dir: Path, batch: int, steps: int) -> dict:
    """hwsim vs torch float on the same inputs, one thread; hwsim checked against the integer reference."""
    from egru_deploy.qat import network_from_graph

    x = workload.sample(batch, steps, seed=7)
    run_hwsim = emulator(target, bundle_dir)
    net = network_from_graph(bundle.load_float_graph(bundle_dir)).eval()
    x_torch = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            return net(x_torch)

    hw = common.throughput(lambda: run_hwsim(x), steps, batch, min_seconds=0.0, repeats=2)
    fl = common.throughput(run_torch, steps, batch, min_seconds=0.0, repeats=2)
    run = run_hwsim(x)
    expected = reference.run_int(bundle.load_graph(bundle_dir), x)
    equal = bool(np.array_equal(run.output, expected.output)
                 and all(np.array_equal(a, b) for a, b in zip(run.events, expected.events)))
    _, events = run_torch()
    float_activity = float(np.mean([float((e != 0).float().mean()) for e in events]))
    return {"batch": batch, "steps": steps, "hwsim": hw, "torch": fl,
            "torch_over_hwsim": fl["sample_steps_per_s"] / hw["sample_steps_per_s"],
            "hwsim_equals_reference": equal, "hwsim_activity": 1.0 - run.sparsity(),
            "float_activity": float_activity}


def bench(workload: synthetic.Workload, target: str, work: Path, args) -> dict:
    row = {"workload": workload.name, "target": target, "prune": workload.prune_for(target),
           "hidden": list(workload.shape.hidden), "inputs": workload.shape.inputs,
           "embedding": workload.shape.embedding, "outputs": workload.shape.outputs, "tied": workload.shape.tied,
           "float_parameters": workload.shape.parameters()}
    started = time.perf_counter()
    graph = workload.graph(target, activity=ACTIVITY)
    row["build_s"] = time.perf_counter() - started
    model_dir, bundle_dir, calibration = work / "model", work / "bundle", work / "calibration.npz"
    ir.save(graph, model_dir)
    np.savez(calibration, x=workload.sample(CALIBRATION_SAMPLES, seed=1))
    child = run_child(["compile", str(model_dir), target, str(bundle_dir), str(calibration), str(row["prune"])],
                      args.compile_threads)
    row["compile"] = child
    row["compile_ok"] = child["rc"] == 0
    if not row["compile_ok"]:
        row["meets_limits"] = False
        return row
    report = json.loads((bundle_dir / "report.json").read_text())
    row["compile_s"] = child["compile_s"]
    row["peak_rss_bytes"] = child["max_rss_bytes"]
    row["meets_limits"] = child["compile_s"] < COMPILE_SECONDS_LIMIT and child["max_rss_bytes"] < COMPILE_BYTES_LIMIT
    row["resources"] = resources(target, report)
    row["quantization"] = {"saturations": report["saturation_total"], "output_snr_db": report["output_snr_db"],
                           "float_activity": 1.0 - report["runs"]["float"]["sparsity"],
                           "quantized_activity": 1.0 - report["runs"]["quantized"]["sparsity"]}
    steps = min(workload.steps, args.steps) if args.steps else workload.steps
    with common.limit_threads(args.threads):
        row["emulation"] = emulate(workload, target, bundle_dir, args.batch, steps)
    return row


# --------------------------------------------------------------------------- report

def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2 ** 20:,.0f}"


def print_rows(rows: list[dict], baseline: dict) -> None:
    compiled = common.Table(title=f"compile in a fresh process (limits < {COMPILE_SECONDS_LIMIT:g} s, "
                                  f"< {COMPILE_BYTES_LIMIT / 2 ** 30:g} GiB) and resources")
    for header in ("workload", "target", "prune", "cores", "chips", "mem. bound", "/ bound",
                   "compile s", "peak MiB", "in limits"):
        compiled.add_column(header, justify="right", no_wrap=True)
    emulated = common.Table(title="emulation: hwsim vs torch float, same inputs, same process, 1 thread")
    for header in ("workload", "target", "B x T", "hwsim sample-steps/s", "torch sample-steps/s",
                   "torch / hwsim", "activity", "== ref."):
        emulated.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        if not r["compile_ok"]:
            compiled.add_row(r["workload"], r["target"], f"{r['prune']:.0%}", "-", "-", "-", "-",
                             f"{r['compile']['wall_s']:.1f}", _mib(r["compile"]["max_rss_bytes"]),
                             "FAILED: " + r["compile"]["error"][:50])
            continue
        res, emu = r["resources"], r["emulation"]
        unit = "NC" if res["units"] == "neurocores" else "PE"
        compiled.add_row(r["workload"], r["target"], f"{r['prune']:.0%}", f"{res['cores']} {unit}",
                         str(res["chips"]), str(res["memory_lower_bound"]), f"{res['over_lower_bound']:.2f}",
                         f"{r['compile_s']:.1f}", _mib(r["peak_rss_bytes"]), "yes" if r["meets_limits"] else "NO")
        emulated.add_row(r["workload"], r["target"], f"{emu['batch']} x {emu['steps']}",
                         f"{emu['hwsim']['sample_steps_per_s']:,.0f}", f"{emu['torch']['sample_steps_per_s']:,.0f}",
                         f"{emu['torch_over_hwsim']:.2f}", f"{emu['hwsim_activity']:.1%}",
                         str(emu["hwsim_equals_reference"]))
    common.console.print(compiled)
    common.console.print("NC: Loihi 2 neurocores (128 per chip); PE: SpiNNaker2 processing elements (152 per chip). "
                         f"peak MiB: max RSS of the compile process (GNU time %M: load of the float graph + "
                         f"compile_model), interpreter and imports included ({_mib(baseline['max_rss_bytes'])} MiB "
                         f"for a child that only imports them). memory bound: cores if each were filled with "
                         f"synapses (Loihi 2: 128 KB of synaptic memory per neurocore) or image (SpiNNaker2: "
                         f"the PE's image capacity).")
    for r in rows:
        if r["compile_ok"] and not r["resources"]["fits_one_chip"]:
            common.console.print(f"{r['workload']} on {r['target']}: {r['resources']['chips']} chips "
                                 f"({r['resources']['cores']} {r['resources']['units']} > "
                                 f"{r['resources']['cores_per_chip']} per chip): needs a multi-chip system")
    common.console.print(emulated)


def git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def file_digests() -> dict:
    """The SpiNNaker2 memory-map files the PE counts depend on (they are being changed: issue 13)."""
    out = {}
    for name in MEMORY_MAP_FILES:
        path = ROOT / name
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(synthetic.WORKLOADS), choices=list(synthetic.WORKLOADS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads for emulation (default 1)")
    parser.add_argument("--compile-threads", type=int, default=1, help="BLAS threads of the compile process")
    parser.add_argument("--batch", type=int, default=EMULATION_BATCH)
    parser.add_argument("--steps", type=int, default=0, help="cap the emulated steps (default: the task's)")
    parser.add_argument("--scale", type=int, default=1, help="divide every width by this (quick checks)")
    parser.add_argument("--output", default="bench_scale", help="results/<name>.json")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    baseline = run_child(["baseline"], args.compile_threads)
    rows = []
    for name in args.workloads:
        workload = synthetic.WORKLOADS[name]
        workload = workload.scaled(args.scale) if args.scale > 1 else workload
        for target in args.targets:
            with tempfile.TemporaryDirectory(prefix=f"bench-scale-{name}-{target}-") as tmp:
                row = bench(workload, target, Path(tmp), args)
            rows.append(row)
            common.console.print(f"{name} {target}: " + (
                f"compile {row['compile_s']:.1f} s, {_mib(row['peak_rss_bytes'])} MiB, "
                f"{row['resources']['cores']} {row['resources']['units']} on {row['resources']['chips']} chip(s)"
                if row["compile_ok"] else f"compile FAILED: {row['compile']['error']}"))
    print_rows(rows, baseline)
    path = common.write_json(args.output, {
        "benchmark": "bench_scale", "measured_at": started.isoformat(timespec="seconds"),
        "environment": {**common.environment(args.threads), "compile_threads": args.compile_threads,
                        "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()}},
        "git_head": git_head(), "spinnaker2_memory_map_files_sha256": file_digests(),
        "limits": {"compile_seconds": COMPILE_SECONDS_LIMIT, "compile_bytes": COMPILE_BYTES_LIMIT},
        "settings": {"activity_target": ACTIVITY, "calibration_samples": CALIBRATION_SAMPLES, "batch": args.batch,
                     "scale": args.scale},
        "workloads": {w: {"source": synthetic.WORKLOADS[w].source, "inputs": synthetic.WORKLOADS[w].inputs,
                          "steps": synthetic.WORKLOADS[w].steps, "prune": synthetic.WORKLOADS[w].prune}
                      for w in args.workloads},
        "import_baseline": baseline,
        "results": rows,
        "notes": {"peak memory": "max RSS of the compile child, /usr/bin/time -f %M (KiB x 1024): load of the "
                                 "float graph + compile_model, with the interpreter and imports; vm_hwm_bytes is "
                                 "the child's own VmHWM. Not getrusage(RUSAGE_CHILDREN)/os.wait4 of a child forked "
                                 "from the benchmark: Linux keeps the pre-exec (parent's) RSS in ru_maxrss",
                  "compile_s": "compile_model wall time in the child (prune, quantize, report, mapping, bundle "
                               "write); the child's load of the float graph is load_s",
                  "emulation": "hwsim on the compiled bundle vs torch float (EGRUNetwork of the bundle's float "
                               "graph, no_grad), same inputs, same process, best of 2 after a warm-up",
                  "loihi2 multi-chip": "there is no multi-chip Loihi 2 support: a model needing more than 128 "
                                       "neurocores is refused at compile (exit 2, compile_ok false)",
                  "rates": common.RATE_UNITS}})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
