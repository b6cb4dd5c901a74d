"""Write to a temporary sibling, then rename into place: nothing a user stored is ever half-written.

A crash before the rename leaves the previous version whole; the temporary sibling is a
dot-name that readers never look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_dir(target: str | Path) -> Iterator[Path]:
    """A fresh directory beside `target` to fill; when the block succeeds it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
        _plain_modes(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _plain_modes(tree: Path) -> None:
    """The modes mkdir and open would have given (mkdtemp's directory, like some writers' files, is 0700/0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [tree, *tree.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def replaced_file(target: str | Path) -> Iterator[Path]:
    """A temporary path beside `target` (same suffix) to write; when the block succeeds it replaces `target`.
    The path is the process's own, so processes writing one target at once (ranks) never share it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def write_text(target: str | Path, text: str) -> None:
    """`target` holds `text`, flushed to disk before the rename."""
    write_bytes(target, text.encode("utf-8"))


def write_bytes(target: str | Path, data: bytes) -> None:
    """`target` holds `data`, flushed to disk before the rename."""
    with replaced_file(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
