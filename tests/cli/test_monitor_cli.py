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
import time
from pathlib import Path

from ..conftest import meqg
from .test_train_cli import small_yaml


def test_bad_run_dir_and_replay_speed_are_one_line_errors(tmp_path):
    missing = meqg("monitor", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr == f"error: no run directory {tmp_path / 'nope'}\n"
    zero = meqg("monitor", str(tmp_path), "--replay", "0")
    assert zero.returncode == 2 and zero.stderr.count("\n") == 1 and "--replay" in zero.stderr
    nothing = meqg("monitor", str(tmp_path), "--replay", "5")
    assert nothing.returncode == 2 and "nothing to replay" in nothing.stderr


def test_the_monitor_never_loads_training_code():
    code = ("import sys, meqg_tui.app, meqg_cli.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlx', 'meqg_mlx', 'torch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


class Terminal:
    """A child process on a 160x48 pseudo-terminal; everything it prints is collected."""

    def __init__(self, args: list[str]):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        exe = str(Path(sys.executable).with_name("meqg"))
        self.process = subprocess.Popen([exe, *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                        env={**os.environ, "TERM": "xterm-256color"})
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

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self.reader.join(5)
        os.close(self.master)
        return code


def steps_written(run: Path) -> int:
    path = run / "telemetry.jsonl"
    return sum('"event":"step"' in line for line in path.read_text().splitlines()) if path.exists() else 0


def test_train_with_monitor_trains_in_a_worker_and_q_stops_it_with_a_checkpoint(small_store_path, tmp_path):
    run = tmp_path / "run"
    term = Terminal(["train", "--store", str(small_store_path), "--run", str(run), "--steps", "500",
                     "--config", str(small_yaml(tmp_path)), "--monitor"])
    deadline = time.monotonic() + 180
    while steps_written(run) < 3:
        assert term.process.poll() is None, term.output.decode(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "no training steps within 180 s"
        time.sleep(0.5)
    time.sleep(1.0)
    assert b"meqg monitor" in term.output and b"running" in term.output
    term.press("q")
    assert term.wait(timeout=120) == 0
    shown = term.output.decode(errors="replace")
    records = [json.loads(line) for line in (run / "telemetry.jsonl").read_text().splitlines()]
    end = records[-1]
    assert end["event"] == "run" and end["status"] == "interrupted" and 3 <= end["step"] < 500
    assert f"stopped at step {end['step']}" in shown
    assert (run / "checkpoints" / f"step-{end['step']:07d}" / "model.safetensors").is_file()


def test_train_with_monitor_reports_a_worker_that_fails_at_once(tmp_path):
    term = Terminal(["train", "--store", str(tmp_path / "no-store"), "--run", str(tmp_path / "run"), "--monitor"])
    assert term.wait(timeout=120) == 2
    assert "error: no concept store" in term.output.decode(errors="replace")
