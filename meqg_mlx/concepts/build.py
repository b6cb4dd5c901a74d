"""Ingest: sources -> dedup -> ids -> embed -> atomic batched writes -> domains -> compaction, index."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..config import StoreConfig
from ..encoder.base import Embedder
from ..errors import InputError
from .domains import compute_domains
from .kmeans import assign
from .sources import ConceptRecord
from .store import ConceptStore, NewConcept
from .text import normalize_text
from ..progress import Progress


@dataclass
class BuildSummary:
    added: int = 0
    duplicates: int = 0
    relations: int = 0
    dangling_relations: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    total_concepts: int = 0
    domains: int = 0
    seconds: float = 0.0
    source_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    domain_seconds: float = 0.0
    index_seconds: float = 0.0
    index: str = ""
    skipped: list[str] = field(default_factory=list)  # records and files a directory source could not use, why


def source_records(
    spec: str,
    config: StoreConfig,
    progress: Progress | None = None,
    text_column: str = "text",
    skipped: list[str] | None = None,
) -> Iterator[ConceptRecord]:
    """Records for a --source value: stdlib[:MOD,...], pydoc, wordnet[:DIR][@WORD,...] (@: the nouns below
    those words and their hypernyms), or a file/directory path (what a directory skips goes to `skipped`)."""
    from .sources.files import file_records
    from .sources.prose import pydoc_topics
    from .sources.stdlib import stdlib_code
    from .sources.wordnet import find_wordnet, wordnet_records

    if spec == "stdlib":
        yield from stdlib_code(None, config.doctests, config.doctest_timeout_s, config.doctest_memory_mb, progress)
        yield from pydoc_topics()
    elif spec.startswith("stdlib:"):
        modules = [m for m in spec.partition(":")[2].split(",") if m]
        yield from stdlib_code(modules, config.doctests, config.doctest_timeout_s, config.doctest_memory_mb, progress)
    elif spec == "pydoc":
        yield from pydoc_topics()
    elif spec.partition("@")[0] == "wordnet" or spec.startswith("wordnet:"):
        spec, _, under = spec.partition("@")
        yield from wordnet_records(spec.partition(":")[2] or None, [w for w in under.split(",") if w] or None)
    elif Path(spec).is_dir() and find_wordnet(spec):
        yield from wordnet_records(spec)
    elif Path(spec).exists():
        yield from file_records(spec, text_column, skipped)
    else:
        raise InputError(
            f"unknown source {spec!r}: use stdlib[:MOD,...], pydoc, wordnet[:DIR][@WORD,...], or an existing "
            "file/directory"
        )


class _Plan:
    """Which records are new, which key maps to which id, before anything is written."""

    def __init__(self, store: ConceptStore):
        existing = store.columns(["concept_id", "key", "text"])
        ids = existing["concept_id"].to_pylist()
        self.key_to_id: dict[str, int] = {k: i for k, i in zip(existing["key"].to_pylist(), ids) if k}
        self.text_to_id: dict[str, int] = {normalize_text(t): i for t, i in zip(existing["text"].to_pylist(), ids)}
        self.new: list[ConceptRecord] = []
        self._queued_keys: set[str] = set()
        self._queued_text: dict[str, str] = {}
        self._alias: dict[str, str] = {}

    def offer(self, record: ConceptRecord, summary: BuildSummary) -> bool:
        """Queue a record unless it duplicates a stored or queued concept; returns whether it was queued."""
        if record.key in self.key_to_id or record.key in self._queued_keys:
            summary.duplicates += 1
            return False
        norm = normalize_text(record.text)
        if norm in self.text_to_id:
            self.key_to_id[record.key] = self.text_to_id[norm]
            summary.duplicates += 1
            return False
        if norm in self._queued_text:
            self._alias[record.key] = self._queued_text[norm]
            summary.duplicates += 1
            return False
        self._queued_text[norm] = record.key
        self._queued_keys.add(record.key)
        self.new.append(record)
        return True

    def assign_ids(self, first: int) -> None:
        for offset, record in enumerate(self.new):
            self.key_to_id[record.key] = first + offset
        for alias, key in self._alias.items():
            self.key_to_id[alias] = self.key_to_id[key]


class IngestEngine(Protocol):
    """Embeds and commits a build's planned batches elsewhere (`ray_build.RayIngest`), each with
    `write_batch`; the build has planned them and holds the store's write lock."""

    def write(
        self, store: ConceptStore, batches: list[list[PlannedConcept]], config: StoreConfig, summary, progress
    ) -> None: ...


def build_store(
    store_path: str | Path,
    sources: list[str],
    embedder: Embedder,
    config: StoreConfig | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    text_column: str = "text",
    on_wait: Callable[[str], None] | None = None,
    engine: IngestEngine | None = None,
) -> BuildSummary:
    """Add every new concept from `sources` to the store at `store_path` (created when missing).

    The store's write lock is held throughout; `on_wait` hears once if another writer has it.
    With an `engine` (`ray_build.RayIngest`), its workers embed and commit the planned
    batches; without one, this process does.
    """
    config = config or StoreConfig()
    if not sources:
        raise InputError("no --source given")
    if limit is not None and limit <= 0:
        raise InputError(f"--limit must be positive, got {limit}")
    started = time.perf_counter()
    store = ConceptStore.open_or_create(store_path, embedder.dim, embedder.name, config, on_wait)
    try:
        with store.writing(on_wait):  # from planning to indexing: another build's rows are planned against
            return _build(store, sources, embedder, config, limit, progress, text_column, started, engine)
    except BaseException:
        store.remove_if_empty()  # a build that failed before its first commit leaves no empty store
        raise


def _build(store, sources, embedder, config, limit, progress, text_column, started, engine) -> BuildSummary:
    summary = BuildSummary()
    plan = _Plan(store)
    for spec in sources:
        taken = 0
        records = source_records(spec, config, progress, text_column, summary.skipped)
        for record in records:
            if limit is not None and taken >= limit:
                records.close()
                break
            taken += plan.offer(record, summary)
        summary.per_source[spec] = taken
    summary.source_seconds = time.perf_counter() - started

    if plan.new:
        plan.assign_ids(store.reserve_ids(len(plan.new)))
        if engine is None:
            _write(store, plan, embedder, config, summary, progress)
        else:
            engine.write(store, planned_batches(plan, config.commit_rows, summary), config, summary, progress)
    _refresh_domains(store, config, summary, progress)
    started_index = time.perf_counter()
    if progress:
        progress("compacting and indexing", 0, 1)
    store.optimize()
    store.build_index()
    if progress:
        progress("compacting and indexing", 1, 1)
    summary.index_seconds = time.perf_counter() - started_index
    summary.index = store.index_kind()
    summary.total_concepts = store.count()
    summary.domains = len(store.domains())
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class PlannedConcept:
    """A new concept with its reserved id and resolved relations: all a writer needs (small, picklable)."""

    concept_id: int
    text: str
    kind: str
    key: str
    source: str
    validation: str
    relations: list[tuple[int, str, float]]


def planned_batches(plan: _Plan, commit_rows: int, summary: BuildSummary) -> list[list[PlannedConcept]]:
    """The plan's new records in commit-sized batches, relations resolved to ids (counted in `summary`)."""
    planned = []
    for record in plan.new:
        relations = [(plan.key_to_id[t], ty, w) for t, ty, w in record.relations if t in plan.key_to_id]
        summary.relations += len(relations)
        summary.dangling_relations += len(record.relations) - len(relations)
        planned.append(
            PlannedConcept(
                plan.key_to_id[record.key],
                record.text,
                record.kind,
                record.key,
                record.source,
                record.validation,
                relations,
            )
        )
    return [planned[start : start + commit_rows] for start in range(0, len(planned), commit_rows)]


def write_batch(
    store: ConceptStore,
    batch: list[PlannedConcept],
    embedder: Embedder,
    centroids: np.ndarray | None,
    take_lock: bool = True,
    skip_stored: bool = False,
) -> tuple[int, float, float]:
    """Embed one batch and append it in one commit; returns (rows written, embed s, write s).

    `skip_stored` leaves out ids already in the store, so a batch retried after its
    writer died between commit and reply is not stored twice.
    """
    if skip_stored:
        stored = set(store.ids_between(batch[0].concept_id, batch[-1].concept_id))
        batch = [c for c in batch if c.concept_id not in stored]
    if not batch:
        return 0, 0.0, 0.0
    t0 = time.perf_counter()
    vectors = embedder.encode([c.text for c in batch])
    t1 = time.perf_counter()
    labels, scores = (assign(vectors, centroids)[0], vectors @ centroids.T) if centroids is not None else (None, None)
    store.add(
        [
            NewConcept(
                concept_id=c.concept_id,
                text=c.text,
                vector=vectors[i],
                kind=c.kind,
                key=c.key,
                source=c.source,
                validation=c.validation,
                relations=c.relations,
                domain=int(labels[i]) if labels is not None else -1,
                domain_scores=scores[i].tolist() if scores is not None else [],
            )
            for i, c in enumerate(batch)
        ],
        take_lock=take_lock,
    )
    return len(batch), t1 - t0, time.perf_counter() - t1


def _write(
    store: ConceptStore,
    plan: _Plan,
    embedder: Embedder,
    config: StoreConfig,
    summary: BuildSummary,
    progress: Progress | None,
) -> None:
    centroids = store.domain_centroids()
    total = len(plan.new)
    for batch in planned_batches(plan, config.commit_rows, summary):
        written, embed_seconds, write_seconds = write_batch(store, batch, embedder, centroids)
        summary.embed_seconds += embed_seconds
        summary.write_seconds += write_seconds
        summary.added += written
        if progress:
            progress("embedding and writing", summary.added, total)


def _refresh_domains(
    store: ConceptStore, config: StoreConfig, summary: BuildSummary, progress: Progress | None
) -> None:
    """First build: k-means domains for all concepts. Later builds: new rows were assigned on write."""
    started = time.perf_counter()
    if store.count() == 0:
        return
    if not store.has_domains():
        if progress:
            progress("learning domains (k-means)", 0, 1)
        table = store.columns(["concept_id", "text"])
        ids, vectors = store.all_vectors()
        order = np.argsort(ids)
        texts_by_id = dict(zip(table["concept_id"].to_pylist(), table["text"].to_pylist()))
        ids, vectors = ids[order], vectors[order]
        rows, labels, scores = compute_domains(ids, vectors, [texts_by_id[i] for i in ids.tolist()], config.n_domains)
        store.set_concept_domains(ids, labels, scores)
        store.write_domains(rows)
        if progress:
            progress("learning domains (k-means)", 1, 1)
    elif summary.added:
        store.recount_domains()
    summary.domain_seconds = time.perf_counter() - started
