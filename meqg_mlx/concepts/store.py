"""ConceptStore: the LanceDB tables that hold concepts, their relations and domains.

Every `add` is one Lance commit, so a crash loses at most the batch in flight and
never corrupts the table. Concept ids are reserved in the store's metadata file
before rows are written, so an id is never handed out twice, even after a crash.
Every write holds the store's write lock (`lock.py`), and taking it re-reads what
other processes committed, so two writers at once cannot collide.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import lancedb
from lancedb.index import BTree
import numpy as np
import pyarrow as pa

from ..config import StoreConfig
from ..encoder.base import check_vectors
from ..errors import InputError, StoreError
from .index import PartitionedIndex
from .location import Location, open_location
from .lock import LOCK_FILE, write_lock
from .columns import VectorColumns
from .search_index import SearchIndex
from .schema import (
    CONCEPTS_TABLE,
    DOMAINS_TABLE,
    KINDS,
    RELATION_TYPE,
    VALIDATIONS,
    concepts_schema,
    domains_schema,
    vectors_column,
    vectors_from_column,
)

META_FILE = "meqg_store.json"
STORE_FORMAT = "meqg-concept-store"
SCHEMA_VERSION = 1
RANDOM_READS_MAX = 1024  # sample_vectors: up to this many rows by random reads, more by a scan


@dataclass
class NewConcept:
    """A row to add; `vector` must be a unit float32 row of the store's dim."""

    concept_id: int
    text: str
    vector: np.ndarray
    kind: str = "text"
    key: str | None = None
    source: str = ""
    validation: str = "none"
    relations: list[tuple[int, str, float]] = field(default_factory=list)
    domain: int = -1
    domain_scores: list[float] = field(default_factory=list)


@dataclass
class Hit:
    concept_id: int
    score: float
    text: str
    kind: str
    domain: int
    key: str | None
    relations: list[dict] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict, score: float) -> "Hit":
        return cls(
            row["concept_id"], score, row["text"], row["kind"], row["domain"], row["key"], row["relations"] or []
        )


class ConceptStore:
    """`meqg_store.json` and a LanceDB database under `lance/`, in a directory or on S3 (`location.py`)."""

    def __init__(self, location: Location, meta: dict, db, table, config: StoreConfig):
        self.location = location
        self.uri: str = location.uri
        self.meta = meta
        self.db = db
        self.table = table
        self.config = config
        self.search_index = SearchIndex(self)
        self.vector_columns = VectorColumns(self)  # extra columns from other models (columns.py)
        self._positions: tuple[int, np.ndarray] | None = None

    # ----- lifecycle -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def origin_model(self) -> str:
        return str(self.meta["origin_model"])

    @staticmethod
    def locate(uri: str | Path, config: StoreConfig | None = None):
        config = config or StoreConfig()
        return open_location(uri, config.storage_options, config.lock_lease_s)

    @classmethod
    def exists(cls, uri: str | Path, config: StoreConfig | None = None) -> bool:
        """Whether a store (its metadata file) is at `uri`."""
        return META_FILE in cls.locate(uri, config).names()

    @classmethod
    def create(cls, uri: str | Path, dim: int, origin_model: str, config: StoreConfig | None = None) -> "ConceptStore":
        config = config or StoreConfig()
        location = cls.locate(uri, config)
        names = location.names()
        if META_FILE in names:
            raise StoreError(f"a concept store already exists at {location.uri}")
        if any(name != LOCK_FILE for name in names):
            raise StoreError(f"{location.uri} exists and is not an empty directory")
        db = _connect(location)
        table = db.create_table(CONCEPTS_TABLE, schema=concepts_schema(dim))
        meta = {
            "format": STORE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "dim": dim,
            "origin_model": origin_model,
            "next_id": 0,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        _write_json(location, meta)
        return cls(location, meta, db, table, config)

    @classmethod
    def open(cls, uri: str | Path, config: StoreConfig | None = None) -> "ConceptStore":
        config = config or StoreConfig()
        location = cls.locate(uri, config)
        path = location.uri
        if not location.exists():
            raise StoreError(f"no concept store at {path} (build one with `meqg data build --store {path}`)")
        meta = _read_meta(location)
        try:
            db = _connect(location)
            table = db.open_table(CONCEPTS_TABLE)
            vector_type = table.schema.field("vector").type
            table.search().select(["concept_id"]).limit(None).to_arrow()  # touches every data file
        except Exception as exc:  # noqa: BLE001  (lance raises many types for damaged data)
            raise StoreError(f"corrupt store {path}: concepts table unreadable ({_first_line(exc)})") from exc
        if getattr(vector_type, "list_size", None) != int(meta["dim"]):
            raise StoreError(f"corrupt store {path}: vector column does not have dim {meta['dim']}")
        for name, column in meta.get("vector_columns", {}).items():
            if name not in table.schema.names or table.schema.field(name).type.list_size != column["dim"]:
                raise StoreError(f"corrupt store {path}: vector column {name!r} missing or not {column['dim']}-d")
        return cls(location, meta, db, table, config)

    @classmethod
    def open_or_create(
        cls,
        uri: str | Path,
        dim: int,
        origin_model: str,
        config: StoreConfig | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> "ConceptStore":
        location = cls.locate(uri, config)
        location.names()  # a path that is a file fails here, before the lock file is made
        with write_lock(location, on_wait):  # two builds creating one store at once: one creates, the other opens
            if META_FILE in location.names():
                store = cls.open(uri, config)
                store.check_model(origin_model, dim)
                return store
            return cls.create(uri, dim, origin_model, config)

    @classmethod
    def of_run(cls, meta: dict, config: StoreConfig, path: str | Path | None = None) -> "ConceptStore":
        """The store a run (its run.json `meta`) trained on: where it recorded it, or at `path` (the same
        store, moved), which must hold the recorded encoder's vectors and at least the recorded version."""
        if path is None:
            if not cls.locate(meta["store"], config).exists():
                raise StoreError(
                    f"the run's store {meta['store']} is not there (moved or deleted): "
                    "pass --store with where it is now"
                )
            return cls.open(meta["store"], config)
        store = cls.open(path, config)
        recorded = meta.get("store_record") or {}
        for key, value in (("origin_model", store.origin_model), ("dim", store.dim)):
            if key in recorded and recorded[key] != value:
                raise StoreError(f"{store.uri} holds {key} {value!r}; the run trained on {recorded[key]!r}")
        if recorded.get("version", 0) > store.table.version:
            raise StoreError(
                f"{store.uri} is at table version {store.table.version}, older than the run's store "
                f"(version {recorded['version']}): not the store the run trained on"
            )
        return store

    def record(self) -> dict:
        """What a run (run.json) and an export say of the store: where, which encoder, how many, which version."""
        return {
            "path": self.uri,
            "origin_model": self.origin_model,
            "dim": self.dim,
            "concepts": self.count(),
            "version": self.table.version,
        }

    def write_meta(self) -> None:
        """`meqg_store.json` as `self.meta` now says (atomically; under the write lock)."""
        _write_json(self.location, self.meta)

    def check_model(self, origin_model: str, dim: int) -> None:
        """Refuse to mix models or dims in one vector column."""
        if dim != self.dim:
            raise StoreError(f"store {self.uri} holds {self.dim}-d vectors; got {dim}-d from {origin_model}")
        if origin_model != self.origin_model:
            raise StoreError(f"store {self.uri} holds vectors from {self.origin_model}; refusing {origin_model}")

    # ----- writing ---------------------------------------------------------------------------
    @contextmanager
    def writing(self, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the store's write lock (`lock.py`); on taking it, re-read what other writers committed."""
        with write_lock(self.location, on_wait) as taken:
            if taken:
                self.meta = _read_meta(self.location)
                self.refresh()
            yield

    def refresh(self) -> None:
        """See the table's latest version (rows other processes committed since this one last looked)."""
        self.table.checkout_latest()
        self._positions = None
        self.search_index.forget()

    def remove_if_empty(self) -> None:
        """Delete the store if it holds no concept (a build that failed before writing any)."""
        with self.writing():
            if self.count() > 0:
                return
            self.location.remove_store(keep=LOCK_FILE)
        self.location.remove_empty_dir(LOCK_FILE)

    def reserve_ids(self, count: int) -> int:
        """Durably reserve `count` fresh concept ids; returns the first."""
        with self.writing():
            first = max(int(self.meta["next_id"]), self._max_id() + 1)
            self.meta["next_id"] = first + count
            self.write_meta()
            return first

    def add(self, concepts: list[NewConcept], take_lock: bool = True) -> int:
        """Append rows in one atomic commit; returns the new table version.

        `take_lock=False` is for a distributed build's workers: the build's driver holds
        the write lock for them (and reserved their ids); Lance commits concurrent appends safely.
        """
        if not concepts:
            return self.table.version
        for c in concepts:
            if np.size(c.vector) != self.dim:
                raise InputError(
                    f"vector of concept {c.concept_id} has dimension {np.size(c.vector)}, the store expects {self.dim}"
                )
        vectors = check_vectors(np.stack([np.asarray(c.vector, np.float32).reshape(-1) for c in concepts]), self.dim)
        for c in concepts:
            if not c.text or not c.text.strip():
                raise StoreError(f"concept {c.concept_id} has empty text")
            if c.kind not in KINDS:
                raise StoreError(f"concept {c.concept_id} has unknown kind {c.kind!r}")
            if c.validation not in VALIDATIONS:
                raise StoreError(f"concept {c.concept_id} has unknown validation {c.validation!r}")
            if c.concept_id >= int(self.meta["next_id"]) or c.concept_id < 0:
                raise StoreError(f"concept id {c.concept_id} was not reserved")
        now = datetime.now(timezone.utc)
        n = len(concepts)
        data = pa.table(
            {
                "concept_id": pa.array([c.concept_id for c in concepts], pa.int64()),
                "key": pa.array([c.key for c in concepts], pa.string()),
                "text": pa.array([c.text for c in concepts], pa.string()),
                "kind": pa.array([c.kind for c in concepts], pa.string()),
                "vector": vectors_column(vectors, self.dim),
                "origin_model": pa.array([self.origin_model] * n, pa.string()),
                "dim": pa.array([self.dim] * n, pa.int32()),
                "domain": pa.array([c.domain for c in concepts], pa.int32()),
                "domain_scores": pa.array([list(c.domain_scores) for c in concepts], pa.list_(pa.float32())),
                "relations": pa.array(
                    [[{"target_id": t, "type": ty, "weight": w} for t, ty, w in c.relations] for c in concepts],
                    pa.list_(RELATION_TYPE),
                ),
                "source": pa.array([c.source for c in concepts], pa.string()),
                "validation": pa.array([c.validation for c in concepts], pa.string()),
                "created_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            },
            schema=concepts_schema(self.dim),
        )
        with self.writing() if take_lock else contextlib.nullcontext():
            for name, column in self.vector_columns.declared().items():  # filled later by `meqg store add-vectors`
                data = data.append_column(
                    pa.field(name, pa.list_(pa.float32(), column["dim"])),
                    pa.nulls(n, pa.list_(pa.float32(), column["dim"])),
                )
            self.table.add(data)
            self.search_index.forget()
            return self.table.version

    def remove(self, ids: list[int]) -> dict:
        """Delete concepts, and the relations of other concepts that point at them, in one commit (one
        table version); the domains' counts and representatives, and an in-memory search index, follow.
        An id the store does not hold is refused before anything changes."""
        gone = sorted({int(i) for i in ids})
        if not gone:
            raise InputError("no concept ids to remove")
        with self.writing():
            columns = self.columns(["concept_id", "relations"])
            held = columns["concept_id"].to_pylist()
            missing = sorted(set(gone) - set(held))
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise InputError(f"no concept with id {missing[0]} in {self.uri}{more}: nothing removed")
            dropped, changed_ids, changed = 0, [], []
            removed = set(gone)
            for concept_id, relations in zip(held, columns["relations"].to_pylist()):
                if concept_id in removed or not relations:
                    continue
                kept = [r for r in relations if r["target_id"] not in removed]
                if len(kept) < len(relations):
                    dropped += len(relations) - len(kept)
                    changed_ids.append(concept_id)
                    changed.append(kept)
            update = pa.table(
                {
                    "concept_id": pa.array(changed_ids, pa.int64()),
                    "relations": pa.array(changed, pa.list_(RELATION_TYPE)),
                }
            )
            merge = self.table.merge_insert("concept_id").when_matched_update_all()
            merge.when_not_matched_by_source_delete(f"concept_id IN ({', '.join(map(str, gone))})").execute(update)
            self._positions = None
            self.search_index.forget()
            self.recount_domains()
            if PartitionedIndex.load(self.location) is not None:
                self.build_index(force=True, kind="memory")  # its partitions held the removed vectors
            return {"removed": len(gone), "relations_dropped": dropped, "version": self.table.version}

    def optimize(self) -> None:
        """Compact small fragments left by batched appends; keep a B-tree on concept_id for lookups."""
        with self.writing():
            self.table.optimize()
            if not any(index.columns == ["concept_id"] for index in self.table.list_indices()):
                self.table.create_index("concept_id", config=BTree())

    # ----- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        return self.table.count_rows()

    def _max_id(self) -> int:
        if self.count() == 0:
            return -1
        ids = self.table.search().select(["concept_id"]).limit(None).to_arrow()["concept_id"]
        return int(pa.compute.max(ids).as_py())

    def ids_between(self, first: int, last: int) -> list[int]:
        """Stored concept ids in [first, last] (the B-tree on concept_id serves it)."""
        self.refresh()
        return self.columns(["concept_id"], f"concept_id >= {int(first)} AND concept_id <= {int(last)}")[
            "concept_id"
        ].to_pylist()

    def columns(self, names: list[str], where: str | None = None) -> pa.Table:
        query = self.table.search().select(names).limit(None)
        if where:
            query = query.where(where)
        return query.to_arrow()

    def get(self, ids: list[int]) -> list[dict]:
        """Rows (without vectors) for the given ids, in the order asked; unknown ids are skipped.

        Rows are taken by offset (id -> offset map built once per table version):
        7 ms instead of 17 ms for a B-tree `IN` query at 118k rows.
        """
        offsets = self._offsets(ids)
        if not offsets:
            return []
        names = [
            f.name for f in self.table.schema if f.name != "vector" and f.name not in self.vector_columns.declared()
        ]
        rows = {r["concept_id"]: r for r in self.table.take_offsets(offsets).select(names).to_arrow().to_pylist()}
        return [rows[i] for i in ids if i in rows]

    def _offsets(self, ids: list[int]) -> list[int]:
        """Sorted distinct row offsets of the ids that exist (unknown ids dropped)."""
        positions = self._row_positions()
        return sorted({int(positions[i]) for i in ids if 0 <= i < len(positions) and positions[i] >= 0})

    def _row_positions(self) -> np.ndarray:
        """positions[concept_id] = row offset in the current table version, -1 where absent."""
        version = self.table.version
        if self._positions is None or self._positions[0] != version:
            ids = self.columns(["concept_id"])["concept_id"].to_numpy()
            positions = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int64)
            positions[ids] = np.arange(len(ids))
            self._positions = (version, positions)
        return self._positions[1]

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored vectors for the given ids, in the order asked; unknown ids are skipped."""
        offsets = self._offsets(ids)
        if not offsets:
            return np.zeros((0, self.dim), dtype=np.float32)
        table = self.table.take_offsets(offsets).select(["concept_id", "vector"]).to_arrow()
        order = {cid: i for i, cid in enumerate(table["concept_id"].to_pylist())}
        matrix = vectors_from_column(table["vector"], self.dim)
        return matrix[[order[i] for i in ids if i in order]]

    def vector_batches(self, where: str | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) a batch at a time, in table order: a scan that never holds the whole store."""
        query = self.table.search().select(["concept_id", "vector"]).limit(None)
        if where:
            query = query.where(where)
        for batch in query.to_batches(rows):
            ids = batch.column("concept_id").to_numpy().astype(np.int64)
            yield ids, vectors_from_column(batch.column("vector"), self.dim)

    def all_vectors(self, where: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector), scanned into one preallocated matrix (peak: the matrix and a batch)."""
        total = self.table.count_rows(where)
        ids, vectors = np.empty(total, dtype=np.int64), np.empty((total, self.dim), dtype=np.float32)
        filled, later = 0, []
        for batch_ids, batch_vectors in self.vector_batches(where):
            fits = min(len(batch_ids), total - filled)
            ids[filled : filled + fits], vectors[filled : filled + fits] = batch_ids[:fits], batch_vectors[:fits]
            filled += fits
            if fits < len(batch_ids):  # rows a writer committed after the count
                later.append((batch_ids[fits:], batch_vectors[fits:]))
        if later:
            return np.concatenate([ids] + [i for i, _ in later]), np.concatenate([vectors] + [v for _, v in later])
        return ids[:filled], vectors[:filled]

    def sample_vectors(self, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`count` rows drawn uniformly: a few by random reads, many in one sequential scan
        (each random read is a round trip on S3; a scan reads the whole table once)."""
        total = self.table.count_rows()
        chosen = np.sort(np.random.default_rng(seed).choice(total, min(count, total), replace=False))
        if not len(chosen):
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        if len(chosen) <= RANDOM_READS_MAX:
            taken = self.table.take_offsets(chosen.tolist()).select(["concept_id", "vector"]).to_arrow()
            return taken["concept_id"].to_numpy().astype(np.int64), vectors_from_column(taken["vector"], self.dim)
        ids, vectors, start = [], [], 0
        for batch_ids, batch_vectors in self.vector_batches():
            low, high = np.searchsorted(chosen, [start, start + len(batch_ids)])
            picked = chosen[low:high] - start
            ids.append(batch_ids[picked])
            vectors.append(batch_vectors[picked])
            start += len(batch_ids)
        return np.concatenate(ids), np.concatenate(vectors)

    def neighbors(self, concept_id: int, relation_type: str | None = None) -> list[tuple[str, float, dict]]:
        """Outgoing relations of a concept as (type, weight, target row); dangling targets are skipped."""
        rows = self.get([concept_id])
        if not rows:
            raise StoreError(f"no concept with id {concept_id} in {self.uri}")
        relations = [r for r in rows[0]["relations"] or [] if relation_type in (None, r["type"])]
        targets = {row["concept_id"]: row for row in self.get([r["target_id"] for r in relations])}
        return [(r["type"], r["weight"], targets[r["target_id"]]) for r in relations if r["target_id"] in targets]

    # ----- search ----------------------------------------------------------------------------
    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        query = check_vectors(vector, self.dim, "query vector")[0]
        ids, scores = self.search_index.search(query, k)
        rows = {r["concept_id"]: r for r in self.get(ids.tolist())}
        return [Hit.from_row(rows[i], float(s)) for i, s in zip(ids.tolist(), scores.tolist()) if i in rows]

    def nearest(self, vector: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosines of the k nearest concepts, without fetching their rows (fast)."""
        return self.search_index.search(check_vectors(vector, self.dim, "query vector")[0], k)

    def build_index(self, force: bool = False, kind: str | None = None) -> bool:
        """(Re)build the search index when the store is large enough; returns whether it did.

        `kind` "memory" (IVF-flat, `index.py`) or "disk" (LanceDB IVF_RQ, `disk_index.py`);
        by default "disk" from `store.disk_index_min_rows` rows on. An index that already
        covers >= 90% of the rows is kept: the rest is searched exactly (`search_index.py`).
        """
        return self.search_index.build(force, kind)

    def index_kind(self) -> str:
        return self.search_index.describe()

    # ----- domains ---------------------------------------------------------------------------
    def has_domains(self) -> bool:
        return DOMAINS_TABLE in _table_names(self.db)

    def domains(self) -> list[dict]:
        if not self.has_domains():
            return []
        rows = self.db.open_table(DOMAINS_TABLE).to_arrow().to_pylist()
        return sorted(rows, key=lambda r: r["domain"])

    def domain_centroids(self) -> np.ndarray | None:
        rows = self.domains()
        if not rows:
            return None
        return np.asarray([r["centroid"] for r in rows], dtype=np.float32)

    def write_domains(self, domains: list[dict]) -> None:
        """Replace the domains table in one commit."""
        table = pa.Table.from_pylist(domains, schema=domains_schema(self.dim))
        with self.writing():
            self.db.create_table(DOMAINS_TABLE, table, mode="overwrite")

    def recount_domains(self) -> None:
        """The domains' member counts (and representatives still in the store) from the concepts' labels."""
        rows = self.domains()
        if not rows:
            return
        columns = self.columns(["concept_id", "domain"])
        labels = np.asarray(columns["domain"].to_pylist(), np.int64)
        counts = np.bincount(labels[labels >= 0], minlength=len(rows))
        held = set(columns["concept_id"].to_pylist())
        for row in rows:
            row["count"] = int(counts[row["domain"]]) if row["domain"] < len(counts) else 0
            row["representative_ids"] = [i for i in row["representative_ids"] if i in held]
        self.write_domains(rows)

    def set_concept_domains(self, ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> None:
        """Update each concept's domain and domain_scores in one merge commit."""
        update = pa.table(
            {
                "concept_id": pa.array(ids, pa.int64()),
                "domain": pa.array(labels, pa.int32()),
                "domain_scores": pa.array(list(scores.astype(np.float32)), pa.list_(pa.float32())),
            }
        )
        with self.writing():
            self.table.merge_insert("concept_id").when_matched_update_all().execute(update)

    # ----- summary ---------------------------------------------------------------------------
    def relation_counts(self) -> dict[str, int]:
        """How many edges of each relation type the store holds, by type name."""
        types = pa.compute.list_flatten(self.columns(["relations"])["relations"]).combine_chunks()
        if not len(types):
            return {}
        counts = pa.compute.value_counts(types.field("type")).to_pylist()
        return {c["values"]: int(c["counts"]) for c in sorted(counts, key=lambda c: c["values"])}

    def stats(self) -> dict:
        info = self.columns(["kind", "source", "validation", "relations", "domain"])

        def counts(name):
            values, freq = (
                np.unique(np.asarray(info[name].to_pylist(), dtype=object).astype(str), return_counts=True)
                if info.num_rows
                else ([], [])
            )
            return {str(v): int(c) for v, c in zip(values, freq)}

        relations = pa.compute.list_value_length(info["relations"]).to_numpy(zero_copy_only=False)
        table_stats = self.table.stats()
        return {
            "path": self.uri,
            "concepts": info.num_rows,
            "relations": int(np.nansum(relations)) if len(relations) else 0,
            "relation_types": self.relation_counts(),
            "dim": self.dim,
            "origin_model": self.origin_model,
            "vector_columns": {
                name: {**column, "filled": info.num_rows - len(self.vector_columns.missing(name)[0])}
                for name, column in self.vector_columns.declared().items()
            },
            "table_version": self.table.version,
            "fragments": table_stats["fragment_stats"]["num_fragments"],
            "bytes": table_stats["total_bytes"],
            "kinds": counts("kind"),
            "sources": counts("source"),
            "validation": counts("validation"),
            "domains": [{"domain": d["domain"], "label": d["label"], "count": d["count"]} for d in self.domains()],
            "index": self.index_kind(),
        }


def _table_names(db) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return list(db.table_names())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(location):
    try:
        return lancedb.connect(location.lance_uri, storage_options=location.storage_options)
    except (OSError, ValueError, RuntimeError) as exc:
        raise StoreError(f"cannot open the LanceDB database of {location.uri}: {_first_line(exc)}") from None


def _read_meta(location) -> dict:
    """The store's metadata file, checked field by field: a bad one is a one-line StoreError."""
    meta_path = f"{location.uri}/{META_FILE}"
    data = location.read_bytes(META_FILE)
    if data is None:
        raise StoreError(f"{location.uri} is not a meqg concept store (no {META_FILE})")
    try:
        meta = json.loads(data.decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"it holds {type(meta).__name__}, not an object")
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, not {STORE_FORMAT!r}")
        if int(meta["dim"]) <= 0 or int(meta["next_id"]) < 0 or not isinstance(meta["origin_model"], str):
            raise ValueError("dim, next_id or origin_model out of range")
        columns = meta.get("vector_columns", {})
        if not isinstance(columns, dict) or not all(
            isinstance(c, dict) and isinstance(c.get("dim"), int) and isinstance(c.get("origin_model"), str)
            for c in columns.values()
        ):
            raise ValueError("vector_columns must map names to {origin_model, dim, normalized}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise StoreError(f"corrupt store metadata {meta_path}: {_first_line(exc)}") from None
    return meta


def _write_json(location, data: dict) -> None:
    location.write_bytes(META_FILE, json.dumps(data, indent=2).encode("utf-8"))
