"""The ``egru-deploy`` command line: thin click wrappers over ``egru_deploy.api`` (inspect, emulate,
compile, evaluate, export) and the training functions.

Every user error (``egru_deploy.errors.UserError``) ends the command with exit code 2 and one line.
"""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings

import click
import numpy as np

from egru_deploy import __version__
from egru_deploy.errors import UserError


def _fail(message: str) -> None:
    click.echo("error: " + " ".join(message.split("\n")).replace("\r", " "), err=True)
    sys.exit(2)


def user_errors(fn):
    """Turn a UserError into ``error: <message>`` on stderr and exit code 2.

    The message stays one line whatever a file put into it (keys, names); library warnings are
    not printed, so stderr holds that line only.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(*args, **kwargs)
        except UserError as e:
            _fail(str(e))
        except OSError as e:  # the file system refused (name too long, disk full, ...): still one line
            name = str(e.filename) if e.filename is not None else ""
            _fail(f"{name if len(name) <= 80 else name[:77] + '...'}: {e.strerror or e}")

    return wrapper


def _read_layout(layout: str | None) -> dict | None:
    """``--layout``: JSON text (starting with ``{``) or the name of a JSON file."""
    from egru_deploy.api import read_layout

    return read_layout(layout, "--layout")


def _zoneout(value: float | None) -> float | None:
    """``--zoneout P``: EvNN's zoneout probability for every EGRU layer, in [0, 1)."""
    if value is None:
        return None
    from egru_deploy.converters.evnn import check_zoneout

    return check_zoneout(value, "--zoneout")


ZONEOUT_HELP = ("EvNN's zoneout probability p for every EGRU layer (not in a state_dict; EvNN blends "
                "c' = p*c + (1-p)*c' in eval too). Overrides the file and --layout.")
LAYOUT_HELP = "Checkpoint layout fields (JSON object or file): key mapping, model, use_trace, zoneout ...; see README."


def _load_input(path: str) -> np.ndarray:
    from egru_deploy.safe_io import load_npy

    return load_npy(path, UserError)


@contextlib.contextmanager
def _naming(option: str, path: str):
    """Errors about data that does not fit the model name the option and file it came from."""
    from egru_deploy.reference import InputError

    try:
        yield
    except InputError as e:
        raise UserError(f"{option} {path}: {e.detail}") from None


@click.group()
@click.version_option(__version__, prog_name="egru-deploy")
def main():
    """Deploy trained EGRU networks onto neuromorphic chips (Loihi 2, SpiNNaker2)."""


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--layout", help=LAYOUT_HELP)
@click.option("--zoneout", type=float, default=None, help=ZONEOUT_HELP)
@user_errors
def inspect(model, as_json, layout, zoneout):
    """Show layers, sizes, parameters and threshold statistics of MODEL."""
    from egru_deploy import api
    from egru_deploy.report import print_summary

    summary = api.inspect(model, _read_layout(layout), _zoneout(zoneout))
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        print_summary(summary, title=str(model))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(), help="Input .npy: float (B,T,I)/(T,I) or tokens (B,T)/(T,).")
@click.option("--output", "output_path", required=True, type=click.Path(), help="Output .npy (float32).")
@click.option("--backend", default="float", show_default=True,
              help="float | reference | hwsim | lava | qemu (the last four need a compiled bundle).")
@click.option("--output-mode", type=click.Choice(["sequence", "last", "mean"]), default=None,
              help="Override the model's output mode.")
@click.option("--layout", help=LAYOUT_HELP)
@click.option("--zoneout", type=float, default=None, help=ZONEOUT_HELP + " Float backend only.")
@user_errors
def emulate(model, input_path, output_path, backend, output_mode, layout, zoneout):
    """Run MODEL (checkpoint, model file or bundle) on an input array and save the output."""
    from egru_deploy import api
    from egru_deploy.report import print_event_stats

    x = _load_input(input_path)
    layout, zoneout = _read_layout(layout), _zoneout(zoneout)
    with _naming("--input", input_path):
        result = api.emulate(model, x, backend, layout=layout, zoneout=zoneout, output_mode=output_mode)
    _save_output(result.output, output_path)
    print_event_stats(result, backend)


def _save_output(output: np.ndarray, output_path: str) -> None:
    from egru_deploy.files import atomic_output

    with atomic_output(output_path) as tmp, open(tmp, "wb") as f:
        np.save(f, output.astype(np.float32))


TASK_HELP = "digits, or a workload of egru_deploy/tasks.py: fmnist-rows, smnist, brown-lm."


def _train_options(task: str, hidden, layers, epochs, max_batches) -> dict:
    """The task's recipe (``train_tasks.RECIPES``) with the options given on the command line."""
    from egru_deploy import tasks
    from egru_deploy.train_tasks import RECIPES

    tasks.get_task(task)  # unknown task: one line naming the known ones
    options = dict(RECIPES.get(task, {}))
    given = {"hidden": hidden, "layers": layers, "epochs": epochs, "max_batches": max_batches}
    options.update({k: v for k, v in given.items() if v is not None})
    missing = [f"--{k}" for k in ("hidden", "layers", "epochs") if k not in options]
    if missing:
        raise UserError(f"train --task {task}: no recipe for this task; give {', '.join(missing)}")
    for key in ("hidden", "layers", "epochs", "max_batches"):
        if key in options and options[key] is not None and options[key] < 1:
            raise UserError(f"--{key.replace('_', '-')}: expected >= 1, got {options[key]}")
    return options


@main.command()
@click.option("--task", default="digits", show_default=True, help=TASK_HELP)
@click.option("-o", "--output", "output_path", required=True, type=click.Path(), help="Checkpoint to write (.pt).")
@click.option("--hidden", type=int, default=None, help="Units per EGRU layer (default: the task's recipe; digits 128).")
@click.option("--layers", type=int, default=None, help="Number of EGRU layers (default: the recipe; digits 1).")
@click.option("--epochs", type=int, default=None, help="Epochs (default: the recipe; digits 60).")
@click.option("--max-batches", type=int, default=None, help="Batches per epoch (quick runs; workloads only).")
@click.option("--seed", default=0, show_default=True)
@user_errors
def train(task, output_path, hidden, layers, epochs, max_batches, seed):
    """Train an EGRU on a real data set and save it (EvNN state_dict layout).

    digits: the bundled scikit-learn digits. fmnist-rows, smnist, brown-lm: the recipes of
    egru_deploy/train_tasks.py on the data of scripts/setup_data.sh (a missing package is one line).
    """
    if task == "digits":
        from egru_deploy.train import train_digits

        if max_batches is not None:
            raise UserError("--max-batches: applies to the workloads (fmnist-rows, smnist, brown-lm), not digits")
        summary = train_digits(output_path, hidden=128 if hidden is None else hidden,
                               layers=1 if layers is None else layers, epochs=60 if epochs is None else epochs,
                               seed=seed)
        click.echo(f"test accuracy {summary['test_accuracy']:.2%}  activity sparsity "
                   f"{summary['test_sparsity']:.2%}  -> {output_path}")
        return
    options = _train_options(task, hidden, layers, epochs, max_batches)
    from egru_deploy.train_tasks import train_task

    metrics = train_task(task, "egru", output_path, seed=seed, **options)
    if "evaluation_error" in metrics:
        raise UserError(f"train --task {task}: checkpoint written to {output_path}, but its test evaluation "
                        f"failed: {metrics['evaluation_error']}")
    metric = (f"test accuracy {metrics['test_accuracy']:.2%}" if metrics["metric"] == "accuracy" else
              f"test perplexity {metrics['test_perplexity']:.2f}")
    click.echo(f"{metric}  activity sparsity {metrics['test_sparsity']:.2%}  MACs/step effective / dense "
               f"{metrics['macs_effective']:,.0f} / {metrics['macs_dense']:,}  -> {output_path}")


@main.command(name="compile")
@click.argument("model", type=click.Path())
@click.option("--target", required=True, type=click.Choice(["loihi2", "spinnaker2"]))
@click.option("-o", "--out-dir", "out_dir", required=True, type=click.Path(),
              help="Bundle directory to write (atomically; keeps every stage under stages/).")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it already holds a bundle (never any other folder).")
@click.option("--calibration", required=True,
              help="Calibration inputs: FILE.npz with 'x' (or a .npy), digits-train, or a task split "
                   "<data>-<train|valid|test> (data fmnist, smnist or brown, e.g. fmnist-train), cut to 1,024 "
                   "samples spread over it (smnist 63; brown: the first 500 tokens of each of its 10 rows).")
@click.option("--eval", "eval_set", default=None,
              help="Labelled data for the report: FILE.npz with 'x' and 'y', digits-test, or a task split "
                   "(e.g. fmnist-test, brown-test); the report uses 512 samples spread over it (smnist 127; "
                   "brown: the first 500 steps of each row).")
@click.option("--prune", "prune_amount", default=0.0, show_default=True, type=float,
              help="Magnitude-prune this fraction of every weight matrix before quantization.")
@click.option("--output-mode", type=click.Choice(["sequence", "last", "mean"]), default=None,
              help="Set the model's output mode (a checkpoint does not store it).")
@click.option("--layout", help=LAYOUT_HELP)
@click.option("--zoneout", type=float, default=None, help=ZONEOUT_HELP)
@user_errors
def compile_cmd(model, target, out_dir, force, calibration, eval_set, prune_amount, output_mode, layout, zoneout):
    """Quantize MODEL for TARGET's integer profile and write a deployable bundle with its report."""
    from egru_deploy import api
    from egru_deploy.report import print_quantization_report, print_resources

    graph = api.load(model, _read_layout(layout), _zoneout(zoneout), output_mode)
    calib_x, _ = api.dataset(calibration, graph, False, "--calibration")
    eval_data = api.dataset(eval_set, graph, True, "--eval")
    report = api.compile(graph, target, out_dir, calib_x, eval_data=eval_data, prune=prune_amount, force=force,
                         source=model, inputs=api.named_files(model, calibration, eval_set, layout))
    print_quantization_report(report)
    print_resources(report["resources"])
    click.echo(f"bundle written to {out_dir} (report.json, report.png, stages/) in {report['compile_seconds']:.2f} s")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--task", required=True, help=TASK_HELP)
@click.option("--split", default="test", show_default=True, help="train | valid | test (digits: train | test).")
@click.option("--backend", default="float", show_default=True,
              help="float | reference | hwsim | lava | qemu (the last four need a compiled bundle).")
@click.option("--limit", type=int, default=None,
              help="Evaluate N samples spread evenly over the split (language model: the first N steps of each "
                   "of its 10 rows).")
@click.option("--chunk", type=int, default=None,
              help="Language model: steps per chunk of the stream (default 70, EvNN's bptt).")
@click.option("--carry/--no-carry", default=None,
              help="Language model: carry each layer's last events y from chunk to chunk (c reset, EvNN's "
                   "evaluation). Default: carry on float/reference/hwsim; lava and qemu cannot, so there "
                   "every chunk starts from zero state.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--layout", help=LAYOUT_HELP)
@click.option("--zoneout", type=float, default=None, help=ZONEOUT_HELP + " Checkpoints only.")
@user_errors
def evaluate(model, task, split, backend, limit, chunk, carry, as_json, layout, zoneout):
    """Score MODEL (checkpoint, model file or bundle) on TASK: accuracy or perplexity, activity sparsity, MACs."""
    from egru_deploy import api
    from egru_deploy.evaluation import check_limit

    check_limit(limit)
    result = api.evaluate(model, task, backend, split=split, limit=limit, chunk=chunk, carry=carry,
                          layout=_read_layout(layout), zoneout=_zoneout(zoneout), progress=sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    _print_evaluation(result)


def _print_evaluation(r: dict) -> None:
    if r["metric"] == "accuracy":
        size = (f"{r['samples']:,} of {r['split_samples']:,} samples" + (" (spread over the split)"
                if r["samples"] < r["split_samples"] else ""))
        metric = f"accuracy {r['accuracy']:.2%}"
    else:
        size = (f"{r['tokens']:,} tokens ({r['rows']} rows x {r['steps_per_row']:,} of "
                f"{r['split_steps_per_row']:,} steps)")
        metric = f"perplexity {r['perplexity']:.2f} (cross-entropy {r['cross_entropy']:.4f} nats)"
    click.echo(f"{r['task']} {r['split']}, {size}, backend {r['backend']}: {metric}")
    layers = ", ".join(f"{s:.1%}" for s in r["layer_sparsity"])
    click.echo(f"activity sparsity {r['sparsity']:.1%} (per layer {layers}); MACs per step effective / dense "
                  f"{r['macs_effective']:,.0f} / {r['macs_dense']:,} ({r['macs_effective'] / r['macs_dense']:.1%})"
                  f"; {r['seconds']:.1f} s")
    if r["metric"] == "perplexity":
        click.echo(f"evaluated as a {r['scheme']}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["nir", "onnx", "evnn"]),
              help="nir: float graph with the EGRUCell extension node; onnx: float or quantized (bundle) model; "
                   "evnn: a float model as a state_dict for EvNN (evnn_pytorch.EGRU and its benchmark models).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(), help="File to write.")
@click.option("--output-mode", type=click.Choice(["sequence", "last", "mean"]), default=None,
              help="Set the model's output mode (a checkpoint does not store it).")
@click.option("--layout", help=LAYOUT_HELP)
@click.option("--zoneout", type=float, default=None, help=ZONEOUT_HELP)
@click.option("--evnn-model", type=click.Choice(["auto", "lm", "dvs", "smnist", "stack", "layer"]), default="auto",
              show_default=True, help="--format evnn: the EvNN model whose state_dict keys to write (auto: the one "
                                      "the model came from, else chosen from the graph).")
@user_errors
def export(model, fmt, output_path, output_mode, layout, zoneout, evnn_model):
    """Write MODEL (checkpoint, model file or bundle) as a NIR, ONNX or EvNN file."""
    from egru_deploy import api

    info = api.export(model, fmt, output_path, layout=_read_layout(layout), zoneout=_zoneout(zoneout),
                      output_mode=output_mode, evnn_model=evnn_model)
    if fmt == "evnn":
        click.echo(f"evnn state_dict ({info['description']}, {info['keys']} keys) written to {output_path}")
        for note in info["notes"]:
            click.echo(f"note: {note}")
        if info["layout"]:
            click.echo(f"to load it back: --layout '{json.dumps(info['layout'])}'")
        return
    kind = f"quantized for {info['profile']}" if info["quantized"] else "float"
    click.echo(f"{fmt} model ({kind}) written to {output_path}")


def _run_spinnaker2_board(bundle_dir, x, board, output_mode):
    from egru_deploy.targets.spinnaker2.run import run_on_board

    return run_on_board(bundle_dir, x, board, output_mode)


def _run_loihi2_board(bundle_dir, x, board, output_mode):
    from egru_deploy.targets.loihi2.run import run_on_board

    return run_on_board(bundle_dir, x, board, output_mode)


BOARD_RUNNERS = {  # target -> fn(bundle_dir, x, board_address, output_mode) -> RunResult
    "spinnaker2": _run_spinnaker2_board,
    "loihi2": _run_loihi2_board,
}


@main.command(name="run")
@click.argument("bundle_dir", type=click.Path())
@click.option("--target", required=True, type=click.Choice(sorted(BOARD_RUNNERS)))
@click.option("--board", required=True, help="Address (IP) of the board.")
@click.option("--input", "input_path", required=True, type=click.Path(), help="Input .npy, as for emulate.")
@click.option("--output", "output_path", required=True, type=click.Path(), help="Output .npy (float32).")
@click.option("--output-mode", type=click.Choice(["sequence", "last", "mean"]), default=None,
              help="Override the model's output mode.")
@user_errors
def run_cmd(bundle_dir, target, board, input_path, output_path, output_mode):
    """Run a compiled BUNDLE on a board of TARGET."""
    from egru_deploy import bundle

    bundle.read_manifest(bundle_dir, expect_target=target)
    with _naming("--input", input_path):
        result = BOARD_RUNNERS[target](bundle_dir, _load_input(input_path), board, output_mode)
    _save_output(result.output, output_path)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--profile", required=True, type=click.Choice(["loihi2", "spinnaker2"]),
              help="Integer profile whose arithmetic is put into the training loop.")
@click.option("--task", default="digits", show_default=True,
              help="digits, fmnist-rows or smnist (the language model has no QAT loop yet).")
@click.option("--prune", "prune_amount", default=0.0, show_default=True, type=float,
              help="Magnitude-prune this fraction of every weight matrix first; pruned weights stay zero.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--batch-size", default=32, show_default=True)
@click.option("--train-samples", type=int, default=None,
              help="Fine-tune on this many training samples spread over the split (default: all).")
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", "output_path", required=True, type=click.Path(),
              help="Checkpoint to write (.pt, EvNN layout, weights on the profile's grid).")
@user_errors
def finetune(model, profile, task, prune_amount, epochs, batch_size, train_samples, learning_rate, seed, output_path):
    """Quantization-aware fine-tuning of MODEL for PROFILE (fake-quant weights/events, chip gates)."""
    from egru_deploy.qat import finetune as run_finetune

    result = run_finetune(model, profile, epochs, output_path, prune=prune_amount, seed=seed, task=task,
                          learning_rate=learning_rate, batch_size=batch_size, train_samples=train_samples,
                          progress=True)
    click.echo(f"test accuracy: float {result['float']['accuracy']:.2%}  {profile} PTQ "
               f"{result['ptq']['accuracy']:.2%}  {profile} after QAT {result['qat']['accuracy']:.2%}"
               + (f"  (pruned {prune_amount:.0%})" if prune_amount else "") + f"  -> {output_path}")
