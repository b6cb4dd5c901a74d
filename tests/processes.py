"""Child processes in tests: each starts its own process group, and the whole group is ended
whatever the test's outcome, so a failed test never leaves training or a server running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.1,
    process: subprocess.Popen | None = None,
):
    """Poll `condition` until it is truthy (returned) or `timeout` s pass (fails, naming `what`).

    With `process`, a child that exits first fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode} first")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def end_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after `grace` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived their leader
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def child(args: list[str], **popen) -> Iterator[subprocess.Popen]:
    """`subprocess.Popen(args)` in a new session; its group is ended on the way out."""
    process = subprocess.Popen(args, start_new_session=True, **popen)
    try:
        yield process
    finally:
        end_group(process)


def run(args: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True, text=True)`, ending the child's whole group on timeout."""
    with child(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as process:
        out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(args, process.returncode, out, err)
