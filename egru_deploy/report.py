"""Terminal tables (rich) and report files."""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from egru_deploy.errors import UserError

console = Console(highlight=False, markup=False)  # model names and [backend] tags are plain text


def print_summary(summary: dict, title: str = "model") -> None:
    inp = summary["input"]
    kind = " tokens" if inp["tokens"] else (f" features = frames {'x'.join(map(str, inp['frame']))}"
                                             if inp.get("frame") else " features")
    table = Table(title=f"{title}  (input {inp['size']}{kind}, "
                        f"output mode {summary['output_mode']}, profile {summary['profile'] or 'float'})")
    for col in ("#", "layer", "in", "out", "runs on", "parameters", "threshold min/mean/max", "notes"):
        table.add_column(col)
    egrus = [e["index"] for e in summary["layers"] if e["type"] == "EGRU"]
    for entry in summary["layers"]:
        thr = entry.get("thr")
        thr_text = f"{thr['min']:.3f} / {thr['mean']:.3f} / {thr['max']:.3f}" if thr else ""
        notes = []
        if entry.get("use_trace"):
            notes.append("trace to next layer" if entry["index"] != egrus[-1] else "trace onward (not events)")
        if entry.get("zoneout"):
            notes.append(f"zoneout {entry['zoneout']:g}")
        following = summary["layers"][entry["index"] + 1:]
        if entry["type"] == "Linear" and entry["index"] > egrus[-1] and following and not entry.get("relu"):
            notes.append("no activation")
        if entry.get("pool"):
            notes.append(f"{entry['pool']} pool")
        if entry.get("window"):
            w = entry["window"]
            notes.append(f"{w['kernel']}x{w['kernel']}, stride {w['stride']}, padding {w['padding']}")
        if entry.get("relu"):
            notes.append("ReLU")
        table.add_row(str(entry["index"]), entry["type"], _shape_text(entry["in"]), _shape_text(entry["out"]),
                      entry.get("placement", ""), f"{entry['parameters']:,}", thr_text, ", ".join(notes))
    console.print(table)
    console.print(f"total parameters: {summary['parameters']:,}")
    for note in summary.get("notes", []):
        console.print(f"note: {note}")
    host = [str(e["index"]) for e in summary["layers"] if e.get("placement") == "host"]
    if host:
        console.print(f"layers {', '.join(host)} (the front-end) run on the host when compiled for a chip, "
                      f"with the integer specification's arithmetic; the chip receives their output as input events")


def _shape_text(size) -> str:
    return "x".join(map(str, size)) if isinstance(size, list) else str(size)


def layer_placement(graph) -> list[dict]:
    """Per layer of a compiled graph: where it runs ("host" front-end or "chip")."""
    return [{"layer": i, "type": type(layer).__name__, "placement": where}
            for i, (layer, where) in enumerate(zip(graph.layers, graph.placement()))]


def add_layer_placement(resources: dict, graph) -> dict:
    """Say in a target's resource report (and its printed summary) which layers run where."""
    placement = layer_placement(graph)
    resources["layer_placement"] = placement
    summary = resources.setdefault("summary", {})
    for where in ("host", "chip"):
        summary[f"layers on the {where}"] = ", ".join(f"{p['type']} (layer {p['layer']})" for p in placement
                                                      if p["placement"] == where) or "none"
    macs = frontend_macs(graph)
    if macs:
        summary["host front-end MACs per step"] = macs
    return resources


def frontend_macs(graph) -> int:
    """Multiply-accumulates per step of the host's front-end (convolutions and Linear layers)."""
    from egru_deploy.ir import Conv2d, Linear

    shapes, macs = graph.shapes(), 0
    for layer, out in zip(graph.frontend, shapes[1:]):
        if isinstance(layer, Conv2d):
            macs += int(np.prod(out)) * int(np.prod(layer.weight.shape[1:]))
        elif isinstance(layer, Linear):
            macs += layer.weight.size
    return macs


def print_event_stats(result, backend: str) -> None:
    stats = result.event_stats()
    parts = [f"layer {i}: {layer['events_per_step']:.1f} events/step of {layer['hidden']} "
             f"({layer['sparsity']:.1%} zero)" for i, layer in enumerate(stats["layers"])]
    console.print(f"[{backend}] output {tuple(result.output.shape)}; activity sparsity "
                  f"{stats['sparsity']:.1%}; " + "; ".join(parts))
    if result.hardware:
        console.print(f"[{backend}] " + "; ".join(
            f"{k} {v:,.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.hardware.items()))
    sat = {k: v for k, v in result.saturations.items() if v}
    if sat:
        console.print(f"[{backend}] saturations: " + ", ".join(f"{k}={v}" for k, v in sat.items()))


# --------------------------------------------------------------------------- quantization report

REPORT_SAMPLES = 512  # enough for a stable metric, small enough to keep compile fast
REPORT_SAMPLE_STEPS = 100_000  # long sequences (smnist, T=784): fewer samples (127), at least 32
REPORT_STEPS = 500  # token rows (a language model's stream): the first steps of each row
SNR_WINDOWS = 8  # the per-layer event SNR is also reported over this many windows of steps


def task_metric(output: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of argmax predictions: per sample for (B, O) outputs, per step for (B, T, O) with y (B, T)."""
    pred = output.argmax(axis=-1)
    if pred.shape != y.shape:
        raise UserError(f"evaluation labels: shape {y.shape} does not match predictions {pred.shape}")
    return float(np.mean(pred == y))


def snr_db(signal: np.ndarray, approx: np.ndarray) -> float:
    noise = float(np.sum((signal.astype(np.float64) - approx) ** 2))
    power = float(np.sum(signal.astype(np.float64) ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(power, 1e-30) / noise)


def perplexity(output: np.ndarray, y: np.ndarray) -> float:
    """exp(mean cross-entropy) of next-token logits (B, T, V) against tokens y (B, T)."""
    from egru_deploy.evaluation import log_softmax_nll

    return float(np.exp(log_softmax_nll(output, y) / y.size))


def snr_over_time(signal: np.ndarray, approx: np.ndarray, windows: int = SNR_WINDOWS) -> list[dict]:
    """:func:`snr_db` of (B, T, ...) arrays in up to ``windows`` consecutive windows of steps."""
    steps = signal.shape[1]
    edges = np.unique(np.linspace(0, steps, min(windows, steps) + 1).round().astype(int))
    return [{"steps": [int(a), int(b)], "snr_db": snr_db(signal[:, a:b], approx[:, a:b])}
            for a, b in zip(edges[:-1], edges[1:])]


def _run_stats(result) -> dict:
    return {"sparsity": result.sparsity(), "layer_sparsity": result.layer_sparsity(),
            "events_per_step": [float(e.mean()) for e in result.events]}


def quantization_report(float_graph, quantized, calibration_x, eval_data=None, pruned=None) -> dict:
    """Float vs quantized: task metric, per-layer SNR, sparsity and events before/after, saturations."""
    from egru_deploy import reference
    from egru_deploy.profiles import get_profile
    from egru_deploy.prune import density

    profile = get_profile(quantized.profile)
    from egru_deploy.evaluation import spread

    x, y = (eval_data if eval_data is not None else (calibration_x, None))
    samples = REPORT_SAMPLES if float_graph.input.tokens or x.ndim < 2 else \
        min(REPORT_SAMPLES, max(32, REPORT_SAMPLE_STEPS // max(x.shape[1], 1)))
    idx = spread(len(x), samples)  # spread over the data: a split stored class by class stays mixed
    x, y = x[idx], (y[idx] if y is not None else None)
    if float_graph.input.tokens and x.ndim == 2 and x.shape[1] > REPORT_STEPS:
        x, y = x[:, :REPORT_STEPS], (y[:, :REPORT_STEPS] if y is not None else None)
    runs = {"float": reference.run_float(float_graph, x)}
    if pruned is not None:
        runs["pruned"] = reference.run_float(pruned, x)
    runs["quantized"] = reference.run_int(quantized, x)
    base = runs["pruned" if pruned is not None else "float"]
    q = runs["quantized"]
    event_scale = 2.0 ** -profile.event_frac
    report = {
        "profile": profile.describe(),
        "samples": int(len(x)),
        "metric": "accuracy" if y is not None else None,
        "runs": {name: _run_stats(r) for name, r in runs.items()},
        "steps": int(x.shape[1]),
        "layer_snr_db": [snr_db(f, qe * event_scale) for f, qe in zip(base.layer_events, q.layer_events)],
        "layer_snr_db_over_time": [snr_over_time(f, qe * event_scale)
                                   for f, qe in zip(base.layer_events, q.layer_events)],
        "output_snr_db": snr_db(base.output, q.output),
        "saturations": q.saturations,
        "saturation_total": int(sum(q.saturations.values())),
    }
    if y is not None:
        for name, r in runs.items():
            report["runs"][name]["accuracy"] = task_metric(r.output, y)
        report["accuracy_drop_pp"] = 100.0 * (report["runs"]["float"]["accuracy"]
                                              - report["runs"]["quantized"]["accuracy"])
        if y.ndim == 2 and q.output.ndim == 3:  # next-token labels: a language model
            report["metric"] = "perplexity"
            for name, r in runs.items():
                report["runs"][name]["perplexity"] = perplexity(r.output, y)
            report["perplexity_change_pct"] = 100.0 * (report["runs"]["quantized"]["perplexity"]
                                                       / report["runs"]["float"]["perplexity"] - 1.0)
    if pruned is not None:
        report["density"] = density(pruned)
    return report


def print_quantization_report(report: dict) -> None:
    lm = report.get("metric") == "perplexity"
    steps = f" x {report['steps']} steps" if lm else ""
    table = Table(title=f"quantization for {report['profile']['chip']} ({report['samples']} samples{steps})")
    for col in (("run", "perplexity", "next-token accuracy") if lm else ("run", "accuracy")) + (
            "activity sparsity", "events/step per layer"):
        table.add_column(col)
    for name, stats in report["runs"].items():
        acc = f"{stats['accuracy']:.2%}" if "accuracy" in stats else "n/a (no labels)"
        metric = (f"{stats['perplexity']:.2f}", acc) if lm else (acc,)
        table.add_row(name, *metric, f"{stats['sparsity']:.1%}",
                      ", ".join(f"{e:.1f}" for e in stats["events_per_step"]))
    console.print(table)
    snr = ", ".join(f"{s:.1f}" for s in report["layer_snr_db"])
    console.print(f"per-layer event SNR (dB): {snr}; output SNR {report['output_snr_db']:.1f} dB; "
                  f"saturations: {report['saturation_total']}")
    if "perplexity_change_pct" in report:
        console.print(f"perplexity change float -> quantized: {report['perplexity_change_pct']:+.2f} %")
    elif "accuracy_drop_pp" in report:
        console.print(f"accuracy drop float -> quantized: {report['accuracy_drop_pp']:.2f} pp")


def save_report_plot(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    names = list(runs)
    if report.get("metric") == "perplexity":
        values = [runs[n]["perplexity"] for n in names]
        bars = axes[0].bar(names, values, color="tab:blue")
        axes[0].bar_label(bars, fmt="%.1f")
        axes[0].set_ylabel("perplexity")
    elif report.get("metric"):
        accuracies = [100 * runs[n]["accuracy"] for n in names]
        bars = axes[0].bar(names, accuracies, color="tab:blue")
        axes[0].bar_label(bars, fmt="%.2f")
        axes[0].set_ylabel("accuracy (%)")
        axes[0].set_ylim(max(0, min(accuracies) - 5), 100)
    else:
        axes[0].text(0.5, 0.5, "no labelled evaluation data", ha="center", va="center")
    axes[0].set_title("task metric")
    layers = np.arange(len(report["layer_snr_db"]))
    layer_names = [f"layer {i}" for i in layers]
    bars = axes[1].bar(layers, [min(s, 99.0) for s in report["layer_snr_db"]], 0.6, color="tab:green")
    axes[1].bar_label(bars, fmt="%.1f")
    axes[1].set_xticks(layers, layer_names)
    axes[1].set_ylabel("event SNR (dB)")
    axes[1].set_title("quantized vs float events")
    width = 0.8 / len(names)
    for k, n in enumerate(names):
        axes[2].bar(layers + (k - (len(names) - 1) / 2) * width, [100 * s for s in runs[n]["layer_sparsity"]],
                    width, label=n)
    axes[2].set_xticks(layers, layer_names)
    axes[2].set_ylabel("activity sparsity (%)")
    axes[2].set_ylim(0, 100)
    axes[2].legend(loc="lower right")
    axes[2].set_title("zero events")
    fig.suptitle(f"{report['profile']['chip']}: float vs quantized")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_resources(resources: dict) -> None:
    """Print a target's resource report: its ``summary`` entries as a two-column table."""
    summary = resources.get("summary", resources)
    table = Table(title=f"resources on {resources.get('chip', 'target')}")
    table.add_column("quantity")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        table.add_row(key.replace("_", " "), f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"
                      if isinstance(value, int) else str(value))
    console.print(table)
    if resources.get("processes"):
        print_processes(resources["processes"])


def print_processes(processes: list[dict]) -> None:
    """The deployed network, process by process: Lava class, where it runs, and its size."""
    table = Table(title="deployed processes")
    for column in ("process", "Lava class", "placement", "count"):
        table.add_column(column)
    for p in processes:
        table.add_row(p["name"], p["lava_class"], p["placement"], f"{p['count']:,}")
    console.print(table)


def mac_counts(graph, x: np.ndarray, result) -> dict:
    """Multiply-accumulates per time step: dense (every weight every step) vs effective (event-driven:
    only non-zero inputs and events fan out), averaged over samples and steps.

    A layer fed with a trace (dense by nature) is counted as dense.  ``result`` is a RunResult of
    ``graph`` on ``x`` (float or integer: only which values are non-zero matters).
    """
    from egru_deploy.ir import EGRU, Embedding, Linear

    dense, effective = 0, 0.0
    active_inputs = None  # mean number of non-zero values entering the next layer per step
    egru_index = 0
    start = 0
    if graph.input.frame is not None:  # a frame front-end runs dense (on the host): every MAC counts
        dense, start = frontend_macs(graph), len(graph.frontend)
        effective = float(dense)
        active_inputs = float(graph.egru_layers[0].in_size)
    for layer in graph.layers[start:]:
        if isinstance(layer, Embedding):
            active_inputs = float(layer.out_size)  # an embedding vector is dense
            continue
        if active_inputs is None:
            active_inputs = float(np.count_nonzero(x)) / (x.shape[0] * x.shape[1])
        if isinstance(layer, EGRU):
            fan_out = 3 * layer.hidden
            events = float(result.layer_events[egru_index].astype(bool).sum(axis=-1).mean())
            dense += (layer.in_size + layer.hidden) * fan_out
            effective += (active_inputs + events) * fan_out
            active_inputs = float(layer.hidden) if layer.use_trace else events
            egru_index += 1
        elif isinstance(layer, Linear):
            dense += layer.in_size * layer.out_size
            effective += active_inputs * layer.out_size
            active_inputs = float(layer.out_size)
    return {"dense": int(dense), "effective": effective}
