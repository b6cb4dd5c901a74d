"""A trained run opened for use: its config, store, latest checkpoint, model, relations and memory.

Episodes, `meqg eval` and the exporters open runs here, so what a run means (which
checkpoint, which store, the model's shape, the relation ids, the memory it reads) is
written once.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

from ..concepts.store import ConceptStore
from ..config import MeqgConfig, load_run
from ..runs import RunDir
from ..vmm.model import VMM, ModelArgs
from .checkpoint import load_model
from .memory import RelationMemory
from .relations import Edges, RelationVocabulary, TrainingSplit, document_groups
from .sequences import ConceptTable


@dataclass
class TrainedRun:
    run: RunDir
    meta: dict  # run.json
    config: MeqgConfig
    checkpoint: Path  # the latest
    store: ConceptStore

    @classmethod
    def open(
        cls, run_dir: str | Path | RunDir, store: ConceptStore | None = None, store_path: str | Path | None = None
    ) -> "TrainedRun":
        """The run in `run_dir` (one-line errors for a missing run, config or checkpoint) on its store, the
        one given, or the one at `store_path` (`ConceptStore.of_run`: the run's store, moved)."""
        run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        meta, config = load_run(run)
        checkpoint = run.require_checkpoint()
        return cls(run, meta, config, checkpoint, store or ConceptStore.of_run(meta, config.store, store_path))

    @property
    def args(self) -> ModelArgs:
        return dataclasses.replace(self.config.vmm, concept_dim=self.store.dim)

    @functools.cached_property
    def model(self) -> VMM:
        return load_model(self.checkpoint, self.args)

    @property
    def vocabulary(self) -> RelationVocabulary:
        return RelationVocabulary.of_model(self.config.vmm.relations)

    @functools.cached_property
    def table(self) -> ConceptTable:
        return ConceptTable(self.store)

    @functools.cached_property
    def split(self) -> TrainingSplit:
        """The run's split of its store, as its trainer drew it."""
        return TrainingSplit.of(self.store, self.table, self.vocabulary, self.config.train.validation_fraction)

    @functools.cached_property
    def training_edges(self) -> Edges:
        """What the run trained on, per relation: its memory, the baselines' pairs."""
        return self.split.training_edges(self.table)

    @functools.cached_property
    def memory(self) -> RelationMemory | None:
        """The memory the run trained with (None: its model reads none)."""
        if not self.args.memory_slots:
            return None
        groups = document_groups(self.store, self.table)
        return RelationMemory(
            self.table.vectors, self.training_edges, len(self.vocabulary), self.args.memory_slots, groups
        )
