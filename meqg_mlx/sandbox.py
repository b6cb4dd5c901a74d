"""Run untrusted Python in a subprocess: CPU, memory and file-size limits, a temp
working directory that is removed afterwards, no network, no writes outside it.

Layers: a private network namespace (Linux, when `unshare` is permitted: as root
or through a user namespace); rlimits and a wall-clock kill of the whole process
group; audit hooks (PEP 578), installed before the user's code runs, that refuse
sockets, process creation, ctypes, and file writes or deletions outside the
working directory. The guard runs inside the child, so the parent never forks
with a `preexec_fn` (LanceDB's runtime warns about that).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_GUARD = r"""
import ctypes, os, resource, sys
_LIMITS = {LIMITS}
resource.setrlimit(resource.RLIMIT_CPU, (_LIMITS["cpu"], _LIMITS["cpu"] + 1))
resource.setrlimit(resource.RLIMIT_AS, (_LIMITS["memory"], _LIMITS["memory"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMITS["file"], _LIMITS["file"]))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
_netns = "shared"
if sys.platform.startswith("linux"):
    _before = os.readlink("/proc/self/ns/net")
    _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.unshare(0x40000000) != 0:            # CLONE_NEWNET (root) ...
        _libc.unshare(0x10000000 | 0x40000000)    # ... or inside a new user namespace
    _netns = "private" if os.readlink("/proc/self/ns/net") != _before else "shared"
with open(".netns", "w") as _f:
    _f.write(_netns)
del _f, _libc
_ROOT = os.path.realpath(os.getcwd())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_DENY = ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
         "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
         "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata")
_PATH_EVENTS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
                "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move")

def _inside(path):
    if isinstance(path, int):
        return True
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    real = os.path.realpath(os.path.join(_ROOT, str(path)))
    return real == _ROOT or real.startswith(_ROOT + os.sep)

def _guard(event, args):
    if event in _DENY:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and args and args[0] is not None:
        mode = args[1] or ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = any(c in str(mode) for c in "wax+") or flags & _WRITE_FLAGS
        if writes and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} outside the working directory")
    elif event in _PATH_EVENTS and not all(_inside(a) for a in args[:2] if isinstance(a, (str, bytes))):
        raise PermissionError(f"sandbox: {event} outside the working directory")

sys.addaudithook(_guard)
del _guard
_code = open("main.py", encoding="utf-8").read()
sys.argv = ["main.py"]
exec(compile(_code, "main.py", "exec"), {"__name__": "__main__"})
"""


@dataclass
class SandboxResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    network_namespace: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_python(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output: int = 64_000,
    files: dict[str, str] | None = None,
) -> SandboxResult:
    """Run `code` as a script in a fresh temp dir; `files` are written beside it first."""
    with tempfile.TemporaryDirectory(prefix="meqg-sandbox-") as workdir:
        work = Path(workdir)
        limits = {"cpu": int(timeout_s) + 1, "memory": memory_mb * 2**20, "file": 64 * 2**20}
        (work / "_guard.py").write_text(_GUARD.replace("{LIMITS}", repr(limits)), encoding="utf-8")
        (work / "main.py").write_text(code, encoding="utf-8")
        for name, text in (files or {}).items():
            (work / name).write_text(text, encoding="utf-8")
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
            "LANG": "C.UTF-8",
        }
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "_guard.py"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        seconds = time.perf_counter() - start
        timed_out = timed_out or proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
        marker = work / ".netns"
        netns = marker.exists() and marker.read_text() == "private"
    return SandboxResult(proc.returncode, _clip(out, max_output), _clip(err, max_output), seconds, timed_out, netns)


def _clip(data: bytes, limit: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + f"\n... [truncated {len(text) - limit} chars]"
