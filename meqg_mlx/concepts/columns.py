"""Vector columns: a store's concepts in a second model's space, and a linear
map between two vector columns fit by least squares on the texts both hold.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import numpy as np

from ..encoder.base import Embedder
from ..errors import InputError, StoreError
from .store import ConceptStore
from ..progress import Progress

PROJECTIONS_DIR = "projections"


def fill_vector_column(
    store: ConceptStore, name: str, embedder: Embedder, batch_size: int = 1024, progress: Progress | None = None
) -> int:
    """Embed every concept the column lacks with `embedder`, one commit per batch; returns how many."""
    store.declare_vector_column(name, embedder.name, embedder.dim, embedder.normalized)
    ids, texts = store.missing_from_column(name)
    for start in range(0, len(ids), batch_size):
        if progress:
            progress(f"embedding into {name}", start, len(ids))
        store.write_column(
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
        source_ids, x = store.read_column(source)
        target_ids, y = store.read_column(target)
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
        columns = {"vector": store.origin_model, **{n: c["origin_model"] for n, c in store.vector_columns().items()}}
        normalize = target == "vector" or store.vector_columns()[target]["normalized"]
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
        columns = {"vector": store.origin_model, **{n: c["origin_model"] for n, c in store.vector_columns().items()}}
        if (columns.get(source), columns.get(target)) != projection.models:
            raise StoreError(
                f"projection {path} was fit for {projection.models}; the store's columns now hold "
                f"{(columns.get(source), columns.get(target))}"
            )
        return projection
