"""Concept sequences from the store, split into train and validation by document.

A document is a chain of concepts linked by `next` (prose sentences, doctest
examples) or the members of one module in id order (code). Splitting by document
keeps any sentence of a validation document out of training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ..concepts.store import ConceptStore
from ..errors import StoreError


@dataclass
class Document:
    name: str
    ids: np.ndarray


def document_name(key: str | None) -> str | None:
    """`pydoc:for#3` -> `pydoc:for`; `py:json.dumps` -> `py:json`; `py-example:x#2` -> `py-example:x`."""
    if not key:
        return None
    if "#" in key:
        return key.rsplit("#", 1)[0]
    if key.startswith("py:") and "." in key:
        return key.split(".", 1)[0]
    return key


def documents(store: ConceptStore, min_length: int = 3, required: bool = True) -> list[Document]:
    """Documents of at least `min_length` concepts, each in reading order (by concept id); none is an
    error when `required`."""
    table = store.columns(["concept_id", "key"])
    groups: dict[str, list[int]] = {}
    for cid, key in zip(table["concept_id"].to_pylist(), table["key"].to_pylist()):
        name = document_name(key)
        if name is not None:
            groups.setdefault(name, []).append(cid)
    docs = [
        Document(name, np.sort(np.array(ids, dtype=np.int64)))
        for name, ids in sorted(groups.items())
        if len(ids) >= min_length
    ]
    if not docs and required:
        raise StoreError(f"store {store.uri} has no documents of {min_length}+ concepts to train on")
    return docs


def held_out(name: str, validation_fraction: float) -> bool:
    """Whether the document (or lone concept) `name` is held out: a hash of the name alone, stable as the
    store grows. `relations.held_out_rows` uses it for concepts outside documents."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < validation_fraction


def split_documents(docs: list[Document], validation_fraction: float = 0.1) -> tuple[list[Document], list[Document]]:
    """Deterministic split by a hash of the document name (stable as the store grows). No documents (a
    lexicon alone) split into none; documents that all fall on one side are too few."""
    if not docs:
        return [], []
    train = [d for d in docs if not held_out(d.name, validation_fraction)]
    validation = [d for d in docs if held_out(d.name, validation_fraction)]
    if not train or not validation:
        raise StoreError(f"{len(docs)} documents are too few to split into train and validation")
    return train, validation


def windows(docs: list[Document], length: int, rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` windows of `length + 1` consecutive concept ids (inputs and next-concept targets)."""
    usable = [d for d in docs if len(d.ids) >= 2]
    weights = np.array([len(d.ids) for d in usable], dtype=np.float64)
    out = np.full((count, length + 1), -1, dtype=np.int64)
    for row, index in enumerate(rng.choice(len(usable), count, p=weights / weights.sum())):
        ids = usable[index].ids
        start = int(rng.integers(0, max(1, len(ids) - length)))
        piece = ids[start : start + length + 1]
        out[row, : len(piece)] = piece
    return out


def tiled_windows(docs: list[Document], length: int) -> np.ndarray:
    """Every document cut into consecutive windows of `length + 1` ids overlapping by one
    (each transition appears once), -1 padded: a fixed validation set."""
    rows = []
    for doc in docs:
        for start in range(0, max(len(doc.ids) - 1, 1), length):
            piece = doc.ids[start : start + length + 1]
            if len(piece) >= 2:
                rows.append(np.pad(piece, (0, length + 1 - len(piece)), constant_values=-1))
    return np.array(rows, dtype=np.int64).reshape(-1, length + 1)


class ConceptTable:
    """The store's concepts as rows of one matrix (sorted by id, plus a zero padding row), and
    windows of concept ids turned into batches of row indices."""

    def __init__(self, store: ConceptStore):
        ids, vectors = store.all_vectors()
        order = np.argsort(ids)
        self.ids, self.vectors = ids[order], vectors[order]
        self.row_of = np.full(int(self.ids.max()) + 2, -1, dtype=np.int64)
        self.row_of[self.ids] = np.arange(len(self.ids))
        self.matrix = mx.array(np.concatenate([self.vectors, np.zeros((1, store.dim), np.float32)]))

    @property
    def pad_row(self) -> int:
        return len(self.ids)

    def rows(self, ids: np.ndarray) -> tuple[mx.array, mx.array, mx.array]:
        """(inputs, targets, mask) for windows of ids (-1 padded): rows of each position and of the next one,
        and which (position, next) pairs are both real."""
        return self.batch(self.window_rows(ids))

    def window_rows(self, ids: np.ndarray) -> np.ndarray:
        """Windows of concept ids (-1 padded) as table rows (-1 padded)."""
        return np.where(ids >= 0, self.row_of[np.maximum(ids, 0)], -1)

    def batch(self, rows: np.ndarray) -> tuple[mx.array, mx.array, mx.array]:
        """As `rows`, for windows of table rows (-1 padded): a relation walk's."""
        rows = np.where(rows >= 0, rows, self.pad_row)
        inputs, targets = mx.array(rows[:, :-1]), mx.array(rows[:, 1:])
        mask = mx.array(((rows[:, :-1] < self.pad_row) & (rows[:, 1:] < self.pad_row)).astype(np.float32))
        return inputs, targets, mask


def seen_before(inputs: mx.array) -> mx.array:
    """(B, T, T) rows of the concepts seen up to each position (-1 after it): never the next one."""
    steps = inputs.shape[1]
    causal = mx.arange(steps)[None, :] <= mx.arange(steps)[:, None]
    return mx.where(causal[None], inputs[:, None, :], -1)


def seen_among(inputs: mx.array, candidates: mx.array) -> mx.array:
    """(B * T, N): whether candidate n is among the concepts seen up to each position, as
    comparing `candidates` with `seen_before` would say, through the first step each candidate
    appears in each row: (B, T, N) work where the comparison takes (B, T, N, T)."""
    steps = inputs.shape[1]
    at = mx.arange(steps)[None, :, None]
    first = mx.where(inputs[:, :, None] == candidates[None, None, :], at, steps).min(axis=1)
    return (first[:, None, :] <= at).reshape(-1, candidates.shape[0])


def excluded_candidates(inputs: mx.array, targets: mx.array, negatives: mx.array) -> mx.array:
    """(B * T, B * T + M): which InfoNCE candidates (every position's target, then M store negatives, all
    rows) are no negative for a position: the concepts it has seen, and copies of its own target."""
    candidates = mx.concatenate([targets.reshape(-1), negatives])
    own = mx.arange(candidates.shape[0])[None] == mx.arange(targets.size)[:, None]
    return seen_among(inputs, candidates) | ((candidates[None] == targets.reshape(-1, 1)) & ~own)


def context_counts(inputs: mx.array, targets: mx.array, pad_row: int) -> mx.array:
    """(B, T, T): the context concepts s <= t that a prediction at t must not rank above its target:
    real concepts, other than the target itself."""
    seen = seen_before(inputs)
    return (seen >= 0) & (seen != pad_row) & (seen != targets[:, :, None])
