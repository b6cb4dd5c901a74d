"""The store's typed relations as training data: the vocabulary, the held-out split, and walks.

A relation walk `c0 -r1-> c1 -r2-> c2 ...` follows the store's typed edges; each step is
tagged with the relation it follows (documents follow `next`). The split is by the edge's
source: a held-out concept's outgoing edges are never trained on, nor the edges that state
them backwards (`x hypernym h` states `h hyponym x`; see INVERSES), so no held-out fact
reaches training through a walk that passes the concept or runs the other way. A concept is
held out when its document is (`sequences.held_out`): a concept in a validation document,
or, outside documents (a WordNet synset), by the same hash of its own name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from ..concepts.store import ConceptStore
from ..errors import ConfigError, InputError
from .sequences import ConceptTable, Document, document_name, documents, held_out, split_documents

NEXT = "next"  # documents' relation: the concept that follows in reading order; always id 0

# Relation -> the relation that states the same fact from the other end (symmetric ones map to themselves).
INVERSES = {
    "hypernym": "hyponym",
    "hyponym": "hypernym",
    "part_meronym": "part_holonym",
    "part_holonym": "part_meronym",
    "member_meronym": "member_holonym",
    "member_holonym": "member_meronym",
    "substance_meronym": "substance_holonym",
    "substance_holonym": "substance_meronym",
    "antonym": "antonym",
    "similar_to": "similar_to",
    "contains": "defined_in",
    "defined_in": "contains",
}


@dataclass(frozen=True)
class RelationVocabulary:
    """Relation names by id, `next` first: what a run records so every reader uses the same ids."""

    names: tuple[str, ...]

    def __post_init__(self):
        if not self.names or self.names[0] != NEXT or len(set(self.names)) != len(self.names):
            raise ConfigError(
                f"vmm.relations must start with {NEXT!r} and name each relation once, got {list(self.names)}"
            )

    @classmethod
    def of_store(cls, store: ConceptStore) -> "RelationVocabulary":
        return cls((NEXT, *sorted(set(store.relation_counts()) - {NEXT})))

    @classmethod
    def of_model(cls, names: list[str]) -> "RelationVocabulary":
        """A model's vocabulary (`ModelArgs.relations`); a model made before relations knows `next` alone."""
        return cls(tuple(names or (NEXT,)))

    def id(self, name: str) -> int:
        if name not in self.names:
            raise InputError(f"unknown relation {name!r}; this run knows {', '.join(self.names)}")
        return self.names.index(name)

    def ids(self, names: list[str] | tuple[str, ...]) -> list[int]:
        return [self.id(name) for name in names]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Edges:
    """Typed edges between table rows (parallel arrays)."""

    source: np.ndarray
    target: np.ndarray
    relation: np.ndarray

    def __len__(self) -> int:
        return len(self.source)

    def where(self, keep: np.ndarray) -> "Edges":
        return Edges(self.source[keep], self.target[keep], self.relation[keep])

    def of(self, relation: int) -> "Edges":
        return self.where(self.relation == relation)


def store_edges(store: ConceptStore, table: ConceptTable, vocabulary: RelationVocabulary) -> Edges:
    """Every edge of the store between concepts it holds, once; dangling targets and self-loops dropped.
    Relations outside the vocabulary are an error (a store that grew new types after the run began)."""
    columns = store.columns(["concept_id", "relations"])
    relations = columns["relations"].combine_chunks()
    flat = pc.list_flatten(relations)
    source = columns["concept_id"].combine_chunks().take(pc.list_parent_indices(relations)).to_numpy()
    target = flat.field("target_id").to_numpy(zero_copy_only=False)
    types = flat.field("type").to_pylist()
    unknown = sorted(set(types) - set(vocabulary.names))
    if unknown:
        raise InputError(
            f"the store holds relation {unknown[0]!r}, which this run's vocabulary ({', '.join(vocabulary.names)}) "
            "lacks: the store grew new relation types after the run began (start a new run), or vmm.relations "
            "names too few (leave it empty: a new run reads the store's)"
        )
    index = {name: i for i, name in enumerate(vocabulary.names)}
    kind = np.array([index[name] for name in types], np.int64)
    target = np.nan_to_num(target.astype(np.float64), nan=-1).astype(np.int64)  # a missing target is null
    rows_of = np.append(table.row_of, -1)  # ids past the table (and -1) map to -1
    source = rows_of[np.clip(source.astype(np.int64), -1, len(rows_of) - 1)]
    target = rows_of[np.clip(target, -1, len(rows_of) - 1)]
    keep = (source >= 0) & (target >= 0) & (source != target)
    edges = np.unique(np.stack([source[keep], target[keep], kind[keep]], 1), axis=0).reshape(-1, 3)
    return Edges(edges[:, 0], edges[:, 1], edges[:, 2])


def row_documents(store: ConceptStore, table: ConceptTable) -> list[str]:
    """The document each table row belongs to: its document's name, or outside documents its own (`id:N`)."""
    columns = store.columns(["concept_id", "key"])
    names = [""] * len(table.ids)
    for concept_id, key in zip(columns["concept_id"].to_pylist(), columns["key"].to_pylist()):
        row = table.row_of[concept_id] if concept_id < len(table.row_of) else -1
        if row >= 0:
            names[row] = document_name(key) or f"id:{concept_id}"
    return names


def held_out_rows(store: ConceptStore, table: ConceptTable, validation_fraction: float) -> np.ndarray:
    """(rows,) bool: the concepts held out of training (their document's, or their own name's, hash)."""
    return np.array([held_out(name, validation_fraction) for name in row_documents(store, table)], bool)


def document_groups(store: ConceptStore, table: ConceptTable) -> np.ndarray:
    """(rows,) int: rows of one document share a number (a concept outside documents has its own)."""
    return np.unique(row_documents(store, table), return_inverse=True)[1].astype(np.int64)


def trainable(edges: Edges, held: np.ndarray, vocabulary: RelationVocabulary) -> np.ndarray:
    """(edges,) bool: edges training may read: the source is not held out, and when the relation has an
    inverse, neither is the target (the edge would state the target's held-out edge backwards)."""
    has_inverse = np.array([name in INVERSES for name in vocabulary.names])
    return ~held[edges.source] & ~(has_inverse[edges.relation] & held[edges.target])


@dataclass
class TrainingSplit:
    """What a run may train on and what judges it, fixed by its store and `train.validation_fraction`:
    the held-out rows, the store's edges and which of them training may read, and the documents on each
    side. The trainer and a saved run (`trained.TrainedRun`) both take theirs from `of`, so they agree."""

    held_out: np.ndarray  # (rows,) bool
    edges: Edges  # every store edge of the vocabulary's relations (none for `next` alone)
    trainable: np.ndarray  # (edges,) bool
    train_docs: list[Document]
    val_docs: list[Document]

    @classmethod
    def of(
        cls, store: ConceptStore, table: ConceptTable, vocabulary: RelationVocabulary, validation_fraction: float
    ) -> "TrainingSplit":
        held = held_out_rows(store, table, validation_fraction)
        if len(vocabulary) > 1:
            edges = store_edges(store, table, vocabulary)
            keep = trainable(edges, held, vocabulary)
        else:
            edges, keep = Edges(*(np.zeros(0, np.int64),) * 3), np.zeros(0, bool)
        train_docs, val_docs = split_documents(documents(store, required=False), validation_fraction)
        return cls(held, edges, keep, train_docs, val_docs)

    def training_edges(self, table: ConceptTable) -> Edges:
        """What training reads, per relation: the trainable typed edges for every relation but `next`,
        which is the training documents' transitions (what the memory holds and the baselines fit)."""
        steps = [(table.row_of[d.ids[:-1]], table.row_of[d.ids[1:]]) for d in self.train_docs]
        source, target = (np.concatenate(side) for side in zip(*steps)) if steps else (np.zeros(0, np.int64),) * 2
        typed = self.edges.where(self.trainable & (self.edges.relation != 0))
        return Edges(
            np.concatenate([source, typed.source]),
            np.concatenate([target, typed.target]),
            np.concatenate([np.zeros(len(source), np.int64), typed.relation]),
        )


class WalkSampler:
    """Random walks over edges (the trainable ones): each step takes a uniformly drawn outgoing edge
    whose target the walk has not visited; a walk ends early where none is left."""

    def __init__(self, edges: Edges):
        if not len(edges):
            raise InputError("no relation edges to walk: the store holds none that training may read")
        order = np.argsort(edges.source, kind="stable")
        self.edges = edges.where(order)
        self.starts = np.searchsorted(self.edges.source, np.arange(int(self.edges.source.max()) + 2))

    def outgoing(self, row: int) -> slice:
        if row + 1 >= len(self.starts):
            return slice(0, 0)
        return slice(int(self.starts[row]), int(self.starts[row + 1]))

    def walks(self, rng: np.random.Generator, count: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (count, length + 1), relations (count, length)): visited rows and the relation followed
        from each, -1 padded after a walk's end. The first step is a uniformly drawn edge."""
        rows = np.full((count, length + 1), -1, np.int64)
        relations = np.full((count, length), -1, np.int64)
        for walk, first in enumerate(rng.integers(0, len(self.edges), count)):
            rows[walk, 0], rows[walk, 1] = self.edges.source[first], self.edges.target[first]
            relations[walk, 0] = self.edges.relation[first]
            for step in range(1, length):
                here = self.outgoing(int(rows[walk, step]))
                fresh = np.flatnonzero(~np.isin(self.edges.target[here], rows[walk, : step + 1]))
                if not len(fresh):
                    break
                pick = here.start + int(fresh[rng.integers(len(fresh))])
                rows[walk, step + 1], relations[walk, step] = self.edges.target[pick], self.edges.relation[pick]
        return rows, relations
