"""The macOS sandbox: `sandbox-exec` with a deny-by-default profile.

Python may read the system's libraries, its own installation and its working
directory, and write only the working directory; no network, no new processes
(`process-fork` stays denied, so killing the one process ends everything), no
IPC lookups. Disk use is capped by the parent, which watches the working
directory while the code runs.
"""

from __future__ import annotations

import shutil
import sys


def executable() -> str | None:
    return shutil.which("sandbox-exec")


def _quote(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile(workdir: str, interpreter: str, read_roots: list[str]) -> str:
    reads = " ".join(f"(subpath {_quote(root)})" for root in [*read_roots, workdir])
    return "\n".join(
        [
            "(version 1)",
            "(deny default)",
            f"(allow process-exec (literal {_quote(interpreter)}))",
            f'(allow file-read* {reads} (subpath "/System") (subpath "/usr/lib") (subpath "/usr/share")'
            ' (subpath "/Library/Apple") (literal "/dev/null") (literal "/dev/urandom") (literal "/dev/random"))',
            "(allow file-read-metadata)",
            f'(allow file-write* (subpath {_quote(workdir)}) (literal "/dev/null"))',
            "(allow sysctl-read)",
            "(allow signal (target self))",
        ]
    )


def unavailable_reason() -> str | None:
    if sys.platform != "darwin":
        return "not macOS"
    if executable() is None:
        return "sandbox-exec is not on PATH"
    return None
