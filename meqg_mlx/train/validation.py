"""Validation tables: the model beside every baseline, per relation, on held-out concepts only.

`next` asks for the next concept of held-out documents (the trainer's validation windows,
each position a query with the window so far as context); every other relation asks for
the targets of held-out sources along it (one concept of context: the source). Baselines
are fitted on what training may read (`relations.trainable`) and cost the same whatever
the model, so their scores are kept per store version and split in a cache directory
(ablations and repeated evaluations of one store fit them once).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..corpus.relations import NEXT, Edges, RelationVocabulary
from .baselines import Pairs, Predictor, fit_baselines
from .metrics import Queries, Scored, paired_difference, score

CACHE_VERSION = 3  # bump when a baseline, the query sets or the memory change: old cache entries are then ignored


@dataclass
class QuerySet:
    relation: str
    queries: Queries
    pairs: Pairs  # the relation's training pairs, which the baselines are fitted on


@dataclass
class Validation:
    """Per relation, each method's metrics, and the model's recall@1 minus the best baseline's."""

    tables: dict[str, dict[str, dict[str, float]]]
    versus: dict[str, dict] = field(default_factory=dict)
    candidates: int = 0

    def as_record(self) -> dict:
        return {"tables": self.tables, "versus": self.versus, "candidates": self.candidates}


def document_queries(rows: np.ndarray, pairs: Pairs) -> QuerySet:
    """Each real (position, next) pair of windows of table rows (-1 padded), in row-major order as the
    model's outputs for the windows are flattened: the context is the window up to the position."""
    valid = (rows[:, :-1] >= 0) & (rows[:, 1:] >= 0)
    steps = rows.shape[1] - 1
    causal = np.arange(steps)[None, :] <= np.arange(steps)[:, None]
    context = np.where(causal[None], rows[:, None, :-1], -1)[valid]
    empty = np.full((len(context), 1), -1)
    return QuerySet(NEXT, Queries(context, rows[:, 1:][valid], empty), pairs)


def relation_queries(
    edges: Edges, held: np.ndarray, train: np.ndarray, vocabulary: RelationVocabulary, limit: int, seed: int
) -> list[QuerySet]:
    """Per relation other than `next`, up to `limit` edges out of held-out sources (drawn by `seed`),
    each with its source's other targets along the relation as other answers."""
    sets = []
    for relation, name in enumerate(vocabulary.names):
        if name == NEXT:
            continue
        mine = edges.relation == relation
        asked = np.flatnonzero(mine & held[edges.source])
        fitted = np.flatnonzero(mine & train)
        if not len(asked) or not len(fitted):
            continue
        asked = np.sort(np.random.default_rng(seed).permutation(asked)[:limit])
        answers: dict[int, list[int]] = {}
        for source, target in zip(edges.source[mine], edges.target[mine]):
            answers.setdefault(int(source), []).append(int(target))
        others = [
            [t for t in answers[int(s)] if t != int(t0)] for s, t0 in zip(edges.source[asked], edges.target[asked])
        ]
        width = max(1, max(len(o) for o in others))
        other_answers = np.array([o + [-1] * (width - len(o)) for o in others], np.int64)
        queries = Queries(edges.source[asked][:, None], edges.target[asked], other_answers)
        sets.append(QuerySet(name, queries, Pairs(edges.source[fitted], edges.target[fitted])))
    return sets


def cache_path(cache: Path | None, kind: str, key: dict) -> Path | None:
    """Where the `kind` computed for `key` (store version, split, settings) is kept in `cache` (None: nowhere)."""
    if cache is None:
        return None
    digest = hashlib.sha1(json.dumps({**key, "version": CACHE_VERSION}, sort_keys=True).encode()).hexdigest()
    return Path(cache) / f"{kind}-{digest[:16]}"


def baseline_scores(
    vectors: np.ndarray,
    sets: list[QuerySet],
    cache: Path | None,
    mlp_steps: int,
    seed: int,
    sequence_baseline: Callable[[], Predictor] | None = None,
) -> dict:
    """{relation: {baseline: Scored}}, read from `cache` (`cache_path`, + .json) when it is there.
    `sequence_baseline` fits the one baseline that reads whole documents (`base_lcm`), scored on `next`
    as "transformer"."""
    path = cache.with_suffix(".json") if cache is not None else None
    if path is not None and path.is_file():
        try:
            return _read_scores(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry is refitted and replaced
    scores = {}
    for query_set in sets:
        baselines = fit_baselines(vectors, query_set.pairs, mlp_steps, seed)
        if query_set.relation == NEXT and sequence_baseline is not None:
            baselines["transformer"] = sequence_baseline()
        scores[query_set.relation] = {
            name: score(predict(query_set.queries), query_set.queries, vectors) for name, predict in baselines.items()
        }
    if path is not None:
        write_text(path, json.dumps(_scores_record(scores)))
    return scores


def compare(model: dict[str, Scored], baselines: dict[str, dict[str, Scored]], candidates: int) -> Validation:
    """The tables, and per relation the model's recall@1 minus the best baseline's, with its interval."""
    tables, versus = {}, {}
    for relation, scored in baselines.items():
        tables[relation] = {"model": model[relation].metrics} | {name: s.metrics for name, s in scored.items()}
        best = max(scored, key=lambda name: scored[name].metrics["recall@1"])
        difference, low, high = paired_difference(model[relation].hit_at_1, scored[best].hit_at_1)
        versus[relation] = {"baseline": best, "recall@1": difference, "low": low, "high": high}
    return Validation(tables, versus, candidates)


def _scores_record(scores: dict) -> dict:
    return {
        relation: {
            name: {"metrics": s.metrics, "hit_at_1": s.hit_at_1.tolist(), "reciprocal_rank": s.reciprocal_rank.tolist()}
            for name, s in methods.items()
        }
        for relation, methods in scores.items()
    }


def _read_scores(record: dict) -> dict:
    return {
        relation: {
            name: Scored(s["metrics"], np.array(s["hit_at_1"]), np.array(s["reciprocal_rank"]))
            for name, s in methods.items()
        }
        for relation, methods in record.items()
    }
