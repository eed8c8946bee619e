"""Loihi 2 gate approximations: ReLU-chord sigmoid/tanh options, their error, cost and digits accuracy.

The Loihi 2 circuit (``egru_deploy.circuit``) computes sigmoid and tanh as sums of ReLU chords
(``ChordGates(sigmoid_chords, tanh_chords)``; the profile's default is (8, 4); counts are even: the fit is symmetric).  For each option:
  * error: max and mean |approximation - exact| of sigmoid and tanh over every integer pre-activation
    of the state grid (F = 12 fractional bits) in [-16, 16] (131,073 points; the chords are flat
    beyond), with the circuit's own integer functions (sigmoid carried in the 8-bit gate format);
  * cost: neurons per EGRU unit and chip steps per input step, from the netlist and neurocore mapping
    (``targets.loihi2.netlist.build`` + ``mapping.assign(...).report()``) of the digits model
    (examples/digits_egru.pt, output mode "last") quantized with that option; also its neurocores;
  * accuracy on the held-out digits test split (examples/digits_test.npz, 450 samples) with the
    integer reference (``reference.run_int``): float; PTQ (``quantize`` with the training split
    examples/digits_train.npz as calibration); QAT (``qat.finetune_network`` with the option's gates
    in the loop, recipe "qat" of scripts/make_qat_examples.py: 5 epochs, lr 3e-4, no pruning, seed 0,
    then PTQ of the fine-tuned network as above).  Drops are float minus PTQ / QAT, in pp
    (one test sample is 0.22 pp).  A sanity check runs hwsim on 16 test samples of each PTQ graph and
    compares it with the reference (so the option really reached the netlist).
Prints a table and writes benchmarks/results/bench_loihi2_gates.json.

    python benchmarks/bench_loihi2_gates.py [--chords 2,2 4,4 ...] [--epochs 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402  (benchmarks/ is not a package)

import egru_deploy  # noqa: E402
from egru_deploy import data, profiles, reference  # noqa: E402
from egru_deploy.circuit import ChordGates  # noqa: E402
from egru_deploy.converters.torch import from_torch  # noqa: E402
from egru_deploy.hwsim import loihi2 as hwsim  # noqa: E402
from egru_deploy.qat import finetune_network  # noqa: E402
from egru_deploy.quantize import quantize  # noqa: E402
from egru_deploy.targets.loihi2.mapping import assign  # noqa: E402
from egru_deploy.targets.loihi2.netlist import build  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEFAULT_CHORDS = ["2,2", "4,4", "6,6", "8,8", "2,4", "4,2", "4,8", "8,4"]
QAT_RECIPE = {"epochs": 5, "learning_rate": 3e-4, "prune": 0.0, "seed": 0}  # scripts/make_qat_examples.py "qat"
GRID_RANGE = 16.0
SANITY_SAMPLES = 16


@contextmanager
def registered(profile: profiles.Profile):
    """Make ``profile`` the one registered under its name while the block runs, then restore the original.

    The integer reference, hwsim and the netlist look the profile up by the graph's profile name
    (``get_profile(graph.profile)``), so a variant of the loihi2 profile must stand in the registry
    (``egru_deploy.profiles.PROFILES``) for the duration of each measurement; ``finally`` puts the
    shipped profile back even if the measurement fails."""
    original = profiles.PROFILES[profile.name]
    profiles.PROFILES[profile.name] = profile
    try:
        yield profile
    finally:
        profiles.PROFILES[profile.name] = original


def approximation_error(gates: ChordGates, frac: int) -> dict:
    a = np.arange(-int(GRID_RANGE * 2 ** frac), int(GRID_RANGE * 2 ** frac) + 1, dtype=np.int64)
    v = a / 2.0 ** frac
    out = {}
    for name, approx, exact in (("sigmoid", gates.sigmoid(a, frac), 1 / (1 + np.exp(-v))),
                                ("tanh", gates.tanh(a, frac), np.tanh(v))):
        err = np.abs(approx / 2.0 ** frac - exact)
        out[f"{name}_max_abs_error"] = float(err.max())
        out[f"{name}_mean_abs_error"] = float(err.mean())
    out["grid_points"] = int(a.size)
    return out


def accuracy(graph, x: np.ndarray, y: np.ndarray) -> dict:
    result = reference.run_int(graph, x) if graph.quantized else reference.run_float(graph, x)
    return {"accuracy": float(np.mean(result.output.argmax(axis=1) == y)), "sparsity": result.sparsity(),
            "saturations": int(sum(result.saturations.values()))}


def measure(s: int, t: int, graph, x_train, y_train, x_test, y_test, float_acc: float, epochs: int) -> dict:
    gates = ChordGates(s, t)
    profile = replace(profiles.LOIHI2, activation=gates)
    row = {"sigmoid_chords": s, "tanh_chords": t, "chords": f"({s}, {t})", "relus_per_unit": gates.relus_per_unit,
           **approximation_error(gates, profile.state_frac)}
    with registered(profile):
        started = time.perf_counter()
        ptq = quantize(graph, profile, x_train)
        report = assign(build(ptq)).report()
        row.update({"neurons_per_egru_unit": report["neurons_per_egru_unit"],
                    "chip_steps_per_input_step": report["chip_steps_per_input_step"],
                    "neurocores": report["neurocores"], "neurons": report["neurons"]})
        ptq_result = accuracy(ptq, x_test, y_test)
        sanity = x_test[:SANITY_SAMPLES]
        hw, ref = hwsim.emulate(ptq, sanity), reference.run_int(ptq, sanity)
        row["hwsim_equals_reference"] = bool(np.array_equal(hw.output, ref.output) and all(
            np.array_equal(a, b) for a, b in zip(hw.layer_events, ref.layer_events)))
        row["ptq_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        net = finetune_network(graph, profile, x_train, y_train, epochs, QAT_RECIPE["prune"], 0, QAT_RECIPE["seed"],
                               learning_rate=QAT_RECIPE["learning_rate"])
        row["finetune_seconds"] = time.perf_counter() - started
        tuned = replace(from_torch(net), output_mode=graph.output_mode)
        qat_result = accuracy(quantize(tuned, profile, x_train), x_test, y_test)
    row.update({"float_accuracy": float_acc, "ptq": ptq_result, "qat": qat_result,
                "ptq_accuracy": ptq_result["accuracy"], "qat_accuracy": qat_result["accuracy"],
                "ptq_drop_pp": 100 * (float_acc - ptq_result["accuracy"]),
                "qat_drop_pp": 100 * (float_acc - qat_result["accuracy"])})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chords", nargs="+", default=DEFAULT_CHORDS,
                        help="options as SIGMOID,TANH chord counts (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=QAT_RECIPE["epochs"], help="QAT epochs (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    args = parser.parse_args(argv)
    options = [tuple(int(n) for n in c.split(",")) for c in args.chords]
    graph = egru_deploy.load(EXAMPLES / "digits_egru.pt", output_mode="last")
    x_train, y_train = data.load_split(EXAMPLES / "digits_train.npz")
    x_test, y_test = data.load_split(EXAMPLES / "digits_test.npz")
    started = time.perf_counter()
    rows = []
    with common.limit_threads(args.threads):
        float_result = accuracy(graph, x_test, y_test)
        for s, t in options:
            rows.append(measure(s, t, graph, x_train, y_train, x_test, y_test, float_result["accuracy"], args.epochs))
            r = rows[-1]
            common.console.print(f"{r['chords']}: PTQ {100 * r['ptq_accuracy']:.2f} %, QAT {100 * r['qat_accuracy']:.2f} % "
                                 f"(QAT {r['finetune_seconds']:.0f} s)")
    assert profiles.PROFILES["loihi2"] is profiles.LOIHI2  # the shipped profile is back in the registry

    table = common.Table(title=f"Loihi 2 ReLU-chord gates on digits (test {len(y_test)} samples; float "
                               f"{100 * float_result['accuracy']:.2f} %; QAT {args.epochs} epochs, lr "
                               f"{QAT_RECIPE['learning_rate']:g}); max |error| on the F = 12 grid over [-16, 16]; "
                               "steps/tok = chip steps per input step")
    for header in ("chords s,t", "neur/unit", "steps/tok", "sig err", "tanh err", "float %", "PTQ %", "QAT %",
                   "PTQ drop", "QAT drop", "hw==ref"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in rows:
        per_unit = ", ".join(f"{v:g}" for v in r["neurons_per_egru_unit"].values())
        table.add_row(f"{r['sigmoid_chords']},{r['tanh_chords']}", per_unit, str(r["chip_steps_per_input_step"]),
                      f"{r['sigmoid_max_abs_error']:.4f}", f"{r['tanh_max_abs_error']:.4f}",
                      f"{100 * r['float_accuracy']:.2f}", f"{100 * r['ptq_accuracy']:.2f}",
                      f"{100 * r['qat_accuracy']:.2f}", f"{r['ptq_drop_pp']:.2f} pp", f"{r['qat_drop_pp']:.2f} pp",
                      str(r["hwsim_equals_reference"]))
    common.console.print(table)
    path = common.write_json("bench_loihi2_gates", {
        "benchmark": "bench_loihi2_gates", "environment": common.environment(args.threads),
        "model": "examples/digits_egru.pt (output mode last)",
        "data": {"train": "examples/digits_train.npz", "test": "examples/digits_test.npz",
                 "train_samples": int(len(y_train)), "test_samples": int(len(y_test))},
        "qat_recipe": {**QAT_RECIPE, "epochs": args.epochs, "activity_weight": "finetune_network default (2.0)",
                       "batch_size": "finetune_network default (32)"},
        "error_grid": {"format_frac": profiles.LOIHI2.state_frac, "range": [-GRID_RANGE, GRID_RANGE],
                       "step": 2.0 ** -profiles.LOIHI2.state_frac},
        "default_option": [profiles.LOIHI2.activation.sigmoid_chords, profiles.LOIHI2.activation.tanh_chords],
        "float": float_result, "results": rows, "benchmark_seconds": time.perf_counter() - started})
    common.console.print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
