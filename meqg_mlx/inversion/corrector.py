"""The corrector loop in the vec2text manner.

The first pass writes a text from the target alone; seed texts, when given (the nearest
store concept's, say), compete with it by cosine. Each correction step feeds the inverter
the target, the embedding of a hypothesis and their difference, and writes `candidates`
new texts from it (one greedy, the rest sampled); they are re-embedded with the same
embedder, and the `beam` closest texts seen so far are the next step's hypotheses (vec2text's
sequence-level beam; 1 keeps only the best). Every sample is seeded by (seed, the vector
itself, the hypothesis, the candidate, the step) alone, so a vector decodes the same alone or
anywhere in any batch. A vector stops once its best text reaches `target_cosine`; the loop
stops after `correction_steps`. The best cosine never goes down from one step to the next.
The inverter is ours (checkpoint.TrainedInverter) or a pretrained vec2text pair
(vec2text.Vec2TextInverter).
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


@dataclass
class Hypothesis:
    text: str
    embedding: np.ndarray
    cosine: float
    found_at: int
    from_seed: bool = False


def row_seeds(seed: int, targets: np.ndarray, candidates: np.ndarray, step: int) -> np.ndarray:
    """One sampling seed per target vector and its candidate number, a hash of the vector's bytes: the
    same vector gets the same samples in any batch, at any position."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(
                    np.ascontiguousarray(row, np.float32).tobytes() + struct.pack("<qqq", seed, int(c), step),
                    digest_size=8,
                ).digest(),
                "little",
            )
            for row, c in zip(targets, np.broadcast_to(candidates, len(targets)))
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
        first = self.inverter.generate(targets, deadline=deadline)
        embeddings, first_cosines = self.score(first, targets)
        beams = [[Hypothesis(first[i], embeddings[i], float(first_cosines[i]), 0)] for i in range(len(targets))]
        if seed_texts is not None:
            embeddings, cosines = self.score(seed_texts, targets)
            for i, beam in enumerate(beams):
                beam.append(Hypothesis(seed_texts[i], embeddings[i], float(cosines[i]), 0, True))
                beams[i] = best_distinct(beam, s.beam)
        taken = np.zeros(len(targets), np.int64)
        for step in range(1, steps + 1):
            rows = [i for i, beam in enumerate(beams) if beam[0].cosine < s.target_cosine]
            if progress:
                progress("correcting", step - 1, steps)
            if not rows or deadline is not None and time.perf_counter() > deadline:
                break
            self.correct(targets, beams, rows, step, seed)
            taken[rows] = step
        if progress:
            progress("correcting", steps, steps)
        return [
            Inversion(
                beam[0].text,
                beam[0].cosine,
                int(taken[i]),
                first[i],
                float(first_cosines[i]),
                beam[0].from_seed,
                beam[0].found_at,
            )
            for i, beam in enumerate(beams)
        ]

    def correct(self, targets: np.ndarray, beams: list[list[Hypothesis]], rows: list[int], step: int, seed: int):
        """One correction step for `rows`: candidates from every hypothesis in their beams, the best kept."""
        s = self.inversion
        owners = [(i, j) for i in rows for j in range(len(beams[i]))]  # (row, hypothesis) per generation
        goal = targets[[i for i, _ in owners]]
        hypothesis = np.stack([beams[i][j].embedding for i, j in owners])
        written = [beams[i][j].text for i, j in owners]
        candidates = [self.inverter.generate(goal, hypothesis, hypothesis_texts=written)]
        k = max(s.candidates, 1)
        if k > 1:
            n, hypotheses = len(owners), np.array([j for _, j in owners])
            seeds = np.concatenate([row_seeds(seed, goal, hypotheses * k + c, step) for c in range(1, k)])
            sampled = self.inverter.generate(
                np.tile(goal, (k - 1, 1)),
                np.tile(hypothesis, (k - 1, 1)),
                s.temperature,
                seeds,
                hypothesis_texts=written * (k - 1),
            )
            candidates += [sampled[c * n : (c + 1) * n] for c in range(k - 1)]
        texts = [text for candidate in candidates for text in candidate]
        embeddings, cosines = self.score(texts, np.tile(goal, (len(candidates), 1)))
        pool = {i: list(beams[i]) for i in rows}
        for m, text in enumerate(texts):
            row = owners[m % len(owners)][0]
            pool[row].append(Hypothesis(text, embeddings[m], float(cosines[m]), step))
        for i in rows:
            beams[i] = best_distinct(pool[i], s.beam)


def best_distinct(hypotheses: list[Hypothesis], width: int) -> list[Hypothesis]:
    """The `width` closest hypotheses with distinct non-empty texts, closest first; the earliest
    of equally close ones (the best cosine never goes down, and a tie keeps what was there)."""
    seen, kept = set(), []
    for h in sorted(hypotheses, key=lambda h: -h.cosine):  # stable: earlier ones first among ties
        if h.text.strip() and h.text not in seen:
            seen.add(h.text)
            kept.append(h)
        if len(kept) == width:
            break
    return kept or hypotheses[:1]
