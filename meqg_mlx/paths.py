"""Where meqg keeps default stores and runs ($MEQG_HOME or the platform's user data dir), and store URIs."""

from __future__ import annotations

import os
from pathlib import Path


def meqg_home() -> Path:
    home = os.environ.get("MEQG_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("meqg"))


def is_remote(uri: str | Path) -> bool:
    """Whether a store URI names object storage (s3://...) rather than a local directory."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def store_uri(uri: str | Path) -> str:
    """The canonical name of a store: an absolute path, or the object-store URI as given (no trailing /)."""
    text = str(uri)
    if is_remote(text):
        return text.rstrip("/")
    return str(Path(text.removeprefix("file://")).expanduser().resolve())


def default_store() -> Path:
    return meqg_home() / "stores" / "stdlib"


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """ROOT/NAME (ROOT: $MEQG_HOME/runs), or NAME-2, NAME-3, ... when taken: a run never overwrites another."""
    root = root or meqg_home() / "runs"
    candidate, n = root / name, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{name}-{n}"
    return candidate
