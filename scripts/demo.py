"""`make demo`: the main job on the bundled example models.

Inspects examples/digits_egru.pt, runs it on its held-out test split (accuracy, activity sparsity,
effective vs dense MACs per step), then for every target compiles it (calibrated on the training
split), emulates the bundle bit-accurately and prints accuracy, sparsity and resources beside the
float result.  Then the paper-scale workloads (docs/workloads.md) the same way, on real data:
examples/fmnist_rows_egru.pt on 1,000 Fashion-MNIST test images (spread over the test split), and
the Brown-corpus language model examples/brown_lm_egru.pt, float vs deployed perplexity on a slice of
the test text (its 10 evaluation rows x 200 tokens, read as a stream: chunks of 70 steps, y carried).
A workload whose data package or checkpoint is missing is one line, and the demo goes on.
Every artefact is kept under demo-out/.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from egru_deploy import api, backends, bundle, data, evaluation, reference, tasks
from egru_deploy.compile import compile_model, with_output_mode
from egru_deploy.converters import load_model
from egru_deploy.errors import UserError
from egru_deploy.report import (console, mac_counts, print_quantization_report, print_resources, print_summary,
                                 task_metric)
from egru_deploy.targets import COMPILERS

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "digits_egru.pt"
OUT = ROOT / "demo-out"
# The real component each target's emulator is checked against, and on how many test samples.
# Lava runs every chip step of the stock-process circuit in Python (7 per input step): 2 samples.
CROSS_CHECKS = {"loihi2": ("lava", 2), "spinnaker2": ("qemu", 50)}
# The workloads: task -> (checkpoint, --limit: test samples, or steps of each of the LM's 10 rows).
WORKLOADS = {"fmnist-rows": ("fmnist_rows_egru.pt", 1000), "brown-lm": ("brown_lm_egru.pt", 200)}
LM_CROSS_CHECK_STEPS = 8  # the LM's cross-check: rows x this many steps


def main() -> int:
    console.width = max(console.width, 150)  # the summary table is wide; logs and pipes default to 80
    graph = with_output_mode(load_model(MODEL), data.DIGITS_OUTPUT_MODE)
    print_summary(graph.summary(), title=str(MODEL.relative_to(ROOT)))
    x_train, _, x_test, y_test = (*data.load_split(ROOT / "examples" / "digits_train.npz"),
                                  *data.load_split(ROOT / "examples" / "digits_test.npz"))
    float_run = reference.run_float(graph, x_test)
    float_acc = task_metric(float_run.output, y_test)
    macs = mac_counts(graph, x_test, float_run)
    rows = [("float (NumPy reference)", float_acc, float_run.sparsity(), macs, "-")]
    console.print(f"float: test accuracy {float_acc:.2%}, activity sparsity {float_run.sparsity():.1%}, "
                  f"effective/dense MACs per step {macs['effective']:,.0f} / {macs['dense']:,} "
                  f"({macs['effective'] / macs['dense']:.1%})")
    for target in COMPILERS:
        console.rule(f"target {target}")
        bundle_dir = OUT / f"digits-{target}"
        report = compile_model(graph, target, bundle_dir, x_train, eval_data=(x_test, y_test), source=str(MODEL),
                               force=True)  # the demo owns demo-out/
        print_quantization_report(report)
        print_resources(report["resources"])
        started = time.perf_counter()
        run = backends.run_backend("hwsim", bundle_dir, x_test)
        seconds = time.perf_counter() - started
        acc = task_metric(run.output, y_test)
        rows.append((f"{target} (hwsim, bit-accurate)", acc, run.sparsity(), mac_counts(graph, x_test, run),
                     _resource_line(run.hardware)))
        console.print(f"{target} hwsim: {len(x_test)} samples in {seconds:.2f} s; bundle in {bundle_dir}")
        _cross_check(bundle_dir, target, x_test, run)
    table = Table(title="digits example: float vs deployed (held-out test split)")
    for col in ("run", "accuracy", "activity sparsity", "effective / dense MACs per step", "resources"):
        table.add_column(col)
    for name, acc, sparsity, m, res in rows:
        table.add_row(name, f"{acc:.2%}", f"{sparsity:.1%}",
                      f"{m['effective']:,.0f} / {m['dense']:,} ({m['effective'] / m['dense']:.1%})", res)
    console.print(table)
    for task, (checkpoint, limit) in WORKLOADS.items():
        workload_demo(task, ROOT / "examples" / checkpoint, limit)
    return 0


def workload_demo(task: str, checkpoint: Path, limit: int) -> None:
    """One workload on both chips: float vs hwsim on a test subset, and the bit-for-bit cross-checks."""
    console.rule(f"workload {task}")
    if not checkpoint.is_file():
        console.print(f"{task}: skipped, {checkpoint.relative_to(ROOT)} is not there (scripts/train_workloads.py)")
        return
    try:
        work = evaluation.workload(task, "test", limit)
    except UserError as e:  # the data package is not installed: one line, and on to the next part
        console.print(f"{task}: skipped, {e}")
        return
    dataset = tasks.get_task(task).dataset
    base = evaluation.evaluate(checkpoint, task, "float", work=work)
    rows = [("float (NumPy reference)", base, "-")]
    size = (f"{base['samples']:,} of {base['split_samples']:,} test samples" if work.kind == "classification" else
            f"{base['tokens']:,} test tokens: {base['rows']} rows x {base['steps_per_row']}, chunks of {base['chunk']}, "
            f"y carried")
    console.print(f"{task} float on {size}: {evaluation.metric_text(base)}, activity sparsity {base['sparsity']:.1%}")
    if work.kind == "lm":
        console.print(f"{task}: evaluated as a {base['scheme']}")
    for target in COMPILERS:
        bundle_dir = OUT / f"{task}-{target}"
        report = api.compile(checkpoint, target, bundle_dir, f"{dataset}-train", eval_data=f"{dataset}-test",
                             force=True, output_mode=work.output_mode)
        run = evaluation.evaluate(bundle_dir, task, "hwsim", work=work)
        snr = ", ".join(f"{v:.1f}" for v in report["layer_snr_db"])
        console.print(f"{task} {target}: compiled in {report['compile_seconds']:.1f} s (event SNR per layer {snr} dB, "
                      f"saturations {report['saturation_total']}); hwsim {evaluation.metric_text(run)} in "
                      f"{run['seconds']:.1f} s; bundle in {bundle_dir}")
        summary = report["resources"]["summary"]
        cores = (f"{summary['neurocores']} neurocores" if "neurocores" in summary else f"{summary['pes']} PEs")
        rows.append((f"{target} (hwsim, bit-accurate)", run, f"{cores}, {summary['chips']} chip(s)"))
        x_check = work.x[:, :LM_CROSS_CHECK_STEPS] if work.kind == "lm" else work.x
        sample = x_check[:max(n for _, n in CROSS_CHECKS.values())]
        hw = backends.run_backend("hwsim", bundle_dir, sample)
        _cross_check(bundle_dir, target, sample, hw,
                     what=f"rows x {LM_CROSS_CHECK_STEPS} test tokens" if work.kind == "lm" else "test samples")
    metric = work.metric
    table = Table(title=f"{task}: float vs deployed ({size})")
    for col in ("run", metric, "activity sparsity", "effective / dense MACs per step", "resources"):
        table.add_column(col)
    for name, r, res in rows:
        value = f"{r['accuracy']:.2%}" if metric == "accuracy" else f"{r['perplexity']:.2f}"
        table.add_row(name, value, f"{r['sparsity']:.1%}", f"{r['macs_effective']:,.0f} / {r['macs_dense']:,} "
                      f"({r['macs_effective'] / r['macs_dense']:.1%})", res)
    console.print(table)


def cross_check(bundle_dir: Path, target: str, x, hwsim_run, samples: int | None = None) -> dict:
    """Run the real component (Lava's simulator, the C PE program under QEMU) on the first ``samples``
    inputs (default ``CROSS_CHECKS``) and compare its raw output integers with hwsim's, bit for bit."""
    backend, default = CROSS_CHECKS[target]
    samples = default if samples is None else samples
    try:
        # evaluation's runner: a QEMU batch whose packet stream overflows the harness runs in halves
        real = evaluation.runner(bundle_dir, backend, bundle.load_graph(bundle_dir).output_mode).run(x[:samples], None)
    except UserError as e:  # e.g. QEMU not installed on a machine where setup could not use apt
        return {"backend": backend, "samples": int(len(x[:samples])), "equal": None, "skipped": str(e)}
    equal = bool(np.array_equal(real.int_sequence, hwsim_run.int_sequence[:samples]))
    return {"backend": backend, "samples": int(len(x[:samples])), "equal": equal, "skipped": None}


def _cross_check(bundle_dir: Path, target: str, x, hwsim_run, samples: int | None = None, what: str = "test samples"):
    """:func:`cross_check`, printed; a disagreement ends the demo."""
    check = cross_check(bundle_dir, target, x, hwsim_run, samples)
    backend = check["backend"]
    if check["skipped"]:
        console.print(f"{target}: {backend} cross-check skipped: {check['skipped']}")
        return check
    console.print(f"{target}: hwsim == {backend} on {check['samples']} {what}, bit for bit: "
                  f"{'yes' if check['equal'] else 'NO'}")
    if not check["equal"]:
        raise SystemExit(f"{target}: hwsim and {backend} disagree")
    return check


def _resource_line(hardware: dict) -> str:
    """Cores and the per-step estimates the emulator measured (the labels say which are proxies)."""
    return "; ".join(f"{k} {v:,.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in hardware.items() if k != "chip" and "packets" not in k and "messages" not in k)


if __name__ == "__main__":
    sys.exit(main())
