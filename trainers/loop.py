"""The one training loop: any model whose ``forward(x, targets, ...)`` returns
``(output, loss)``, with callbacks for progress, early stopping and metric logging.

The loop knows nothing about fraud or recommendations; a model's trainer builds the
tensors, the config and a validation function, and calls ``fit``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn

from trainers.configs import LoopConfig


class Callback:
    """Hooks into ``fit``; every method is optional."""

    def on_start(self, total_steps: int) -> None: ...
    def on_step(self, step: int, loss: float) -> None: ...
    def on_epoch(self, epoch: int, train_loss: float, metrics: dict[str, float]) -> None: ...
    def on_end(self, best_epoch: int, best: dict[str, float]) -> None: ...


class RichProgress(Callback):
    """A progress bar over every step, with the latest loss and validation metrics (plain
    lines when stdout is not a terminal: ``shopstream.progress``)."""

    def __init__(self, description: str = "training"):
        self.description = description
        self._progress = self._task = None

    def on_start(self, total_steps: int) -> None:
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

        from shopstream.progress import progress_bar

        self._progress = progress_bar(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                                      TextColumn("{task.fields[status]}"))
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total_steps, status="")

    def on_step(self, step: int, loss: float) -> None:
        self._progress.update(self._task, advance=1)

    def on_epoch(self, epoch: int, train_loss: float, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        self._progress.update(self._task, status=f"epoch {epoch} loss={train_loss:.4f} {shown}")

    def on_end(self, best_epoch: int, best: dict[str, float]) -> None:
        self._progress.stop()


class History(Callback):
    """Keeps every epoch's loss and metrics (for logging to the registry)."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_epoch(self, epoch: int, train_loss: float, metrics: dict[str, float]) -> None:
        self.epochs.append({"epoch": epoch, "train_loss": train_loss, **metrics})


def fit(model: nn.Module, tensors: Sequence[torch.Tensor], validate: Callable[[nn.Module], dict[str, float]],
        config: LoopConfig, *, monitor: str, callbacks: Sequence[Callback] = ()) -> dict[str, float]:
    """Train ``model`` on ``tensors`` (passed to ``forward`` in this order, batch-sliced).

    After every epoch ``validate(model)`` returns metrics; the weights of the epoch with
    the highest ``metrics[monitor]`` are kept, and training stops after ``patience``
    epochs without improvement. Returns the best epoch's metrics.
    """
    torch.manual_seed(config.seed)
    n = len(tensors[0])
    steps_per_epoch = math.ceil(n / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=config.epochs * steps_per_epoch)
    for callback in callbacks:
        callback.on_start(config.epochs * steps_per_epoch)
    best, best_epoch, best_state, stale = {monitor: -math.inf}, 0, None, 0
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(n)
        total = 0.0
        for start in range(0, n, config.batch_size):
            index = order[start:start + config.batch_size]
            _, loss = model(*(t[index] for t in tensors))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            total += loss.item() * len(index)
            for callback in callbacks:
                callback.on_step(step, loss.item())
        model.eval()
        metrics = validate(model)
        for callback in callbacks:
            callback.on_epoch(epoch, total / n, metrics)
        if metrics[monitor] > best[monitor]:
            best, best_epoch, stale = metrics, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    for callback in callbacks:
        callback.on_end(best_epoch, best)
    return {**best, "best_epoch": best_epoch}


def fit_epochs(model: nn.Module, tensors: Sequence[torch.Tensor], config: LoopConfig, epochs: int,
               callbacks: Sequence[Callback] = ()) -> None:
    """Train for exactly ``epochs`` epochs with nothing held out, keeping the last weights.

    This is the refit after model selection: ``fit`` chose the number of epochs on
    held-out days, and the model is trained again on every day, those included.
    """
    counter = iter(range(1, epochs + 1))
    fit(model, tensors, lambda m: {"epoch": next(counter)}, replace(config, epochs=epochs, patience=epochs),
        monitor="epoch", callbacks=callbacks)
