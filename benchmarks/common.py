"""Shared helpers for the benchmark scripts: the workload, the timer, the table and the JSON file.

benchmarks/ is not a package; a script imports this module with
``sys.path.insert(0, str(Path(__file__).parent)); import common``.

Throughput is reported two ways, always labelled:
  steps/s         sequence steps per second (one step advances every sample in the batch);
  sample-steps/s  steps/s x batch (neuron updates per second / hidden size).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from egru_deploy.model import EGRUNetwork

RESULTS_DIR = Path(__file__).parent / "results"
# Wide enough for the tables when output goes to a file or CI log (rich would wrap them at 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


BENCHMARK_THRESHOLD = 0.2


def benchmark_network(hidden: int, input_size: int, layers: int = 1, seed: int = 0) -> EGRUNetwork:
    """The benchmark workload: a random EGRU stack without readout, in eval mode.

    With the model's default initialisation a wide layer barely spikes (98-100 % zero events),
    which would flatter event-driven emulators. Input weights scaled to a fan-in bound of
    1/sqrt(inputs) and thresholds of 0.2 give ~83 % zero events on :func:`benchmark_inputs` at
    H = 256 and 1024, close to the trained digits model (84 %).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = EGRUNetwork(input_size, [hidden] * layers).eval()
    with torch.no_grad():
        for rnn in net.rnns:
            rnn.kernel.mul_((rnn.hidden_size / rnn.input_size) ** 0.5)
            rnn.thr.fill_(BENCHMARK_THRESHOLD)
    return net


def benchmark_inputs(batch: int, steps: int, input_size: int, seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 inputs (B, T, I), the range of the digits task's pixels."""
    return np.random.default_rng(seed).random((batch, steps, input_size), dtype=np.float32)


@contextmanager
def limit_threads(threads: int):
    """Run torch and the BLAS under NumPy on ``threads`` threads, so every implementation gets the same CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


def seconds_per_call(fn: Callable[[], object], min_seconds: float = 0.3, repeats: int = 3) -> float:
    """Best-of-``repeats`` time of one ``fn()`` call; each repeat loops until ``min_seconds`` pass."""
    fn()  # warm-up: first-call allocations and lazy initialisation are not throughput
    best = float("inf")
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def throughput(fn: Callable[[], object], steps: int, batch: int, **timing) -> dict:
    """Time ``fn`` (one run of ``steps`` sequence steps on ``batch`` samples) and return rates."""
    seconds = seconds_per_call(fn, **timing)
    return {"seconds_per_run": seconds, "steps_per_s": steps / seconds, "sample_steps_per_s": steps * batch / seconds}


def environment(threads: int) -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "machine": platform.machine(), "processor": _cpu_model(), "cpus": os.cpu_count(), "threads": threads}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


RATE_COLUMNS = (("steps/s", "steps_per_s"), ("sample-steps/s", "sample_steps_per_s"))
RATE_UNITS = {"seconds_per_run": "seconds for one run of `steps` steps on `batch` samples",
              "steps_per_s": "sequence steps per second (a step advances the whole batch)",
              "sample_steps_per_s": "steps per second x batch"}


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """``columns``: (header, key) pairs; rates from :data:`RATE_COLUMNS` are appended to every table."""
    table = Table(title=title)
    for header, _ in (*columns, *RATE_COLUMNS):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(_format(row[key]) for _, key in (*columns, *RATE_COLUMNS)))
    console.print(table)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return str(value)


def write_json(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` through a temporary file, then rename."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    tmp.replace(path)
    return path
