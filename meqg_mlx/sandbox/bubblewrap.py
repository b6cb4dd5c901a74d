"""The Linux sandbox: bubblewrap puts Python in its own user, mount, PID, IPC, UTS,
cgroup and network namespaces, with the interpreter's files read-only, a size-capped
tmpfs as its only writable directory, no /proc of other processes, every capability
dropped, and the seccomp filter of `seccomp.py` loaded before Python starts.

When bwrap (the outermost process) is killed, the sandbox's PID 1 gets SIGKILL
(`--die-with-parent`), and the kernel kills everything left in its PID namespace.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from . import seccomp

WORKDIR = "/sandbox"
NOBODY = 65534
NAMESPACES = ("user", "mount", "pid", "ipc", "uts", "cgroup", "network")


def executable() -> str | None:
    return shutil.which("bwrap")


def interpreter() -> str:
    """The base interpreter (a venv's python is a symlink to it); its stdlib is what the sandbox sees."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def read_only_roots() -> list[str]:
    """What the sandbox can read: /usr, and the interpreter's prefix where it lives elsewhere."""
    roots = ["/usr"]
    for prefix in {sys.base_prefix, str(Path(interpreter()).parent.parent)}:
        if not any(prefix == root or prefix.startswith(root + "/") for root in roots) and os.path.isdir(prefix):
            roots.append(prefix)
    return roots


def command(files: dict[str, int], seccomp_fd: int, disk_bytes: int, env: dict[str, str], argv: list[str]) -> list[str]:
    """bwrap's argument list; `files` maps names under WORKDIR to open file descriptors bwrap copies in."""
    args = [executable() or "bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net"]
    args += ["--unshare-uts", "--unshare-cgroup-try", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    args += ["--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for root in read_only_roots():
        args += ["--ro-bind", root, root]
    for name in ("bin", "lib", "lib64", "sbin"):  # merged-/usr systems link these into /usr
        link = Path("/") / name
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), str(link)]
        elif link.is_dir():
            args += ["--ro-bind", str(link), str(link)]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(disk_bytes), "--tmpfs", WORKDIR]
    for name, fd in files.items():
        args += ["--file", str(fd), f"{WORKDIR}/{name}"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORKDIR, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--seccomp", str(seccomp_fd), "--", *argv]


def unavailable_reason() -> str | None:
    """Why bubblewrap cannot be used here, or None when it can be tried."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if executable() is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    if not seccomp.supported():
        return f"no seccomp filter for this architecture ({os.uname().machine})"
    return None
