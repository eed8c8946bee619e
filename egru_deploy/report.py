"""Terminal tables (rich) and report files."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


def print_summary(summary: dict, title: str = "model") -> None:
    table = Table(title=f"{title}  (input {summary['input']['size']}"
                        f"{' tokens' if summary['input']['tokens'] else ' features'}, "
                        f"output mode {summary['output_mode']}, profile {summary['profile'] or 'float'})")
    for col in ("#", "layer", "in", "out", "parameters", "threshold min/mean/max", "notes"):
        table.add_column(col)
    for entry in summary["layers"]:
        thr = entry.get("thr")
        thr_text = f"{thr['min']:.3f} / {thr['mean']:.3f} / {thr['max']:.3f}" if thr else ""
        notes = []
        if entry.get("use_trace"):
            notes.append("trace to next layer")
        if entry.get("relu"):
            notes.append("ReLU")
        table.add_row(str(entry["index"]), entry["type"], str(entry["in"]), str(entry["out"]),
                      f"{entry['parameters']:,}", thr_text, ", ".join(notes))
    console.print(table)
    console.print(f"total parameters: {summary['parameters']:,}")


def print_event_stats(result, backend: str) -> None:
    stats = result.event_stats()
    parts = [f"layer {i}: {layer['events_per_step']:.1f} events/step of {layer['hidden']} "
             f"({layer['sparsity']:.1%} zero)" for i, layer in enumerate(stats["layers"])]
    console.print(f"[{backend}] output {tuple(result.output.shape)}; activity sparsity "
                  f"{stats['sparsity']:.1%}; " + "; ".join(parts))
    sat = {k: v for k, v in result.saturations.items() if v}
    if sat:
        console.print(f"[{backend}] saturations: " + ", ".join(f"{k}={v}" for k, v in sat.items()))
