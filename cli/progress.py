"""A rich progress bar fed by the library's `progress(stage, done, total)` callbacks."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
out = Console(highlight=False)


@contextmanager
def progress_bar():
    columns = (
        TextColumn("{task.description:<42}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # Bars are for people: in a pipe or CI log only the summary and errors are printed.
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def short(text: str, width: int = 70) -> str:
    """`text` on one line, cut to `width` characters (with ...) for a table or a list."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
