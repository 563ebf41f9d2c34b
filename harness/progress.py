"""Progress of long loops: rich bars in a terminal; where the output is not a terminal (a Slurm
log, a pipe, CI) one plain line per epoch instead, which a log file keeps (rich's bars would leave
only blank lines there)."""

from __future__ import annotations

import time
from typing import Any


def is_terminal(console) -> bool:
    """True when rich draws live bars on this console (an interactive terminal)."""
    return bool(getattr(console, "is_terminal", False))


def _say(console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def epoch_line(
    config: str, fold: int, folds: int, epoch: int, epochs: int, row: dict, seconds: float
) -> str:
    """One epoch as one log line, e.g.
    ``uni:lora fold 2/5 epoch 3/100 loss 0.4123 val_bacc 0.7342 lr 5.00e-05 12.3 s``
    (loss: mean training BCE; val_bacc: validation balanced accuracy; lr: after the scheduler's
    step; seconds: wall time of the epoch, validation included)."""
    parts = [f"{config} fold {fold}/{folds} epoch {epoch}/{epochs}", f"loss {row['loss']:.4f}"]
    if "val_bacc" in row:
        parts.append(f"val_bacc {row['val_bacc']:.4f}")
    if "lr" in row:
        parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{seconds:.1f} s")
    return " ".join(parts)


class progress_bar:
    """A rich progress bar over `total` units (silent when console is None; outside a terminal,
    one line when the loop ends). The context value is `tick(done, info_row)` or None."""

    def __init__(self, console, title: str, total: int, unit: str = "epochs") -> None:
        self.console, self.title, self.total, self.unit = console, title, total, unit
        self.bar = None

    def __enter__(self):
        if self.console is None:
            return None
        self.t0, self.done = time.perf_counter(), 0
        if not is_terminal(self.console):

            def count(done: int, h: dict) -> None:
                self.done = done

            return count
        self.bar = _rich_bar(self.console)
        self.task = self.bar.add_task(self.title, total=self.total, info="")

        def tick(done: int, h: dict) -> None:
            info = (
                f"loss {h['loss']:.3f} val bacc {h.get('val_bacc', 0):.3f}"
                if h
                else f"{done}/{self.total} {self.unit}"
            )
            self.bar.update(self.task, completed=done, info=info)

        return tick

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.console is not None and exc[0] is None:
            seconds = time.perf_counter() - self.t0
            _say(
                self.console, f"{self.title}: {self.done}/{self.total} {self.unit}, {seconds:.1f} s"
            )


def _rich_bar(console):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    bar.start()
    return bar


class FitProgress:
    """What `trainer.fit` reports to: `self(epoch, history_row)` after each epoch and
    `self.batch(epoch, done, total)` after each training step."""

    def __init__(self, console, config: str, fold: int, folds: int, epochs: int) -> None:
        self.console, self.config, self.fold, self.folds = console, config, fold, folds
        self.epochs = epochs
        self.t_epoch = time.perf_counter()
        self.bar: Any = None
        if is_terminal(console):
            self.bar = _rich_bar(console)
            self.task = self.bar.add_task(
                f"{config} fold {fold}/{folds}", total=epochs, info="epoch 1 starting"
            )

    def batch(self, epoch: int, done: int, total: int) -> None:
        """Within an epoch: the bar moves by batches, so a slow first epoch shows progress."""
        if self.bar is not None:
            self.bar.update(
                self.task,
                completed=epoch - 1 + done / max(total, 1),
                info=f"epoch {epoch}/{self.epochs} batch {done}/{total}",
            )

    def __call__(self, epoch: int, row: dict) -> None:
        seconds = time.perf_counter() - self.t_epoch
        self.t_epoch = time.perf_counter()
        if self.bar is not None:
            info = f"epoch {epoch}/{self.epochs} loss {row['loss']:.3f}"
            info += f" val bacc {row.get('val_bacc', float('nan')):.3f}"
            self.bar.update(self.task, completed=epoch, info=info)
        else:
            line = epoch_line(self.config, self.fold, self.folds, epoch, self.epochs, row, seconds)
            _say(self.console, line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class fit_progress:
    """Context manager around one fold's training: a FitProgress, or None without a console."""

    def __init__(self, console, config: str, fold: int, folds: int, epochs: int) -> None:
        self.args = (console, config, fold, folds, epochs)
        self.progress: FitProgress | None = None

    def __enter__(self) -> FitProgress | None:
        if self.args[0] is None:
            return None
        self.progress = FitProgress(*self.args)
        return self.progress

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.close()
