"""The corrector loop in the vec2text manner.

The first pass writes a text from the target alone; when seed texts are given (the
nearest store concept's, say) the better of the two by cosine is where correction
starts. Each correction step feeds the
inverter the target, the embedding of the best text so far and their difference,
writes `candidates` new texts (one greedy, the rest sampled), re-embeds them with the
same embedder and keeps whichever text is closest to the target. Every sample is seeded by
(seed, the vector itself, the candidate, the step) alone, so a vector decodes the same
alone or anywhere in any batch. A vector stops once
its best text reaches `target_cosine`; the loop stops after `correction_steps`.
The best cosine never goes down from one step to the next. The inverter is ours
(checkpoint.TrainedInverter) or a pretrained vec2text pair (vec2text.Vec2TextInverter).
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass

import numpy as np

from ..config import InversionConfig
from ..encoder.base import Embedder, check_vectors
from ..errors import InputError
from ..progress import Progress


@dataclass
class Inversion:
    text: str
    cosine: float  # target vs the embedding of `text`
    steps: int  # correction steps that ran for this vector (0: first pass only)
    first_text: str
    first_cosine: float
    from_seed: bool = False  # the best text is the seed text itself: nothing written came closer
    found_at: int = 0  # the correction step that wrote `text` (0: the first pass or the seed)


def row_seeds(seed: int, targets: np.ndarray, candidate: int, step: int) -> np.ndarray:
    """One sampling seed per target vector, a hash of its bytes: the same vector gets the same samples
    in any batch, at any position."""
    salt = struct.pack("<qqq", seed, candidate, step)
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(np.ascontiguousarray(row, np.float32).tobytes() + salt, digest_size=8).digest(),
                "little",
            )
            for row in targets
        ],
        np.uint64,
    )


class Corrector:
    def __init__(self, inverter, embedder: Embedder, inversion: InversionConfig | None = None):
        self.inverter, self.embedder = inverter, embedder
        self.inversion = inversion or InversionConfig()

    def score(self, texts: list[str], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of the texts and their cosines to the targets (an empty text: zeros, cosine -1)."""
        embeddings = np.zeros_like(targets)
        cosines = np.full(len(texts), -1.0)
        written = [i for i, text in enumerate(texts) if text.strip()]
        if written:
            embeddings[written] = self.embedder.encode([texts[i] for i in written])
            cosines[written] = np.einsum("ij,ij->i", embeddings[written], targets[written]) / (
                np.linalg.norm(embeddings[written], axis=1) * np.linalg.norm(targets[written], axis=1)
            )
        return embeddings, cosines

    def keep_better(
        self,
        texts: list[str],
        embeddings: np.ndarray,
        cosines: np.ndarray,
        rows: np.ndarray,
        candidate: list[str],
        goal: np.ndarray,
    ) -> np.ndarray:
        """Replace, in place, the best texts of `rows` by the candidates that are closer; returns those rows."""
        new_embeddings, new_cosines = self.score(candidate, goal)
        better = rows[new_cosines > cosines[rows]]
        for local in np.flatnonzero(new_cosines > cosines[rows]):
            row = rows[local]
            texts[row], embeddings[row], cosines[row] = candidate[local], new_embeddings[local], new_cosines[local]
        return better

    def invert(
        self,
        targets: np.ndarray,
        correction_steps: int | None = None,
        seed: int = 0,
        progress: Progress | None = None,
        seed_texts: list[str] | None = None,
        deadline: float | None = None,
    ) -> list[Inversion]:
        """Past `deadline` (time.perf_counter()) the first pass ends its texts early and no correction starts."""
        s = self.inversion
        steps = s.correction_steps if correction_steps is None else correction_steps
        if steps < 0:
            raise InputError(f"correction steps must be >= 0, got {steps}")
        targets = check_vectors(targets, self.inverter.dim, "vectors to invert", unit=self.embedder.normalized)
        texts = self.inverter.generate(targets, deadline=deadline)
        embeddings, cosines = self.score(texts, targets)
        first = list(zip(texts, cosines))
        from_seed = np.zeros(len(targets), bool)
        if seed_texts is not None:
            from_seed[self.keep_better(texts, embeddings, cosines, np.arange(len(targets)), seed_texts, targets)] = True
        taken, found_at = np.zeros(len(targets), np.int64), np.zeros(len(targets), np.int64)
        k = max(s.candidates, 1)
        for step in range(1, steps + 1):
            rows = np.flatnonzero(cosines < s.target_cosine)
            if progress:
                progress("correcting", step - 1, steps)
            if not len(rows) or deadline is not None and time.perf_counter() > deadline:
                break
            goal, hypothesis, written = targets[rows], embeddings[rows], [texts[i] for i in rows]
            candidates = [self.inverter.generate(goal, hypothesis, hypothesis_texts=written)]
            if k > 1:
                n = len(rows)
                sampled = self.inverter.generate(
                    np.tile(goal, (k - 1, 1)),
                    np.tile(hypothesis, (k - 1, 1)),
                    s.temperature,
                    np.concatenate([row_seeds(seed, goal, j, step) for j in range(1, k)]),
                    hypothesis_texts=written * (k - 1),
                )
                candidates += [sampled[j * n : (j + 1) * n] for j in range(k - 1)]
            for candidate in candidates:
                better = self.keep_better(texts, embeddings, cosines, rows, candidate, goal)
                from_seed[better], found_at[better] = False, step
            taken[rows] = step
        if progress:
            progress("correcting", steps, steps)
        return [
            Inversion(
                texts[i],
                float(cosines[i]),
                int(taken[i]),
                first[i][0],
                float(first[i][1]),
                bool(from_seed[i]),
                int(found_at[i]),
            )
            for i in range(len(targets))
        ]
