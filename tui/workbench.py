"""`meqg app`: the workbench as one Textual app: store, runs (with the monitor), episode, eval.

Each screen is a mode (F1-F4 switch). Library work (opening a store, a search, loading a
run, an episode) runs on one library thread, awaited by the screens' workers, so the UI
never waits on it; training runs in worker processes that the app stops (with a
checkpoint) when it quits.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from . import SCREENS
from .episode_screen import EpisodeScreen
from .eval_screen import EvalScreen
from .runs_screen import RunsScreen
from .store_screen import StoreScreen
from .worker import TrainingWorker


class WorkbenchApp(App):
    CSS_PATH = "workbench.tcss"
    TITLE = "meqg"
    MODES = {"store": StoreScreen, "runs": RunsScreen, "episode": EpisodeScreen, "eval": EvalScreen}
    DEFAULT_MODE = "store"
    BINDINGS = [
        *(Binding(f"f{i}", f"switch_mode('{name}')", name) for i, name in enumerate(SCREENS, 1)),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, store: Path, runs: Path, home: Path, first: str = "store"):
        super().__init__()
        self.store_path, self.runs_root, self.home = Path(store), Path(runs), Path(home)
        self.first = first
        self.library = ThreadPoolExecutor(1, thread_name_prefix="meqg-library")
        self.training: dict[Path, TrainingWorker] = {}  # training started here, by run directory

    def on_mount(self) -> None:
        self.sub_title = f"store {self.store_path}   runs {self.runs_root}"
        if self.first != self.DEFAULT_MODE:
            self.switch_mode(self.first)

    async def in_library(self, function, *args):
        """`function(*args)` on the library thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.library, partial(function, *args))

    def stop_training(self) -> None:
        """Stop every training process started here, each with a checkpoint."""
        for worker in self.training.values():
            worker.interrupt()
        for worker in self.training.values():
            worker.stop()

    async def action_quit(self) -> None:
        if any(worker.poll() is None for worker in self.training.values()):
            self.notify("stopping training (checkpointing) ...")
        await asyncio.get_running_loop().run_in_executor(None, self.stop_training)
        self.library.shutdown(wait=False, cancel_futures=True)
        self.exit()
