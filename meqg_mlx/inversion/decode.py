"""Decoding for a run: its store and its config's inversion settings (`meqg decode`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..concepts.store import ConceptStore
from ..encoder.base import Embedder, check_texts
from ..train.run import read_run
from .lookup import Decoded, StoreLookup


class RunDecoder:
    def __init__(self, run_dir: str | Path, threshold: float | None = None):
        meta, config = read_run(run_dir)
        self.store = ConceptStore.open(meta["store"])
        self.lookup = StoreLookup(self.store, config.inversion.lookup_threshold if threshold is None else threshold)

    def vectors(self, vectors: np.ndarray) -> list[Decoded]:
        return self.lookup.decode(vectors)

    def texts(self, texts: list[str], embedder: Embedder) -> list[Decoded]:
        """Each text encoded and decoded again (the round trip `meqg decode TEXT` shows)."""
        check_texts(texts)
        self.store.check_model(embedder.name, embedder.dim)
        return self.lookup.decode(embedder.encode(texts))
