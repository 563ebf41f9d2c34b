"""Progress of long loops: rich bars in a terminal."""

from __future__ import annotations


class progress_bar:
    """A rich progress bar over epochs (silent when console is None)."""

    def __init__(self, console, title: str, total: int, unit: str = "epochs") -> None:
        self.console, self.title, self.total, self.unit = console, title, total, unit

    def __enter__(self):
        if self.console is None:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.title, total=self.total, info="")

        def tick(epoch: int, h: dict) -> None:
            info = (
                f"loss {h['loss']:.3f} val bacc {h.get('val_bacc', 0):.3f}"
                if h
                else f"{epoch}/{self.total} {self.unit}"
            )
            self.bar.update(self.task, completed=epoch, info=info)

        return tick

    def __exit__(self, *exc) -> None:
        if self.console is not None:
            self.bar.stop()
