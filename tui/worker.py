"""`meqg train` in a worker process, watched by the monitor (`meqg train --monitor`, `meqg app`).

The worker writes RUN/train.log; the monitor follows RUN/telemetry.jsonl as it follows any
run. Stopping is Ctrl-C's: SIGINT, the step finishes, a checkpoint is written. A worker
whose watcher dies stops by itself (`MONITOR_PID`), so no training is left running alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from meqg_mlx.runs import RunDir

MONITOR_PID = "MEQG_MONITOR_PID"  # the worker stops and checkpoints once this process is gone


class TrainingWorker:
    def __init__(self, run: str | Path, arguments: list[str]):
        """Start `meqg train --run RUN ARGUMENTS...` with its output appended to RUN/train.log."""
        self.run = Path(run)
        self.run.mkdir(parents=True, exist_ok=True)
        self.log_path = RunDir(self.run).train_log
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [sys.executable, "-m", "meqg_cli.main", "train", "--run", str(self.run), *arguments]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the watcher, which decides
                env={**os.environ, MONITOR_PID: str(os.getpid())},
            )

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def interrupt(self) -> None:
        """Ask it to stop after the current step, with a checkpoint (returns at once)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def stop(self, grace: float = 300.0) -> None:
        """Interrupt it and wait for its checkpoint; past `grace` seconds it is killed."""
        self.interrupt()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_lines(self) -> list[str]:
        """The non-empty lines it has written to train.log so far."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]

    def failure(self) -> str | None:
        """Its one-line error once it has exited with one, else None."""
        if not self.process.poll():
            return None
        lines = self.log_lines()
        return lines[-1].removeprefix("error: ") if lines else f"training exited with {self.process.returncode}"


def watcher_gone():
    """Inside a worker: a check that the process watching it has died (then it stops and checkpoints,
    as on q), so a killed monitor never leaves training running on its own."""
    parent = os.environ.pop(MONITOR_PID, None)
    if parent is None:
        return lambda: False
    return lambda: os.getppid() != int(parent)
