"""Store lookup: a vector's text is its nearest concept's, when that concept is close enough.

A miss still reports the nearest concept and its cosine, so a caller can tell
"nothing near" from "near but not near enough" and hand the vector to the inverter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..concepts.store import ConceptStore
from ..encoder.base import check_vectors
from ..errors import ConfigError


@dataclass
class Decoded:
    """A vector's decoded text and how far that text is from the vector.

    `cosine` is always the shown text's own: the vector against the text's embedding (a store
    concept's vector is its text's embedding by the store's embedder; an inverted text is
    re-embedded). `score` is the nearest store concept's, which a miss also reports.
    """

    text: str | None  # the store concept's text on a hit, the inverter's or the nearest's on a miss, else None
    score: float  # cosine to the nearest store concept
    concept_id: int | None  # the nearest concept (also on a miss)
    nearest_text: str | None  # its text (also on a miss)
    source: str | None = None  # "store" | "inversion" | "nearest" (no inverted text came closer) | None
    cosine: float | None = None  # the vector vs the embedding of `text` (None when there is no text)
    correction_steps: int | None = None  # correction steps that ran for it
    found_at: int | None = None  # the correction step that wrote `text` (0: the first pass or the seed)
    written_id: int | None = None  # the concept id it was written back to the store as
    not_written: str | None = None  # why write-back left it out

    @property
    def hit(self) -> bool:
        """A store concept stood for the vector."""
        return self.source == "store"


class StoreLookup:
    def __init__(self, store: ConceptStore, threshold: float = 0.9):
        if not -1.0 <= threshold <= 1.0:
            raise ConfigError(f"lookup threshold is a cosine in [-1, 1], got {threshold}")
        self.store, self.threshold = store, threshold

    def decode(self, vectors: np.ndarray) -> list[Decoded]:
        """(n, dim) or (dim,) vectors -> one Decoded each (rows are normalized first)."""
        out = []
        for row in check_vectors(vectors, self.store.dim, "vectors to decode"):
            hits = self.store.search_vector(row, k=1)
            if not hits:
                out.append(Decoded(None, float("nan"), None, None))
                continue
            best = hits[0]
            hit = best.score >= self.threshold
            out.append(
                Decoded(best.text, best.score, best.concept_id, best.text, "store", best.score)
                if hit
                else Decoded(None, best.score, best.concept_id, best.text)
            )
        return out
