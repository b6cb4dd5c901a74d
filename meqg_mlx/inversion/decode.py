"""A run's decoder: store lookup first; the run's inverter, with correction, for what the store lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..concepts.columns import LinearProjection
from ..concepts.store import ConceptStore, NewConcept, normalize_text
from ..config import InversionConfig, MeqgConfig, load_config, load_run
from ..encoder import embedder_from_config, load_embedder
from ..encoder.base import Embedder, check_texts, check_vectors
from ..errors import InputError
from ..runs import RunDir
from .checkpoint import TrainedInverter
from .corrector import Corrector, Inversion
from .lookup import Decoded, StoreLookup


class ProjectedCorrector:
    """A corrector in another model's space: targets mapped there by the store's projection,
    cosines reported back in the run's own space (the written text re-embedded by `embedder`)."""

    def __init__(self, corrector: Corrector, projection: LinearProjection, embedder: Embedder):
        self.corrector, self.projection, self.embedder = corrector, projection, embedder

    def invert(self, targets: np.ndarray, correction_steps: int | None = None, **options) -> list[Inversion]:
        targets = check_vectors(targets, self.projection.weight.shape[0], "vectors to invert")
        inversions = self.corrector.invert(self.projection(targets), correction_steps, **options)
        written = [i for i, inversion in enumerate(inversions) if inversion.text.strip()]
        if written:
            embedded = self.embedder.encode([inversions[i].text for i in written])
            for i, vector in zip(written, embedded):
                inversions[i].cosine = float(vector @ targets[i])
        return inversions


def vec2text_corrector(store: ConceptStore, inversion: InversionConfig, embedder: Embedder) -> ProjectedCorrector:
    """vec2text models on the store's column of their embedder's vectors, reached by the store's projection."""
    from .vec2text import Vec2TextInverter

    name = inversion.vec2text_column
    column = store.vector_columns().get(name)
    if column is None or not inversion.vec2text_embedder:
        raise InputError(
            f"vec2text needs inversion.vec2text_embedder and a store vector column of its vectors "
            f"(inversion.vec2text_column {name!r}; `meqg store add-vectors`)"
        )
    vec2text_embedder = load_embedder(
        "mlx", inversion.vec2text_embedder, output="sentence" if column["normalized"] else "mean"
    )
    store.check_column_model(name, vec2text_embedder.name, vec2text_embedder.dim)
    inverter = Vec2TextInverter(
        inversion.vec2text_inverter,
        Path(inversion.vec2text_embedder) / "tokenizer.json",
        inversion.vec2text_corrector or None,
        num_beams=inversion.vec2text_num_beams,
    )
    if inverter.dim != column["dim"]:
        raise InputError(f"the vec2text inverter reads {inverter.dim}-d vectors; column {name!r} is {column['dim']}-d")
    return ProjectedCorrector(
        Corrector(inverter, vec2text_embedder, inversion), LinearProjection.load(store, "vector", name), embedder
    )


class RunDecoder:
    """Lookup in `store`; misses go to `corrector` (an inverter in its correction loop) when there is one."""

    def __init__(
        self,
        store: ConceptStore,
        embedder: Embedder,
        inversion: InversionConfig,
        corrector: Corrector | ProjectedCorrector | None = None,
        threshold: float | None = None,
    ):
        store.check_model(embedder.name, embedder.dim)
        self.store, self.embedder, self.inversion, self.corrector = store, embedder, inversion, corrector
        self.lookup = StoreLookup(store, inversion.lookup_threshold if threshold is None else threshold)

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        vec2text: dict[str, str] | None = None,
        store_path: str | Path | None = None,
    ) -> "RunDecoder":
        """A run's decoder: its store (or the one at `store_path`: moved), its encoder and its inverter (or
        the vec2text models its settings name).

        `vec2text` overrides the inversion.vec2text_* settings (keys inverter, corrector, embedder, column).
        """
        run = RunDir(run_dir)
        meta, config = load_run(run)
        store = ConceptStore.of_run(meta, config.store, store_path)
        return cls.for_run(run, meta, config, threshold, embedder, vec2text, store)

    @classmethod
    def for_run(
        cls,
        run: RunDir,
        meta: dict,
        config: MeqgConfig,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        vec2text: dict[str, str] | None = None,
        store: ConceptStore | None = None,
    ) -> "RunDecoder":
        """`from_run` for a caller that has read the run's run.json and config (and opened its store) already."""
        inverter = run.inverter
        inversion = load_config(inverter.config_path).inversion if inverter.config_path.exists() else config.inversion
        inversion = dataclasses.replace(
            inversion, **{f"vec2text_{k}": str(v) for k, v in (vec2text or {}).items() if v is not None}
        )
        store = store or ConceptStore.of_run(meta, config.store)
        embedder = embedder or embedder_from_config(config)
        store.check_model(embedder.name, embedder.dim)
        corrector = None
        if inversion.vec2text_inverter:
            corrector = vec2text_corrector(store, inversion, embedder)
        elif inverter.model_dir.exists():
            trained = TrainedInverter.load(inverter.model_dir)
            store.check_model(trained.meta.get("embedder", "?"), trained.dim)
            corrector = Corrector(trained, embedder, inversion)
        return cls(store, embedder, inversion, corrector, threshold)

    def vectors(
        self, vectors: np.ndarray, correction_steps: int | None = None, write_back: bool | None = None
    ) -> list[Decoded]:
        """Lookup; misses inverted (when the run has an inverter) and optionally written to the store."""
        vectors = check_vectors(vectors, self.store.dim, "vectors to decode")
        decoded = self.lookup.decode(vectors)
        misses = [i for i, d in enumerate(decoded) if not d.hit]
        if misses and self.corrector is not None:
            seeds = [decoded[i].nearest_text or "" for i in misses] if self.inversion.seed_with_nearest else None
            inversions = self.corrector.invert(vectors[misses], correction_steps, seed_texts=seeds)
            for i, inversion in zip(misses, inversions):
                if inversion.text.strip():
                    decoded[i].text = inversion.text
                    decoded[i].source = "nearest" if inversion.from_seed else "inversion"
                    decoded[i].inversion_cosine, decoded[i].correction_steps = inversion.cosine, inversion.steps
            if self.inversion.write_back if write_back is None else write_back:
                self.write_back([decoded[i] for i in misses], vectors[misses])
        return decoded

    def texts(
        self, texts: list[str], correction_steps: int | None = None, write_back: bool | None = None
    ) -> list[Decoded]:
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
