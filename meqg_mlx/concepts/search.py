"""Search that answers with subjects: a sentence that `describes` a function, or an example
that is `example_of` it, counts as a vector of that function (max-sim over its vectors).

Plain nearest-neighbour search (`ConceptStore.search_vector`) answers "which concept
vectors are closest"; a person asking "sort a list in place" wants `list.sort`, whose
documentation sentence is what matched. Measured on the stdlib store: the sentence
"The sort is in-place ..." ranks 2nd, `list.sort`'s own one-line summary 8th.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .store import ConceptStore, Hit

SUBJECT_RELATIONS = ("describes", "example_of")


@dataclass
class SubjectHit:
    subject: Hit
    score: float
    via: Hit | None


def subject_of(hit: Hit) -> int:
    for relation in hit.relations:
        if relation["type"] in SUBJECT_RELATIONS:
            return int(relation["target_id"])
    return hit.concept_id


def search_subjects(store: ConceptStore, vector: np.ndarray, k: int = 10, fanout: int = 8) -> list[SubjectHit]:
    """Top-k subjects, each scored by its best-matching own or attached vector."""
    best: dict[int, Hit] = {}
    for hit in store.search_vector(vector, k * fanout):
        subject = subject_of(hit)
        if subject not in best or hit.score > best[subject].score:
            best[subject] = hit
    ranked = sorted(best.items(), key=lambda item: -item[1].score)[:k]
    rows = {r["concept_id"]: r for r in store.get([s for s, h in ranked if s != h.concept_id])}
    results = []
    for subject, hit in ranked:
        if subject == hit.concept_id:
            results.append(SubjectHit(hit, hit.score, None))
        elif subject in rows:
            results.append(SubjectHit(Hit.from_row(rows[subject], hit.score), hit.score, hit))
        else:  # the subject was never written (interrupted build): show the hit itself
            results.append(SubjectHit(hit, hit.score, None))
    return results
