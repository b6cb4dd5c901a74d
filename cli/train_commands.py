"""`meqg train`: a gated training run with a live progress line; Ctrl-C checkpoints and exits."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from meqg_mlx.errors import ConfigError, MeqgError
from .progress import console, out


class Engine(str, Enum):
    mlx = "mlx"
    torch = "torch"


def register(app: typer.Typer) -> None:
    app.command()(train)


def train(
    run: Annotated[Path, typer.Option("--run", help="Run directory: config, telemetry.jsonl, checkpoints.")],
    store: Annotated[
        Optional[str], typer.Option("--store", help="Concept store to train on (a new run needs one).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="Train until this step [default: config train.steps].")] = None,
    config_file: Annotated[
        Optional[Path], typer.Option("--config", help="YAML config overlaid on the defaults.")
    ] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Plain AdamW steps, no Null-Stability Gate.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run from its latest checkpoint.")] = False,
    engine: Annotated[
        Engine, typer.Option(help="mlx: this process; torch: the PyTorch twin under torchrun + DDP (gloo/NCCL).")
    ] = Engine.mlx,
    nproc: Annotated[int, typer.Option(min=1, max=1024, help="With --engine torch: processes on this machine.")] = 1,
    monitor: Annotated[
        bool,
        typer.Option(
            "--monitor",
            help="Train in a worker process and watch it in the monitor "
            "(q stops training after the current step, with a checkpoint).",
        ),
    ] = False,
) -> None:
    """Train a VMM on concept sequences from a store, every step through the Null-Stability Gate."""
    # what a worker process gets of this call: `meqg train` under the monitor, the torchrun script
    forwarded = ["--run", str(run)]
    for flag, value in (("--store", store), ("--steps", steps), ("--config", config_file)):
        forwarded += [flag, str(value)] if value is not None else []
    forwarded += ["--no-gate"] * no_gate + ["--resume"] * resume
    if engine is Engine.torch:
        if monitor:
            raise MeqgError(f"--monitor trains with the mlx engine; watch a torch run with: meqg monitor {run}")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        train_with_torchrun(command + ["-m", "meqg_converters.train", "--", *forwarded])
        return
    if nproc != 1:
        raise ConfigError("--nproc needs --engine torch (the mlx engine trains in this process)")
    if monitor:
        train_with_monitor(forwarded[2:], run)
        return
    from meqg_mlx.config import load_config
    from meqg_mlx.train.run import TrainingRun
    from meqg_tui.worker import watcher_gone

    if resume and (config_file or no_gate):
        raise ConfigError("a resumed run keeps the config saved in its run dir: drop --config/--no-gate")
    config = None if resume else load_config(config_file)
    if no_gate:
        config.train.gate = False
    if console.is_terminal:
        console.print(f"[bold]meqg train[/]: preparing {'resume of ' if resume else ''}run {run}")
    training = TrainingRun(run, store, config, resume, steps)
    summary = train_with_progress(training, watcher_gone())
    print_summary(summary)


def train_with_torchrun(command: list[str]) -> None:
    """Run torchrun with rank 0's progress passed through; a failure is the first rank's error, in one line.

    Ctrl-C reaches torchrun too (the same process group): rank 0 stops after its step with a checkpoint
    and says so, and torchrun's own exit status for the signal is no error of ours.
    """
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    failure, interrupted = TorchrunFailure(), []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        for line in process.stderr:
            failure.read(line)
        process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    if failure.errors or (process.returncode and not interrupted):
        raise MeqgError(failure.message(process.returncode))


class TorchrunFailure:
    """What torchrun's stderr says went wrong: the ranks' `error:` lines, else the exception the rank
    torchrun names as the root cause raised (the last line of its traceback, which torch prints with a
    `[rankN]: ` prefix) or the signal that ended it, else the first exception any process raised."""

    RANK_PREFIX = re.compile(r"^\[rank(\d+)\]: ?")
    FATAL = ("terminate called", "Fatal Python error", "libc++abi")  # what a process says as it aborts

    def __init__(self):
        self.errors: list[str] = []
        self.exceptions: dict[str, str] = {}  # rank ("" for none given) -> its first exception
        self.root: dict[str, str] = {}
        self.fatal: dict[str, str] = {}  # rank ("" for unprefixed lines) -> its first abort message
        self._traceback: str | None = None  # the rank whose traceback is being read
        self._in_root = False
        self._last = ""

    def read(self, line: str) -> None:
        line = line.rstrip()
        prefix = self.RANK_PREFIX.match(line)
        rank = prefix.group(1) if prefix else ""
        text = line[prefix.end() :] if prefix else line
        if text.startswith("error: "):
            self.errors.append(text.removeprefix("error: "))
        elif text.startswith(self.FATAL):
            self.fatal.setdefault(rank, text)
        elif text == "Traceback (most recent call last):":
            self._traceback = rank
        elif self._traceback == rank and text and not text[0].isspace():
            self._traceback = None
            if not text.startswith("torch.distributed.elastic."):  # torchrun's own report of the failure
                self.exceptions.setdefault(rank, text)
        elif text.startswith("Root Cause"):
            self._in_root = True
        elif self._in_root and text.startswith("  ") and ":" in text:
            key, _, value = text.partition(":")
            self.root.setdefault(key.strip(), " ".join(value.split()))
        if text.strip():
            self._last = text

    def message(self, returncode: int) -> str:
        if self.errors:
            return self.errors[0]
        rank = self.root.get("rank", "").split(" ")[0]
        if rank:  # torchrun's report: "exitcode  : -9 (pid: 123)  (SIGKILL)"
            status = self.root.get("exitcode", "?")
            signal_name = re.search(r"\((SIG\w+)\)", status)
            status = signal_name.group(1) if signal_name else f"exit code {status.split(' ')[0]}"
            exception = self.exceptions.get(rank) or self.fatal.get(rank) or self.fatal.get("")
            return f"rank {rank} failed ({status})" + (f": {exception[:300]}" if exception else "")
        if self.exceptions:
            return f"torchrun failed: {next(iter(self.exceptions.values()))[:300]}"
        return f"torchrun exited with {returncode}: {self._last.strip()[:300]}"


def train_with_monitor(arguments: list[str], run: Path) -> None:
    """`meqg train --run RUN ARGUMENTS` in a worker process writing RUN/train.log, the monitor in front."""
    from meqg_tui.monitor import MonitorApp
    from meqg_tui.worker import TrainingWorker

    worker = TrainingWorker(run, arguments)
    try:
        MonitorApp(run, worker=worker).run()
    finally:
        if worker.poll() is None:
            console.print("stopping training after the current step (checkpointing) ...")
            worker.stop()
    if worker.returncode:
        raise MeqgError(worker.failure())
    for line in worker.log_lines():
        if not line.startswith("step "):
            out.print(line, soft_wrap=True, markup=False)


def train_with_progress(training, also_stop=lambda: False):
    """Run `training` with a progress line; the first Ctrl-C (or `also_stop()`) stops after the current step."""
    from meqg_mlx.train.report import progress_line

    total = training.config.train.steps
    columns = (TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn())
    every = max(total // 10, 1)
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar, stop_on_sigint() as stopped:
        task = bar.add_task("starting", total=total, completed=training.trainer.state.step)
        training.trainer.progress = lambda stage, done, of: bar.update(task, description=f"{stage} {done}/{of}")

        def on_step(record: dict) -> None:
            line = progress_line(record)
            bar.update(task, completed=record["step"], description=line)
            if not console.is_terminal and (record["step"] % every == 0 or record["step"] == total):
                out.print(f"step {record['step']}/{total} {line}", soft_wrap=True)

        return training.train(on_step, lambda: stopped() or also_stop())


@contextmanager
def stop_on_sigint():
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        console.print("stopping after this step (Ctrl-C again to abort without a checkpoint)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def print_summary(summary) -> None:
    """The run's closing summary and validation tables (`train.report`, as the torch engine prints them)."""
    from meqg_mlx.train.report import summary_lines

    for line in summary_lines(summary):
        out.print(line, soft_wrap=True, markup=False, highlight=False)
