"""A run's decoder: store lookup first; the run's inverter, with correction, for what the store lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..concepts.store import ConceptStore, NewConcept, normalize_text
from ..config import load_config
from ..encoder import embedder_from_config
from ..encoder.base import Embedder, check_texts, check_vectors
from ..train.run import read_run
from .checkpoint import TrainedInverter, inverter_dir
from .corrector import Corrector
from .lookup import Decoded, StoreLookup


class RunDecoder:
    def __init__(self, run_dir: str | Path, threshold: float | None = None, embedder: Embedder | None = None):
        meta, self.config = read_run(run_dir)
        inverter = inverter_dir(run_dir)
        inverter_config = inverter / "config.yaml"
        self.settings = settings = (load_config(inverter_config).inversion if inverter_config.exists()
                                    else self.config.inversion)
        self.store = ConceptStore.open(meta["store"])
        self.embedder = embedder or embedder_from_config(self.config)
        self.store.check_model(self.embedder.name, self.embedder.dim)
        self.lookup = StoreLookup(self.store, settings.lookup_threshold if threshold is None else threshold)
        self.corrector = None
        if (inverter / "model").exists():
            trained = TrainedInverter.load(inverter / "model")
            self.store.check_model(trained.meta.get("embedder", "?"), trained.dim)
            self.corrector = Corrector(trained, self.embedder, settings)

    def vectors(self, vectors: np.ndarray, correction_steps: int | None = None,
                write_back: bool | None = None) -> list[Decoded]:
        """Lookup; misses inverted (when the run has an inverter) and optionally written to the store."""
        vectors = check_vectors(vectors, self.store.dim, "vectors to decode")
        decoded = self.lookup.decode(vectors)
        misses = [i for i, d in enumerate(decoded) if not d.hit]
        if misses and self.corrector is not None:
            seeds = [decoded[i].nearest_text or "" for i in misses] if self.settings.seed_with_nearest else None
            inversions = self.corrector.invert(vectors[misses], correction_steps, seed_texts=seeds)
            for i, inversion in zip(misses, inversions):
                if inversion.text.strip():
                    decoded[i].text = inversion.text
                    decoded[i].source = "nearest" if inversion.from_seed else "inversion"
                    decoded[i].inversion_cosine, decoded[i].correction_steps = inversion.cosine, inversion.steps
            if self.settings.write_back if write_back is None else write_back:
                self.write_back([decoded[i] for i in misses], vectors[misses])
        return decoded

    def texts(self, texts: list[str], correction_steps: int | None = None,
              write_back: bool | None = None) -> list[Decoded]:
        """Each text encoded and decoded again (the round trip `meqg decode TEXT` shows)."""
        check_texts(texts)
        return self.vectors(self.embedder.encode(texts), correction_steps, write_back)

    def write_back(self, decoded: list[Decoded], vectors: np.ndarray) -> int:
        """Inverted texts not already in the store become concepts (source=inversion) with their vectors."""
        known = {normalize_text(t) for t in self.store.columns(["text"])["text"].to_pylist()}
        new = []
        for d, vector in zip(decoded, vectors):
            if d.source == "inversion" and normalize_text(d.text) not in known:
                known.add(normalize_text(d.text))
                new.append((d, vector))
        if not new:
            return 0
        first = self.store.reserve_ids(len(new))
        self.store.add([NewConcept(first + i, d.text, vector, source="inversion") for i, (d, vector) in enumerate(new)])
        for i, (d, _) in enumerate(new):
            d.written_id = first + i
        return len(new)
