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

import mlx.core as mx
import numpy as np

from .concepts.store import ConceptStore
from .config import MeqgConfig, load_run
from .corpus.memory import RelationMemory
from .corpus.relations import Edges, RelationVocabulary, TrainingSplit, document_groups
from .corpus.sequences import ConceptTable
from .runs import RunDir
from .vmm.load import load_model
from .vmm.model import VMM, ModelArgs


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

    def next_vectors(self, context: np.ndarray, relations: np.ndarray) -> np.ndarray:
        """(N, T, d) contexts, (N, T) the relation each position follows -> (N, d) the model's next-concept
        vector after each context's last concept, reading its memory there."""
        memory = None
        if self.memory is not None:
            memory = self.memory.read_last(context[:, -1], relations[:, -1], context.shape[1])
        out = self.model(
            mx.array(context.astype(np.float32)), relations=mx.array(relations.astype(np.int32)), memory=memory
        )
        return np.array(out.next_vector[:, -1], dtype=np.float64)

    def predict(self, start: np.ndarray, relation: str = "next", k: int = 5, steps: int = 1) -> list[list[dict]]:
        """From a concept vector, `steps` greedy steps along `relation`: each step's k nearest store concepts
        to the model's prediction (concepts already in the context left out), and the nearest fed on."""
        relation_id = self.vocabulary.id(relation)
        vectors = self.table.vectors
        context, seen, found = [np.asarray(start, np.float32)], set(), []
        nearest = int(np.argmax(vectors @ context[0]))
        if float(vectors[nearest] @ context[0]) > 1 - 1e-6:
            seen.add(nearest)  # the start is a store concept: not an answer
        for _ in range(steps):
            predicted = self.next_vectors(np.stack(context)[None], np.full((1, len(context)), relation_id))[0]
            cosine = vectors @ (predicted / max(np.linalg.norm(predicted), 1e-12))
            cosine[list(seen)] = -np.inf
            top = np.argsort(-cosine)[:k]
            rows = self.store.get(self.table.ids[top].tolist())  # the k shown: their texts, in this order
            found.append(
                [
                    {"id": row["concept_id"], "cosine": float(cosine[r]), "text": row["text"]}
                    for row, r in zip(rows, top)
                ]
            )
            seen.add(int(top[0]))
            context.append(vectors[top[0]])
        return found
