"""One writer at a time per store: an exclusive `flock` on `STORE/.lock`.

Builds, vector columns, domains, compaction and the index all change a store; two
processes doing so at once handed out the same ids and stored texts twice. The lock
is taken for a whole operation (a build holds it from planning to indexing), is
re-entrant within a thread, and is released by the kernel if its holder dies.
Readers never take it: Lance commits are atomic, so a reader sees one version.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"


class _PathLock:
    def __init__(self):
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_locks: dict[str, _PathLock] = {}
_registry = threading.Lock()


@contextmanager
def write_lock(store_dir: str | Path, on_wait: Callable[[str], None] | None = None) -> Iterator[bool]:
    """Hold the store's write lock; yields True when this call took it (the caller must re-read the store).

    `on_wait` gets one line (who holds it) when another process has it and this call waits.
    """
    path = Path(store_dir)
    path.mkdir(parents=True, exist_ok=True)
    with _registry:
        lock = _locks.setdefault(os.path.realpath(path), _PathLock())
    with lock.thread_lock:
        taken = lock.depth == 0
        if taken:
            lock.fd = _acquire(path / LOCK_FILE, on_wait)
        lock.depth += 1
        try:
            yield taken
        finally:
            lock.depth -= 1
            if lock.depth == 0:
                fcntl.flock(lock.fd, fcntl.LOCK_UN)
                os.close(lock.fd)
                lock.fd = None


def _acquire(lock_path: Path, on_wait: Callable[[str], None] | None) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                on_wait(f"waiting for the write lock on {lock_path.parent} (held by {holder})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd
