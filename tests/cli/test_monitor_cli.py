"""`meqg monitor` and `meqg train --monitor` as a user runs them, in a real pseudo-terminal."""

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

from ..conftest import cli, meqg
from ..processes import end_group, wait_until
from .test_train_cli import train_args


def test_bad_run_dir_and_replay_speed_are_one_line_errors(tmp_path):
    missing = cli("monitor", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr == f"error: no run directory {tmp_path / 'nope'}\n"
    zero = cli("monitor", str(tmp_path), "--replay", "0")
    assert zero.returncode == 2 and zero.stderr.count("\n") == 1 and "--replay" in zero.stderr
    nothing = cli("monitor", str(tmp_path), "--replay", "5")
    assert nothing.returncode == 2 and "nothing to replay" in nothing.stderr
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    (elsewhere / "cat.jpg").write_bytes(b"\xff\xd8")
    stray = meqg("monitor", str(elsewhere), timeout=60)  # waited for telemetry forever before
    assert stray.returncode == 2 and stray.stderr == f"error: {elsewhere} is not a run directory " + (
        "(no run.json, config.yaml or telemetry.jsonl in it)\n"
    )


def test_the_monitor_never_loads_training_code():
    """Only the library's bottom layer (errors, telemetry, run layout): no mlx, no torch, no training."""
    code = (
        "import json, sys, meqg_tui.monitor, meqg_cli.main; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'meqg_mlx', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert set(loaded) <= {
        "meqg_mlx",
        "meqg_mlx.atomic",
        "meqg_mlx.backend",
        "meqg_mlx.errors",
        "meqg_mlx.paths",
        "meqg_mlx.runs",
        "meqg_mlx.telemetry",
    }, loaded


class Terminal:
    """A child process (its own session) on a 160x48 pseudo-terminal; everything it prints is collected.

    Use it as a context manager: on the way out the child's process group is ended.
    """

    def __init__(self, args: list[str]):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        exe = str(Path(sys.executable).with_name("meqg"))
        self.process = subprocess.Popen(
            [exe, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            start_new_session=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        os.close(slave)
        self.master, self.output = master, bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def shows(self, text: str) -> bool:
        return text.encode() in self.output

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc) -> None:
        end_group(self.process)
        self.reader.join(5)
        os.close(self.master)


def records(run: Path) -> list[dict]:
    path = run / "telemetry.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steps_written(run: Path) -> int:
    return sum(record["event"] == "step" for record in records(run))


def run_ended(run: Path) -> dict | None:
    """The `run` record a worker writes last, once it has stopped."""
    ended = [record for record in records(run) if record["event"] == "run"]
    return ended[-1] if ended else None


def monitor_training(run: Path, store: Path, tmp_path: Path) -> Terminal:
    return Terminal([*train_args(store, run, 500, tmp_path), "--monitor"])


def test_train_with_monitor_trains_in_a_worker_and_q_stops_it_with_a_checkpoint(small_store_path, tmp_path):
    run = tmp_path / "run"
    try:
        with monitor_training(run, small_store_path, tmp_path) as term:
            wait_until(lambda: steps_written(run) >= 3, 180, "three training steps", 0.2, term.process)
            wait_until(
                lambda: term.shows("meqg monitor") and term.shows("running"),
                60,
                "the monitor showing the running worker",
                0.2,
                term.process,
            )
            term.press("q")
            assert term.wait(timeout=120) == 0
            shown = term.output.decode(errors="replace")
    finally:  # a started worker stops by itself once its monitor is gone: wait for that
        if records(run):
            wait_until(lambda: run_ended(run), 120, "the worker's end record")
    end = run_ended(run)
    assert end["status"] == "interrupted" and 3 <= end["step"] < 500
    assert f"stopped at step {end['step']}" in shown
    assert (run / "checkpoints" / f"step-{end['step']:07d}" / "model.safetensors").is_file()


def test_a_killed_monitor_stops_its_worker_with_a_checkpoint(small_store_path, tmp_path):
    run = tmp_path / "run"
    with monitor_training(run, small_store_path, tmp_path) as term:
        wait_until(lambda: steps_written(run) >= 2, 180, "two training steps", 0.2, term.process)
        os.killpg(term.process.pid, 9)  # no q, no cleanup: the monitor just dies
        term.wait(timeout=30)
    end = wait_until(lambda: run_ended(run), 120, "the orphaned worker stopping")
    assert end["status"] == "interrupted" and end["step"] < 500
    assert (run / "checkpoints" / f"step-{end['step']:07d}" / "model.safetensors").is_file()


def test_train_with_monitor_reports_a_worker_that_fails_at_once(tmp_path):
    with Terminal(
        ["train", "--store", str(tmp_path / "no-store"), "--run", str(tmp_path / "run"), "--monitor"]
    ) as term:
        assert term.wait(timeout=120) == 2
        assert term.shows("error: no concept store")
