"""`make demo`: the main job on the bundled example model.

Inspects examples/digits_egru.pt, runs it on its held-out test split (accuracy, activity sparsity,
effective vs dense MACs per step), then for every target compiles it (calibrated on the training
split), emulates the bundle bit-accurately and prints accuracy, sparsity and resources beside the
float result.  Every artefact is kept under demo-out/.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from egru_deploy import backends, data, reference
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
CROSS_CHECKS = {"loihi2": ("lava", 4), "spinnaker2": ("qemu", 50)}


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
    return 0


def _cross_check(bundle_dir: Path, target: str, x, hwsim_run) -> None:
    """Run the real component (Lava's simulator, the C PE program under QEMU) and compare bit for bit."""
    backend, samples = CROSS_CHECKS[target]
    try:
        real = backends.run_backend(backend, bundle_dir, x[:samples])
    except UserError as e:  # e.g. QEMU not installed on a machine where setup could not use apt
        console.print(f"{target}: {backend} cross-check skipped: {e}")
        return
    equal = np.array_equal(real.int_sequence, hwsim_run.int_sequence[:samples])
    console.print(f"{target}: hwsim == {backend} on {samples} test samples, bit for bit: {'yes' if equal else 'NO'}")
    if not equal:
        raise SystemExit(f"{target}: hwsim and {backend} disagree")


def _resource_line(hardware: dict) -> str:
    """Cores and the per-step estimates the emulator measured (the labels say which are proxies)."""
    return "; ".join(f"{k} {v:,.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in hardware.items() if k != "chip" and "packets" not in k and "messages" not in k)


if __name__ == "__main__":
    sys.exit(main())
