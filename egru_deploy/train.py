"""Train an EGRU classifier on the digits task (``egru-deploy train --task digits``).

The classifier reads the last step (``data.DIGITS_OUTPUT_MODE``). Adam with a cosine learning-rate
decay minimises cross-entropy + ``activity_weight`` * activity penalty. The penalty follows EvNN's
activity regularisation of the event outputs: for each layer the mean event magnitude ``mean(|y|)``
over units, steps and samples, summed over layers. Its gradient flows through the surrogate derivative
of the spike, so it lowers the event rate (raising activity sparsity) as well as event sizes.
Weight 2.0 took 128 units from 62 % to 84 % zero events at the same 97.6 % test accuracy.

Everything is seeded: the split is fixed (``data.SPLIT_SEED``), ``seed`` drives initialisation and
batch order, and training runs on one thread, so the same arguments give the same state_dict.
The reported test metrics come from the float NumPy reference on the converted IR graph
(``data.evaluate``): the numbers a user of the checkpoint will see.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from egru_deploy.converters.torch import from_torch
from egru_deploy.data import DIGITS_CLASSES, DIGITS_OUTPUT_MODE, digits_split, evaluate, save_split
from egru_deploy.errors import UserError
from egru_deploy.files import atomic_output
from egru_deploy.model import EGRUNetwork


def activity_penalty(events: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean event magnitude |y| (differentiable through the spike surrogate)."""
    return torch.stack([y.abs().mean() for y in events]).sum()


def train_digits(output_path: str | os.PathLike, hidden: int = 128, layers: int = 1, epochs: int = 60,
                 seed: int = 0, *, activity_weight: float = 2.0, learning_rate: float = 3e-3,
                 batch_size: int = 32, layout: str = "rows", progress: bool = True) -> dict:
    """Train, save the state_dict (EvNN layout) to ``output_path`` and return test metrics."""
    if hidden < 1 or layers < 1 or epochs < 1:
        raise UserError(f"train: hidden, layers and epochs must be >= 1, got {hidden}, {layers}, {epochs}")
    x_train, y_train, x_test, y_test = digits_split(layout=layout)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest and bitwise reproducible
    try:
        with torch.random.fork_rng():  # seed locally; leave the caller's RNG state untouched
            torch.manual_seed(seed)
            model = EGRUNetwork(input_size=x_train.shape[2], hidden_sizes=[hidden] * layers,
                                output_size=DIGITS_CLASSES, output_mode=DIGITS_OUTPUT_MODE)
            start = time.perf_counter()
            _fit(model, torch.from_numpy(x_train), torch.from_numpy(y_train), epochs, activity_weight,
                 learning_rate, batch_size, progress)
            train_seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    _save_state_dict(model, Path(output_path))
    graph = from_torch(model)
    test = evaluate(graph, x_test, y_test)
    return {
        "test_accuracy": test["accuracy"],
        "test_sparsity": test["sparsity"],
        "test_layer_sparsity": test["layer_sparsity"],
        "train_accuracy": evaluate(graph, x_train, y_train)["accuracy"],
        "train_seconds": train_seconds,
        "parameters": graph.summary()["parameters"],
        "config": {"hidden": hidden, "layers": layers, "epochs": epochs, "seed": seed, "layout": layout,
                   "output_mode": DIGITS_OUTPUT_MODE, "activity_weight": activity_weight,
                   "learning_rate": learning_rate, "batch_size": batch_size},
    }


def _fit(model: EGRUNetwork, x: torch.Tensor, y: torch.Tensor, epochs: int, activity_weight: float,
         learning_rate: float, batch_size: int, progress: bool,
         epoch_end: Callable[[int], None] | None = None) -> None:
    """Adam + cosine decay over all batches; ``epoch_end(epoch)`` (0-based), if given, runs after each epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    batches_per_epoch = -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * batches_per_epoch)
    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                   TimeElapsedColumn(), disable=not progress, transient=False)
    model.train()
    with bar:
        task = bar.add_task("epochs", total=epochs, stats="")
        for epoch in range(epochs):
            order = torch.randperm(len(x))
            correct, loss_sum, rate_sum = 0, 0.0, 0.0
            for batch in order.split(batch_size):
                logits, events = model(x[batch])
                penalty = activity_penalty(events)
                loss = torch.nn.functional.cross_entropy(logits, y[batch]) + activity_weight * penalty
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                correct += int((logits.argmax(1) == y[batch]).sum())
                loss_sum += loss.item() * len(batch)
                rate_sum += float(torch.stack([(e != 0).float().mean() for e in events]).mean()) * len(batch)
            bar.update(task, advance=1, stats=f"loss {loss_sum / len(x):.3f}  train acc {correct / len(x):.1%}  "
                                              f"event rate {rate_sum / len(x):.1%}")
            if epoch_end is not None:
                epoch_end(epoch)
    model.eval()


def _save_state_dict(model: EGRUNetwork, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: never a half-written checkpoint."""
    with atomic_output(path) as tmp:
        torch.save(model.state_dict(), tmp)


def ship_examples(directory: str | os.PathLike = "examples", **train_options) -> dict:
    """Write the bundled example: ``digits_egru.pt``, ``digits_test.npz`` and ``digits_train.npz``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = digits_split()
    save_split(directory / "digits_test.npz", x_test, y_test)
    save_split(directory / "digits_train.npz", x_train, y_train)  # calibration data for quantization
    return train_digits(directory / "digits_egru.pt", **train_options)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(ship_examples(*sys.argv[1:2]), indent=1))
