"""A run's decoder: store lookup first; the run's inverter, with correction, for what the store lacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..concepts.columns import LinearProjection
from ..concepts.store import ConceptStore, NewConcept
from ..concepts.text import normalize_text
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
    column = store.vector_columns.declared().get(name)
    if column is None or not inversion.vec2text_embedder:
        raise InputError(
            f"vec2text needs inversion.vec2text_embedder and a store vector column of its vectors "
            f"(inversion.vec2text_column {name!r}; `meqg store add-vectors`)"
        )
    vec2text_embedder = load_embedder(
        "mlx", inversion.vec2text_embedder, output="sentence" if column["normalized"] else "mean"
    )
    store.vector_columns.check_model(name, vec2text_embedder.name, vec2text_embedder.dim)
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
        self,
        vectors: np.ndarray,
        correction_steps: int | None = None,
        write_back: bool | None = None,
        seed: int = 0,
        write_back_min: float | None = None,
    ) -> list[Decoded]:
        """Lookup; misses inverted (when the run has an inverter), the nearest store text shown wherever no
        inverted text came closer, and the inverted ones optionally written to the store (`write_back`).

        Sampling is seeded by `seed` and each vector itself, so no vector's text depends on the batch.
        """
        vectors = check_vectors(vectors, self.store.dim, "vectors to decode")
        decoded = self.lookup.decode(vectors)
        misses = [i for i, d in enumerate(decoded) if not d.hit]
        if misses and self.corrector is not None:
            seeds = [decoded[i].nearest_text or "" for i in misses] if self.inversion.seed_with_nearest else None
            inversions = self.corrector.invert(vectors[misses], correction_steps, seed=seed, seed_texts=seeds)
            for i, inversion in zip(misses, inversions):
                d = decoded[i]
                d.correction_steps, d.found_at = inversion.steps, inversion.found_at
                if inversion.text.strip() and not inversion.from_seed and inversion.cosine > d.score:
                    d.text, d.cosine, d.source = inversion.text, inversion.cosine, "inversion"
                elif d.nearest_text is not None:  # no inverted text came closer than the nearest store text
                    d.text, d.cosine, d.source = d.nearest_text, d.score, "nearest"
            if self.inversion.write_back if write_back is None else write_back:
                self.write_back([decoded[i] for i in misses], vectors[misses], write_back_min)
        return decoded

    def texts(
        self,
        texts: list[str],
        correction_steps: int | None = None,
        write_back: bool | None = None,
        seed: int = 0,
        write_back_min: float | None = None,
    ) -> list[Decoded]:
        """Each text encoded and decoded again (the round trip `meqg decode TEXT` shows)."""
        check_texts(texts)
        return self.vectors(self.embedder.encode(texts), correction_steps, write_back, seed, write_back_min)

    def write_back(self, decoded: list[Decoded], vectors: np.ndarray, floor: float | None = None) -> int:
        """Inverted texts the store lacks become concepts (source=inversion) under their own embedding,
        when that embedding is within `floor` (default inversion.target_cosine) of the vector decoded.

        The cosine is kept in the concept's key (`inversion cos=0.9931`); a text left out says why in
        its `not_written`. `meqg store remove --source inversion` takes them all out again.
        """
        floor = self.inversion.target_cosine if floor is None else floor
        if not -1.0 <= floor <= 1.0:
            raise InputError(f"the write-back floor is a cosine in [-1, 1], got {floor}")
        inverted = [(d, vector) for d, vector in zip(decoded, vectors) if d.source == "inversion"]
        if not inverted:
            return 0
        own = self.embedder.encode([d.text for d, _ in inverted])
        known = {normalize_text(t) for t in self.store.columns(["text"])["text"].to_pylist()}
        new = []
        for (d, vector), embedding in zip(inverted, own):
            cosine = float(embedding @ vector)
            if cosine < floor:
                d.not_written = f"its cosine {cosine:.3f} is below the write-back floor {floor:g}"
            elif normalize_text(d.text) in known:
                d.not_written = "the store already has this text"
            else:
                known.add(normalize_text(d.text))
                new.append((d, embedding, cosine))
        if not new:
            return 0
        first = self.store.reserve_ids(len(new))
        self.store.add(
            [
                NewConcept(first + i, d.text, embedding, key=f"inversion cos={cosine:.4f}", source="inversion")
                for i, (d, embedding, cosine) in enumerate(new)
            ]
        )
        for i, (d, _, _) in enumerate(new):
            d.written_id = first + i
        return len(new)
