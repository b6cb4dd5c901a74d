"""Run untrusted Python under operating-system isolation, with limits enforced while it runs.

Isolation comes from the OS (bubblewrap's namespaces and seccomp on Linux,
`sandbox-exec` on macOS), never from inside Python: audit hooks and the like are
switched off by the code they guard. Where neither is available, `run_python`
refuses unless the caller passes `allow_unsafe=True`, and the result says so.

Limits: CPU time, address space, file size and open files (rlimits set before the
user's code starts), disk (a size-capped tmpfs on Linux, a watched directory on
macOS), output (kept up to `max_output` while it is read; the run is killed past
OUTPUT_KILL_BYTES) and wall-clock time (the kill reaches every descendant).
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeqgError
from . import bubblewrap, seatbelt, seccomp

OUTPUT_KILL_BYTES = 8 * 2**20
_KILL_GRACE_S = 2.0
_DISK_POLL_S = 0.2

_LAUNCHER = r"""
import resource, sys
for _name, _value in {LIMITS}.items():
    resource.setrlimit(getattr(resource, _name), (_value, _value))
_code = open("main.py", encoding="utf-8").read()
sys.argv = ["main.py"]
del resource, _name, _value
exec(compile(_code, "main.py", "exec"), {"__name__": "__main__"})
"""


class SandboxUnavailable(MeqgError):
    """No operating-system isolation here, and the caller did not accept running without one."""


@dataclass(frozen=True)
class Isolation:
    kind: str  # "bubblewrap", "sandbox-exec" or "none"
    detail: str

    @property
    def safe(self) -> bool:
        return self.kind != "none"

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class SandboxResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    isolation: Isolation
    output_limited: bool = False
    disk_limited: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not (self.timed_out or self.output_limited or self.disk_limited)


@functools.cache
def isolation() -> Isolation:
    """The isolation `run_python` uses here, probed once per process by running a program in it."""
    reasons = []
    for kind, reason in (
        ("bubblewrap", bubblewrap.unavailable_reason()),
        ("sandbox-exec", seatbelt.unavailable_reason()),
    ):
        if reason is not None:
            reasons.append(reason)
            continue
        candidate = Isolation(kind, _describe(kind))
        probe = _run(candidate, "print(6 * 7)", 20.0, 256, 1000, {}, 8)
        if probe.ok and probe.stdout.strip() == "42":
            return candidate
        reasons.append(f"{kind} failed: {(probe.stderr.strip().splitlines() or ['no output'])[-1]}")
    return Isolation("none", "; ".join(reason for reason in reasons if not reason.startswith("not ")))


def unavailable_message() -> str:
    return (
        f"no OS sandbox for untrusted python here ({isolation().detail or 'unsupported platform'}); "
        "install bubblewrap (Linux), or pass --unsafe-python to run it unisolated"
    )


def _describe(kind: str) -> str:
    if kind == "bubblewrap":
        return f"{', '.join(bubblewrap.NAMESPACES)} namespaces; seccomp; read-only /usr; tmpfs workdir"
    return "deny-by-default profile: no network, no new processes, writes only to the workdir"


def run_python(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output: int = 64_000,
    files: dict[str, str] | None = None,
    disk_mb: int = 64,
    allow_unsafe: bool = False,
) -> SandboxResult:
    """Run `code` as main.py in a fresh, empty working directory; `files` are written beside it first."""
    chosen = isolation()
    if not chosen.safe and not allow_unsafe:
        raise SandboxUnavailable(unavailable_message())
    return _run(chosen, code, timeout_s, memory_mb, max_output, files or {}, disk_mb)


def _run(
    chosen: Isolation, code: str, timeout_s: float, memory_mb: int, max_output: int, files: dict, disk_mb: int
) -> SandboxResult:
    limits = {
        "RLIMIT_CPU": int(timeout_s) + 1,
        "RLIMIT_AS": memory_mb * 2**20,
        "RLIMIT_FSIZE": disk_mb * 2**20,
        "RLIMIT_CORE": 0,
        "RLIMIT_NOFILE": 256,
    }
    argv = [bubblewrap.interpreter(), "-I", "-c", _LAUNCHER.replace("{LIMITS}", repr(limits))]
    with tempfile.TemporaryDirectory(prefix="meqg-sandbox-") as host_dir:
        host = Path(host_dir)
        for name, text in {"main.py": code, **files}.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"sandbox file names are plain names, not {name!r}")
            (host / name).write_text(text, encoding="utf-8")
        workdir = bubblewrap.WORKDIR if chosen.kind == "bubblewrap" else host_dir
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
            "LANG": "C.UTF-8",
        }
        fds, disk_bytes = [], disk_mb * 2**20
        try:
            if chosen.kind == "bubblewrap":
                (host / ".seccomp").write_bytes(seccomp.program())
                named = {name: os.open(host / name, os.O_RDONLY) for name in {"main.py", *files}}
                fds = [*named.values(), os.open(host / ".seccomp", os.O_RDONLY)]
                argv = bubblewrap.command(named, fds[-1], disk_bytes, env, argv)
            elif chosen.kind == "sandbox-exec":
                profile = seatbelt.profile(host_dir, argv[0], bubblewrap.read_only_roots())
                argv = [seatbelt.executable(), "-p", profile, *argv]
            watch = None if chosen.kind == "bubblewrap" else host
            return _supervise(argv, host_dir, env, fds, timeout_s, max_output, disk_bytes, watch, chosen)
        finally:
            for fd in fds:
                os.close(fd)


def _supervise(argv, cwd, env, fds, timeout_s, max_output, disk_bytes, watch, chosen) -> SandboxResult:
    """Start the process, read its output while it runs, and kill it at the first limit it reaches."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=fds,
        start_new_session=True,
    )
    keep = 4 * max_output  # bytes: enough for max_output characters of UTF-8
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    produced = {proc.stdout: 0, proc.stderr: 0}
    timed_out = output_limited = disk_limited = False
    killed_at = None
    next_disk_check = start
    with selectors.DefaultSelector() as selector:
        for stream in kept:
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            now = time.perf_counter()
            if killed_at is None:
                timed_out = now - start > timeout_s
                output_limited = sum(produced.values()) > OUTPUT_KILL_BYTES
                if watch is not None and now >= next_disk_check:
                    disk_limited, next_disk_check = _disk_use(watch) > disk_bytes, now + _DISK_POLL_S
                if timed_out or output_limited or disk_limited:
                    _kill(proc)
                    killed_at = now
            elif now - killed_at > _KILL_GRACE_S:
                break  # something outside the process group holds the pipes; stop reading them
            for key, _ in selector.select(timeout=0.05):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                produced[key.fileobj] += len(chunk)
                buffer = kept[key.fileobj]
                buffer += chunk[: max(0, keep - len(buffer))]
    if killed_at is None and proc.poll() is None:
        proc.wait()
    else:
        _kill(proc)
        proc.wait()
    for stream in kept:
        stream.close()
    seconds = time.perf_counter() - start
    cpu_killed = proc.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL)
    return SandboxResult(
        proc.returncode,
        _clip(bytes(kept[proc.stdout]), max_output, produced[proc.stdout]),
        _clip(bytes(kept[proc.stderr]), max_output, produced[proc.stderr]),
        seconds,
        timed_out or (cpu_killed and not (output_limited or disk_limited)),
        chosen,
        output_limited,
        disk_limited,
    )


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _disk_use(root: Path) -> int:
    used = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                used += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return used


def _clip(data: bytes, limit: int, total: int) -> str:
    text = data.decode("utf-8", errors="replace")
    if len(text) <= limit and len(data) == total:
        return text
    return text[:limit] + "\n... [output truncated]"
