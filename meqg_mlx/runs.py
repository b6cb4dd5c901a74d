"""A run directory's layout: the only code that knows which file lives where (docs/design.md, Run directory).

    RUN/run.json  config.yaml  telemetry.jsonl  train.log
    RUN/checkpoints/step-0000100/ ...  RUN/checkpoints/latest
    RUN/inverter/{config.yaml, telemetry.jsonl, model/}

Bottom layer: it reads and writes files and knows nothing of their contents beyond run.json;
`config.load_run` reads a run with its config.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text
from .errors import MeqgError
from .paths import is_remote, store_uri

CHECKPOINT_PREFIX = "step-"
# inside a checkpoint directory (and, for WEIGHTS and CONFIG, the inverter's model/)
WEIGHTS, OPTIMIZER, STATE, CONFIG = "model.safetensors", "optimizer.safetensors", "state.json", "config.yaml"


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    def __fspath__(self) -> str:
        """A RunDir is a path too, so `RunDir(run)` takes a RunDir, a str or a Path alike."""
        return str(self.path)

    def __str__(self) -> str:  # messages name the directory, not the dataclass
        return str(self.path)

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def telemetry_path(self) -> Path:
        return self.path / "telemetry.jsonl"

    @property
    def train_log(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def inverter(self) -> "RunDir":
        """The inverter's own directory (config.yaml, telemetry.jsonl, model/) inside the run."""
        return RunDir(self.path / "inverter")

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def exists(self) -> bool:
        return self.meta_path.exists()

    # checkpoints
    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{CHECKPOINT_PREFIX}{step:07d}"

    def checkpoint_dirs(self) -> list[Path]:
        """Every checkpoint directory, newest first."""
        return sorted(self.checkpoints.glob(f"{CHECKPOINT_PREFIX}*"), reverse=True)

    def discard_after(self, step: int) -> list[str]:
        """Remove what a killed run left that a resume from `step` must not read: half-written checkpoint
        directories (`.step-*`, `atomic.replaced_dir`'s) and checkpoints of later steps that `latest` never
        came to name (a recovery revert would take them for its own). Returns their names."""
        later = [p for p in self.checkpoint_dirs() if int(p.name.removeprefix(CHECKPOINT_PREFIX)) > step]
        leftovers = sorted(self.checkpoints.glob(f".{CHECKPOINT_PREFIX}*")) + later
        for path in leftovers:
            shutil.rmtree(path)
        return [path.name for path in leftovers]

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint `latest` names (None before the first); a name whose directory is gone is a
        one-line error rather than a fall-back, so a resume never silently starts from older weights."""
        pointer = self.checkpoints / "latest"
        if not pointer.is_file():
            return None
        name = pointer.read_text().strip()
        if not (self.checkpoints / name).is_dir():
            kept = ", ".join(p.name for p in self.checkpoint_dirs()) or "none"
            raise MeqgError(
                f"{pointer}: latest names {name}, which is not there (checkpoints kept: {kept}); "
                f"write one of them into it, or remove the run to start over"
            )
        return self.checkpoints / name

    def require_checkpoint(self) -> Path:
        """The latest checkpoint, for what needs a trained model (episodes, eval); none is a one-line error."""
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            raise MeqgError(f"no checkpoint in {self.path}: train it first (meqg train --run {self.path})")
        return checkpoint

    def point_latest(self, checkpoint: Path) -> None:
        write_text(self.checkpoints / "latest", checkpoint.name)

    # run.json and config.yaml
    def check_directory(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise MeqgError(f"{self.path} is a file, not a run directory")

    def read_meta(self, missing: str = "no run in") -> dict:
        """run.json: run id, store path, creation time."""
        self.check_directory()
        try:
            return json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            raise MeqgError(f"{missing} {self.path} (run.json missing)") from None
        except (OSError, ValueError) as exc:
            raise MeqgError(f"unreadable run.json in {self.path}: {exc}") from exc

    def write_config(self, config_yaml: str) -> None:
        write_text(self.config_path, config_yaml)

    def ensure_new(self) -> None:
        if self.exists():
            raise MeqgError(f"{self.path} already holds a run; pass --resume to continue it or choose another --run")

    def create(self, store_path: str | Path, config_yaml: str, store_record: dict | None = None) -> dict:
        """A new run on `store_path`: config.yaml, then run.json (written once, here), which keeps
        `store_record` (`ConceptStore.record`: what a moved store is checked against)."""
        self.ensure_new()
        self.check_directory()
        meta = {"run_id": uuid.uuid4().hex[:12], "store": store_uri(store_path), "created_at": time.time()}
        if store_record is not None:
            meta["store_record"] = store_record
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_config(config_yaml)
            write_text(self.meta_path, json.dumps(meta, indent=1))
        except OSError as exc:
            raise MeqgError(f"cannot write the run directory {self.path}: {exc.strerror or exc}") from None
        return meta

    def for_store(self, store_path: str | Path, config_yaml: str, store_record: dict | None = None) -> dict:
        """run.json of this run, created (with `config_yaml`) when it is new; a run on another store is an
        error. A local store no longer where the run recorded it has moved: the caller checked the one it
        gives (`ConceptStore.of_run`)."""
        if not self.exists():
            return self.create(store_path, config_yaml, store_record)
        meta = self.read_meta()
        recorded = meta["store"]
        if store_uri(recorded) != store_uri(store_path) and (is_remote(recorded) or Path(recorded).exists()):
            raise MeqgError(f"{self.path} is a run on the store {recorded}, not {store_uri(store_path)}")
        return meta


def runs_under(root: str | Path) -> list[RunDir]:
    """The runs in `root` (a directory of runs, or one run), by name."""
    root = Path(root)
    if RunDir(root).exists():
        return [RunDir(root)]
    return [RunDir(p) for p in sorted(root.iterdir()) if p.is_dir() and RunDir(p).exists()]
