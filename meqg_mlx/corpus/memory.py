"""The store as the model's memory: where the edges of a concept's nearest neighbours lead.

For each relation, the memory holds the edges training may read (`relations.trainable`).
A read of a concept along a relation returns the targets of the `slots` edges whose
sources are most similar to it, with those similarities: what kNN-successor averages,
handed to the model, which weighs the targets itself (`vmm.model.NextConceptHead`).
No edge out of the store concept read, nor out of any concept of its document, is among
its slots: a held-out concept's whole document is held out, so a training position then
reads what a held-out one reads (its neighbours' facts from other documents, never its
own or its siblings'). Store concepts' reads are computed once (`read_rows`, a table);
any other vector is read by exact search (`read`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from ..atomic import replaced_file
from ..progress import Progress, no_progress
from ..vmm.model import Memory
from .relations import Edges

CHUNK = 1024  # queries per similarity block


class MemoryRead(NamedTuple):
    """`slots` edges per query: their targets (rows, -1 where fewer exist) and their sources' similarity."""

    targets: np.ndarray  # (..., slots) int64
    similarity: np.ndarray  # (..., slots) float32, 0 where the target is -1


class RelationMemory:
    def __init__(self, vectors: np.ndarray, edges: Edges, relations: int, slots: int, groups: np.ndarray):
        """`vectors` (rows, d) unit rows of the store's concepts; `edges` the ones training may read;
        `groups` (rows,) each row's document (`relations.document_groups`)."""
        self.vectors, self.slots, self.groups = vectors, slots, groups
        self.edges = [edges.of(r) for r in range(relations)]
        self._keys = np.zeros(0, np.int64)
        self._gathered: dict[int, tuple[mx.array, mx.array]] = {}
        self._table = MemoryRead(np.zeros((0, slots), np.int64), np.zeros((0, slots), np.float32))

    def all_edges(self) -> Edges:
        """Every edge the memory reads, relation by relation."""
        return Edges(
            *(np.concatenate([getattr(e, name) for e in self.edges]) for name in ("source", "target", "relation"))
        )

    def model_memory(self, read: MemoryRead) -> Memory:
        """A read as the model's input: target vectors (zeros where none), similarities, which slots hold one."""
        valid = read.targets >= 0
        values = np.where(valid[..., None], self.vectors[np.maximum(read.targets, 0)], 0.0).astype(np.float32)
        return Memory(mx.array(values), mx.array(read.similarity), mx.array(valid))

    def read_last(self, last: np.ndarray, relations: np.ndarray, length: int) -> Memory:
        """The model's memory for sequences (N, length) of which only the last position's output is used:
        that position reads `last` (N, d) along `relations` (N,); the memory enters at the head alone, so
        the earlier positions, whose outputs go unused, read nothing."""
        read = self.read(last[:, None], np.asarray(relations).reshape(-1, 1))
        earlier = ((0, 0), (length - 1, 0), (0, 0))
        return self.model_memory(
            MemoryRead(np.pad(read.targets, earlier, constant_values=-1), np.pad(read.similarity, earlier))
        )

    def read(self, queries: np.ndarray, relations: np.ndarray) -> MemoryRead:
        """Reads of arbitrary unit vectors (..., d) along relations (...)."""
        flat = np.asarray(queries, np.float32).reshape(-1, self.vectors.shape[1])
        relations = np.asarray(relations).reshape(-1)
        read = self._search(flat, np.full(len(flat), -1), relations)
        shape = (*np.shape(queries)[:-1], self.slots)
        return MemoryRead(read.targets.reshape(shape), read.similarity.reshape(shape))

    def prepare(
        self, rows: np.ndarray, relations: np.ndarray, cache: Path | None = None, progress: Progress = no_progress
    ) -> None:
        """Compute the reads of store rows along relations (parallel arrays) once, for `read_rows`; `cache`
        (+ .npz) keeps them for the next memory of the same store version, split and slots."""
        path = cache.with_suffix(".npz") if cache is not None else None
        if path is not None and path.is_file() and not len(self._keys):
            try:
                with np.load(path) as kept:
                    self._keys = kept["keys"]
                    self._table = MemoryRead(kept["targets"], kept["similarity"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is recomputed and replaced
        keys = np.unique(self._key(rows, relations))
        keys = keys[~np.isin(keys, self._keys)]
        if not len(keys):
            return
        rows, relations = keys // len(self.edges), keys % len(self.edges)
        fresh = self._search(self.vectors[rows], rows, relations, progress)
        order = np.argsort(np.concatenate([self._keys, keys]), kind="stable")
        self._keys = np.concatenate([self._keys, keys])[order]
        self._table = MemoryRead(*(np.concatenate([old, new])[order] for old, new in zip(self._table, fresh)))
        if path is not None:
            with replaced_file(path) as tmp:
                np.savez(tmp, keys=self._keys, targets=self._table.targets, similarity=self._table.similarity)

    def read_rows(self, rows: np.ndarray, relations: np.ndarray) -> MemoryRead:
        """Reads of store rows (any shape; -1 reads nothing) along relations of the same shape; the pairs
        must have been `prepare`d."""
        keys = self._key(np.maximum(rows, 0), relations).reshape(-1)
        at = np.minimum(np.searchsorted(self._keys, keys), max(len(self._keys) - 1, 0))
        found = (self._keys[at] == keys) if len(self._keys) else np.zeros(len(keys), bool)
        if not found[rows.reshape(-1) >= 0].all():
            raise KeyError("memory read of a row that was not prepared")
        found &= rows.reshape(-1) >= 0
        targets = np.where(found[:, None], self._table.targets[at], -1)
        similarity = np.where(found[:, None], self._table.similarity[at], 0.0).astype(np.float32)
        shape = (*rows.shape, self.slots)
        return MemoryRead(targets.reshape(shape), similarity.reshape(shape))

    def _sources(self, relation: int) -> tuple[mx.array, mx.array]:
        """A relation's source vectors and their documents, gathered once (a live read then costs a matmul)."""
        if relation not in self._gathered:
            edges = self.edges[relation]
            self._gathered[relation] = (mx.array(self.vectors[edges.source]), mx.array(self.groups[edges.source]))
        return self._gathered[relation]

    def _key(self, rows: np.ndarray, relations: np.ndarray) -> np.ndarray:
        return np.asarray(rows, np.int64) * len(self.edges) + np.asarray(relations, np.int64)

    def _search(
        self, queries: np.ndarray, own: np.ndarray, relations: np.ndarray, progress: Progress = no_progress
    ) -> MemoryRead:
        """Exact top-`slots` edges by source similarity; `own` the row each query is (-1: none), whose
        document's edges are left out."""
        targets = np.full((len(queries), self.slots), -1, np.int64)
        similarity = np.zeros((len(queries), self.slots), np.float32)
        own_groups = np.where(own >= 0, self.groups[np.maximum(own, 0)], -1)
        done = 0
        for relation in np.unique(relations):
            edges = self.edges[int(relation)]
            asked = np.flatnonzero(relations == relation)
            if not len(edges):
                done += len(asked)
                continue
            k = min(self.slots, len(edges))
            sources, source_groups = self._sources(int(relation))
            for start in range(0, len(asked), CHUNK):
                block = asked[start : start + CHUNK]
                scores = mx.array(queries[block]) @ sources.T
                scores = mx.where(source_groups[None] == mx.array(own_groups[block])[:, None], -mx.inf, scores)
                top = mx.argpartition(-scores, k - 1, axis=1)[:, :k]
                top_scores = mx.take_along_axis(scores, top, axis=1)
                order = mx.argsort(-top_scores, axis=1)
                top, top_scores = mx.take_along_axis(top, order, 1), mx.take_along_axis(top_scores, order, 1)
                top, top_scores = np.array(top), np.array(top_scores)
                kept = np.isfinite(top_scores)  # a relation with one edge, the query's own, leaves nothing
                targets[block, :k] = np.where(kept, edges.target[top], -1)
                similarity[block, :k] = np.where(kept, top_scores, 0.0)
                done += len(block)
                progress("memory", done, len(queries))
        return MemoryRead(targets, similarity)
