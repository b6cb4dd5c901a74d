"""Where meqg keeps default stores and runs: $MEQG_HOME or the platform's user data dir."""

from __future__ import annotations

import os
from pathlib import Path


def meqg_home() -> Path:
    home = os.environ.get("MEQG_HOME")
    if home:
        return Path(home).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("meqg"))


def default_store() -> Path:
    return meqg_home() / "stores" / "stdlib"
