"""What every screen of `meqg app` shares."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState


class WorkbenchScreen(Screen):
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Work that failed unexpectedly is a message and the app goes on (each screen turns the
        errors it expects, MeqgError, into its own message)."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title="that failed", severity="error", markup=False)
