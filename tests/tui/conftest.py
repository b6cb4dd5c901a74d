"""Telemetry recorded from a real `meqg train` run (tests/data/telemetry/gated-run.yaml on the small
test store, learning rate 0.5 so the gate rejects some steps, regime bands low enough to see recovery)."""

import json
import shutil
from pathlib import Path

import pytest

RECORDED = Path(__file__).parents[1] / "data" / "telemetry" / "gated-run.jsonl"


@pytest.fixture
def recorded_records() -> list[dict]:
    return [json.loads(line) for line in RECORDED.read_text().splitlines()]


@pytest.fixture
def recorded_run(tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(RECORDED, run / "telemetry.jsonl")
    return run


def shown(widget) -> str:
    """The plain text a Static-like widget shows (a rich renderable, such as a table, rendered 200 wide)."""
    import io

    from rich.console import Console
    from rich.text import Text

    content = widget.content
    if isinstance(content, (Text, str)):
        return content.plain if isinstance(content, Text) else content
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(content)
    return console.file.getvalue()


def drawn(app, *texts: str) -> bool:
    """Whether the frame the app would draw now (what a snapshot compares) shows every one of `texts`."""
    import html
    import re

    frame = html.unescape(re.sub(r"<[^>]+>", "", app.export_screenshot())).replace("\xa0", " ")
    return all(text in frame for text in texts)


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "the app did not get there in time"):
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await pilot.pause(0.05)


@pytest.fixture
def workbench_dir(small_store_path, tmp_path, monkeypatch) -> Path:
    """A working directory holding `store` (the small store), `runs/` and nothing else, entered, so
    that the app shows the same relative paths on every machine."""
    (tmp_path / "store").symlink_to(small_store_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def workbench(first: str = "store", store: str = "store"):
    from meqg_tui.workbench import WorkbenchApp

    return WorkbenchApp(Path(store), Path("runs"), Path("."), first)
