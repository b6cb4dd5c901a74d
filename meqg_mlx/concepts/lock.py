"""One writer at a time per store: an exclusive `flock` locally, a renewed lease object on S3.

Builds, vector columns, domains, compaction and the index all change a store; two
processes doing so at once handed out the same ids and stored texts twice. The lock
is taken for a whole operation (a build holds it from planning to indexing) and is
re-entrant within a thread. Readers never take it: Lance commits are atomic, so a
reader sees one version.

A dead holder: the kernel drops a `flock` at once; an S3 lease is taken over once
it has gone unrenewed for `store.lock_lease_s` by the server's clock, so a writer
killed mid-ingest blocks the next one for at most that long.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path

from ..errors import StoreError

LOCK_FILE = ".lock"


class _HeldLock:
    def __init__(self):
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.handle = None


_locks: dict[str, _HeldLock] = {}
_registry = threading.Lock()


@contextmanager
def write_lock(location, on_wait: Callable[[str], None] | None = None) -> Iterator[bool]:
    """Hold the store's write lock; yields True when this call took it (the caller must re-read the store).

    `on_wait` gets one line (who holds it) when another process has it and this call waits, and one
    when this call takes over an S3 lease its dead holder left.
    """
    with _registry:
        held = _locks.setdefault(location.lock_key, _HeldLock())
    with held.thread_lock:
        taken = held.depth == 0
        if taken:
            lock = location.new_lock()
            lock.acquire(on_wait)
            held.handle = lock
        held.depth += 1
        try:
            yield taken
        finally:
            held.depth -= 1
            if held.depth == 0:
                held.handle.release()
                held.handle = None


class FileLock:
    """`flock` on STORE/.lock; the file says which pid holds it."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, on_wait: Callable[[str], None] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    on_wait(f"waiting for the write lock on {self.path.parent} (held by {holder})")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


class S3Lease:
    """PREFIX/.lock created with If-None-Match: *, renewed with If-Match every lease/3 s, deleted on release.

    Staleness is judged by the server's clock (the object's Last-Modified against the
    response's Date), so hosts with skewed clocks agree. A holder that fails to renew
    (it was paused past its lease and someone took over) refuses its next metadata write.
    """

    def __init__(self, location, lease_s: float):
        self.location = location
        self.key = location.key(LOCK_FILE)
        self.lease_s = lease_s
        self.body = json.dumps({"holder": f"{socket.gethostname()} pid {os.getpid()}", "lease_s": lease_s}).encode()
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self, on_wait: Callable[[str], None] | None) -> None:
        delay, announced = 0.05, False
        while True:
            self.etag = self._put(IfNoneMatch="*")
            if self.etag is None:
                holder = self._holder()
                if holder is None:
                    continue  # released between our two requests
                etag, info, age = holder
                if age > float(info.get("lease_s", self.lease_s)) + 1.0:  # Last-Modified has 1 s resolution
                    self.etag = self._put(IfMatch=etag)
                    if self.etag is not None and on_wait is not None:
                        on_wait(
                            f"took over the write lock on {self.location.uri} from {info.get('holder', '?')} "
                            f"(its lease went unrenewed for {age:.0f} s)"
                        )
                elif on_wait is not None and not announced:
                    on_wait(f"waiting for the write lock on {self.location.uri} (held by {info.get('holder', '?')})")
                    announced = True
            if self.etag is not None:
                break
            time.sleep(delay)
            delay = min(2 * delay, 1.0)
        self.location.lease = self
        self._renewer = threading.Thread(target=self._renew, name="meqg-s3-lease", daemon=True)
        self._renewer.start()

    def check_held(self) -> None:
        if self.lost:
            raise StoreError(
                f"lost the write lock on {self.location.uri}: its lease expired and another writer took it; "
                "nothing more was written"
            )

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        self._renewer.join()
        self.location.lease = None
        if not self.lost:
            try:
                self.location.call("delete_object", Key=self.key, IfMatch=self.etag)
            except ClientError:
                pass  # taken over meanwhile: the new holder's object stays

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                etag = self._put(IfMatch=self.etag)
            except StoreError:
                continue  # the server was unreachable once: the next renewal may get through
            if etag is None:
                self.lost = True
                return
            self.etag = etag

    def _put(self, **condition) -> str | None:
        """PUT the lease under a condition; None when the condition failed."""
        from botocore.exceptions import ClientError

        try:
            return self.location.call("put_object", Key=self.key, Body=self.body, **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise

    def _holder(self) -> tuple[str, dict, float] | None:
        """(etag, contents, age in seconds by the server's clock) of the current lease, None if there is none."""
        from botocore.exceptions import ClientError

        try:
            response = self.location.call("get_object", Key=self.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            info = json.loads(response["Body"].read())
        except ValueError:
            info = {}
        now = parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"])
        return response["ETag"], info, (now - response["LastModified"]).total_seconds()
