"""How long work reports progress: `progress(stage, done, total)` callbacks the CLI draws as bars."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The callback for callers that show nothing."""
