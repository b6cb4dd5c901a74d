"""Vector columns: a store's concepts in a second model's space (`VectorColumns`, which the store
holds as `store.vector_columns`: declaring, writing, reading), filling one from an embedder, and
a linear map between two vector columns fit by least squares on the texts both hold.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..encoder.base import Embedder, check_vectors
from ..errors import InputError, StoreError
from ..progress import Progress
from .schema import concepts_schema, vectors_column, vectors_from_column

if TYPE_CHECKING:  # the store holds a VectorColumns: imported for annotations only
    from .store import ConceptStore

PROJECTIONS_DIR = "projections"
COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class VectorColumns:
    """A store's extra vector columns, from other models, recorded in its metadata; `vector` (the
    store's own model) is written by `ConceptStore.add` and read like them."""

    def __init__(self, store: ConceptStore):
        self.store = store

    def declared(self) -> dict[str, dict]:
        """name -> {origin_model, dim, normalized} of the extra columns."""
        return dict(self.store.meta.get("vector_columns", {}))

    def declare(self, name: str, origin_model: str, dim: int, normalized: bool) -> None:
        """A second vector column, from another model; re-declaring with the same model is a no-op."""
        store = self.store
        if not COLUMN_NAME.match(name) or name in concepts_schema(store.dim).names:
            raise InputError(
                f"bad vector column name {name!r}: lower-case letters, digits and _, not one of the store's own columns"
            )
        with store.writing():
            if self.declared().get(name) is not None:
                self.check_model(name, origin_model, dim)
                return
            if name not in store.table.schema.names:  # present after a crash between the two commits below
                store.table.add_columns(pa.field(name, pa.list_(pa.float32(), dim)))
            store.meta["vector_columns"] = {
                **self.declared(),
                name: {"origin_model": origin_model, "dim": dim, "normalized": normalized},
            }
            store.write_meta()

    def models(self) -> dict[str, str]:
        """Every vector column's model, `vector` (the store's own) first."""
        return {"vector": self.store.origin_model, **{n: c["origin_model"] for n, c in self.declared().items()}}

    def check_model(self, name: str, origin_model: str, dim: int) -> None:
        column = self.info(name)
        if dim != column["dim"] or origin_model != column["origin_model"]:
            raise StoreError(
                f"vector column {name!r} holds {column['dim']}-d vectors from {column['origin_model']}; "
                f"refusing {dim}-d vectors from {origin_model}"
            )

    def info(self, name: str) -> dict:
        store = self.store
        if name == "vector":
            return {"origin_model": store.origin_model, "dim": store.dim, "normalized": True}
        columns = self.declared()
        if name not in columns:
            raise StoreError(
                f"store {store.uri} has no vector column {name!r} (has: {', '.join(['vector', *columns])})"
            )
        return columns[name]

    def write(self, name: str, origin_model: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Set column `name` for the given concepts in one merge commit (unit rows if the column is normalized)."""
        column = self.info(name)
        if name == "vector":
            raise StoreError("the main vector column is written by add(), not by the vector columns")
        vectors = np.asarray(vectors, dtype=np.float32)
        self.check_model(name, origin_model, vectors.shape[-1] if vectors.ndim == 2 else -1)
        checked = check_vectors(vectors, column["dim"], f"vectors for column {name!r}")
        update = pa.table(
            {
                "concept_id": pa.array(np.asarray(ids), pa.int64()),
                name: vectors_column(checked if column["normalized"] else vectors, column["dim"]),
            }
        )
        with self.store.writing():
            self.store.table.merge_insert("concept_id").when_matched_update_all().execute(update)

    def read(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the concepts that have column `name` set."""
        column = self.info(name)
        table = self.store.columns(["concept_id", name], f"{name} IS NOT NULL")
        return table["concept_id"].to_numpy().astype(np.int64), vectors_from_column(table[name], column["dim"])

    def missing(self, name: str) -> tuple[np.ndarray, list[str]]:
        """(ids, texts) of the concepts column `name` has no vector for yet."""
        self.info(name)
        table = self.store.columns(["concept_id", "text"], f"{name} IS NULL")
        return table["concept_id"].to_numpy().astype(np.int64), table["text"].to_pylist()


def fill_vector_column(
    store: ConceptStore, name: str, embedder: Embedder, batch_size: int = 1024, progress: Progress | None = None
) -> int:
    """Embed every concept the column lacks with `embedder`, one commit per batch; returns how many."""
    store.vector_columns.declare(name, embedder.name, embedder.dim, embedder.normalized)
    ids, texts = store.vector_columns.missing(name)
    for start in range(0, len(ids), batch_size):
        if progress:
            progress(f"embedding into {name}", start, len(ids))
        store.vector_columns.write(
            name, embedder.name, ids[start : start + batch_size], embedder.encode(texts[start : start + batch_size])
        )
    if progress:
        progress(f"embedding into {name}", len(ids), len(ids))
    return len(ids)


@dataclass
class FitReport:
    """How well the map fits: residual ||XW - Y|| / ||Y|| and the cosine of projected to true rows."""

    shared: int
    train_rows: int
    held_out_rows: int
    train_relative_error: float
    held_out_relative_error: float
    held_out_mean_cosine: float
    ridge: float = 0.0  # the lambda added to the Gram matrix's diagonal (0: plain least squares)


class LinearProjection:
    """y = x @ weight + bias from one vector column's space to another's."""

    def __init__(
        self,
        source: str,
        target: str,
        weight: np.ndarray,
        bias: np.ndarray,
        normalize: bool,
        report: FitReport,
        models: tuple[str, str],
    ):
        self.source, self.target, self.weight, self.bias = source, target, weight, bias
        self.normalize, self.report, self.models = normalize, report, models

    @classmethod
    def fit(
        cls, store: ConceptStore, source: str, target: str, held_out_every: int = 10, ridge: float = 0.0
    ) -> "LinearProjection":
        """Least squares on concepts holding both columns; every Nth id held out.

        `ridge` > 0 adds lambda = ridge x the mean eigenvalue of the training rows' Gram matrix to its
        diagonal (a scale-free strength: 1e-3 barely moves a well-posed fit); the report keeps lambda.
        """
        if not 0.0 <= ridge <= 1e3:
            raise InputError(f"--ridge is a fraction of the Gram matrix's mean eigenvalue in [0, 1000], got {ridge}")
        source_ids, x = store.vector_columns.read(source)
        target_ids, y = store.vector_columns.read(target)
        shared, xi, yi = np.intersect1d(source_ids, target_ids, return_indices=True)
        held = shared % held_out_every == 0
        train = ~held
        if train.sum() <= x.shape[1] + 1:
            raise InputError(
                f"{int(train.sum())} concepts hold both {source!r} and {target!r}; a {x.shape[1]}-d "
                f"map needs more than {x.shape[1] + 1} (fill the column first)"
            )
        x, y = x[xi].astype(np.float64), y[yi].astype(np.float64)
        design = np.hstack([x[train], np.ones((int(train.sum()), 1))])
        if ridge:
            gram = design.T @ design
            strength = ridge * float(np.trace(gram)) / gram.shape[0]
            solution = np.linalg.solve(gram + strength * np.eye(gram.shape[0]), design.T @ y[train])
        else:
            strength = 0.0
            solution = np.linalg.lstsq(design, y[train], rcond=None)[0]
        weight, bias = solution[:-1].astype(np.float32), solution[-1].astype(np.float32)

        def relative_error(rows: np.ndarray) -> float:
            if not rows.any():
                return float("nan")
            residual = x[rows] @ weight + bias - y[rows]
            return float(np.linalg.norm(residual) / np.linalg.norm(y[rows]))

        projected = x[held] @ weight + bias
        cosines = np.einsum("ij,ij->i", projected, y[held]) / (
            np.linalg.norm(projected, axis=1) * np.linalg.norm(y[held], axis=1) + 1e-12
        )
        report = FitReport(
            len(shared),
            int(train.sum()),
            int(held.sum()),
            relative_error(train),
            relative_error(held),
            float(cosines.mean()) if held.any() else float("nan"),
            strength,
        )
        columns = store.vector_columns.models()
        normalize = target == "vector" or store.vector_columns.declared()[target]["normalized"]
        return cls(source, target, weight, bias, normalize, report, (columns[source], columns[target]))

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.weight.shape[0]:
            raise InputError(
                f"projection {self.source}->{self.target} takes {self.weight.shape[0]}-d rows, "
                f"got shape {vectors.shape}"
            )
        out = vectors @ self.weight + self.bias
        return out / np.linalg.norm(out, axis=1, keepdims=True) if self.normalize else out

    @staticmethod
    def name(source: str, target: str) -> str:
        """Where the projection lives in its store: one .npz beside the tables."""
        return f"{PROJECTIONS_DIR}/{source}_to_{target}.npz"

    def save(self, store: ConceptStore) -> str:
        meta = {
            "source": self.source,
            "target": self.target,
            "normalize": self.normalize,
            "models": list(self.models),
            "report": asdict(self.report),
        }
        buffer = io.BytesIO()
        np.savez(buffer, weight=self.weight, bias=self.bias, meta=np.array(json.dumps(meta)))
        name = self.name(self.source, self.target)
        store.location.write_bytes(name, buffer.getvalue())
        return f"{store.uri}/{name}"

    @classmethod
    def load(cls, store: ConceptStore, source: str, target: str) -> "LinearProjection":
        path = f"{store.uri}/{cls.name(source, target)}"
        saved = store.location.read_bytes(cls.name(source, target))
        if saved is None:
            raise StoreError(
                f"no projection {source}->{target} in {store.uri} "
                f"(fit one with `meqg store project --source {source} --target {target}`)"
            )
        try:
            with np.load(io.BytesIO(saved), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                projection = cls(
                    source,
                    target,
                    data["weight"],
                    data["bias"],
                    bool(meta["normalize"]),
                    FitReport(**meta["report"]),
                    tuple(meta["models"]),
                )
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise StoreError(f"corrupt projection {path}: {exc}") from exc
        columns = store.vector_columns.models()
        if (columns.get(source), columns.get(target)) != projection.models:
            raise StoreError(
                f"projection {path} was fit for {projection.models}; the store's columns now hold "
                f"{(columns.get(source), columns.get(target))}"
            )
        return projection
