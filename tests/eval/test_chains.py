"""Rollouts on constructed chains whose right answers are known: a successor map over random unit vectors."""

import numpy as np
import pytest

from meqg_mlx.eval.chains import Candidates, Chain, calibration_split, cut, rollout
from meqg_mlx.eval.metrics import cascade_fail, fit_temperature, reliability

RNG = np.random.default_rng(0)
VECTORS = RNG.normal(size=(60, 16))
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
CANDIDATES = Candidates(VECTORS, [f"concept {i}" for i in range(60)])
SUCCESSOR = np.roll(np.arange(50), -1)  # rows 0..49 form one cycle; 50..59 are never in a chain


def successor_chains(count=20, length=7):
    starts = RNG.choice(50, count, replace=False)
    return [Chain(f"c{i}", np.array([(s + k) % 50 for k in range(length)])) for i, s in enumerate(starts)]


def oracle(context, relations=None):
    """Knows the task: the successor of the concept nearest its last input."""
    return VECTORS[SUCCESSOR[np.argmax(context[:, -1] @ VECTORS.T, axis=1)]]


def test_a_model_that_copies_the_truth_never_fails_and_is_calibrated_when_confident():
    chains = successor_chains()
    for teacher_forced in (False, True):
        result = rollout(oracle, CANDIDATES, chains, prefix=2, teacher_forced=teacher_forced)
        assert result.correct[result.valid()].all() and (result.truth_rank[result.valid()] == 0).all()
        assert cascade_fail(result.correct, result.lengths).tolist() == [0.0] * 5
    confidence = result.confidence(temperature=0.01)[result.valid()]
    assert confidence.min() > 0.99 and reliability(confidence, result.correct[result.valid()]).ece < 0.01


def test_a_constant_model_fails_every_chain():
    result = rollout(
        lambda context, _: np.tile(VECTORS[55], (len(context), 1)), CANDIDATES, successor_chains(), 1, False
    )
    assert not result.correct[:, 0].any()  # (later steps may hit the truth by luck, after the chain failed)
    assert cascade_fail(result.correct, result.lengths).tolist() == [1.0] * 6


def test_free_running_feeds_the_models_own_mistakes_back():
    """Right from true inputs, wrong from its own: a model whose one slip (at concept 10) sends it off the
    cycle for good. Teacher-forced it errs once; free-running every step after the slip is wrong."""

    def slips_at_10(context, relations=None):
        nearest = np.argmax(context[:, -1] @ VECTORS.T, axis=1)
        return VECTORS[np.where(nearest == 10, 55, np.where(nearest >= 50, 56, SUCCESSOR[nearest % 50]))]

    chain = [Chain("through-10", np.arange(8, 15))]  # 8 9 10 11 12 13 14: the step after 10 is 11
    forced = rollout(slips_at_10, CANDIDATES, chain, 1, teacher_forced=True)
    free = rollout(slips_at_10, CANDIDATES, chain, 1, teacher_forced=False)
    assert forced.correct[0].tolist() == [True, True, False, True, True, True]
    assert free.correct[0].tolist() == [True, True, False, False, False, False]


def test_snapping_feeds_the_decoded_concept_instead_of_the_vector():
    """A model that names the successor a little off the concept's vector, and knows only exact concepts:
    fed its own vectors it fails from the second step; fed what they decode to, never."""
    off = RNG.normal(size=16) * 0.05

    def exact_only(context, relations=None):
        similarity = context[:, -1] @ VECTORS.T
        known = similarity.max(1) > 1 - 1e-9
        return np.where(known[:, None], VECTORS[SUCCESSOR[similarity.argmax(1) % 50]] + off, VECTORS[55])

    chains = successor_chains(count=6, length=4)
    fed_vectors = rollout(exact_only, CANDIDATES, chains, 1, teacher_forced=False)
    fed_concepts = rollout(exact_only, CANDIDATES, chains, 1, teacher_forced=False, snap=True)
    assert fed_vectors.correct[:, 0].all() and not fed_vectors.correct[:, 1:].any()
    assert fed_concepts.correct.all()


def test_concepts_already_in_the_context_are_not_candidates():
    back_to_start = rollout(lambda context, _: context[:, 0], CANDIDATES, [Chain("c", np.array([3, 4, 5]))], 1, True)
    assert (back_to_start.scores[0, :, 0] < 0.999).all()  # the start itself is excluded


def test_fitted_temperature_on_teacher_forced_scores():
    result = rollout(oracle, CANDIDATES, successor_chains(), prefix=1, teacher_forced=True)
    temperature = fit_temperature(*result.calibration_scores())
    assert temperature < 0.05  # always right: the sharper, the likelier
    scores, truth = rollout(lambda c, _: -c[:, -1], CANDIDATES, successor_chains(), 1, True).calibration_scores()
    assert scores.shape[1] == 33 and (truth == 32).any()  # truths outside the best 32 keep their own score


def test_chains_are_cut_from_documents_and_split_stably():
    chains = cut("doc", np.arange(11), 4)
    assert [c.rows.tolist() for c in chains] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    calibration, test = calibration_split(successor_chains(40))
    assert calibration and test and {c.name for c in calibration}.isdisjoint(c.name for c in test)
    again, _ = calibration_split(list(reversed(calibration + test)))
    assert sorted(c.name for c in again) == sorted(c.name for c in calibration)
    with pytest.raises(ValueError, match="longer than its prefix"):
        rollout(oracle, CANDIDATES, [Chain("short", np.array([1]))], 1, False)


def test_which_chains_are_kept_does_not_decide_which_calibrate():
    chains = [Chain(f"hypernym:{i}", np.array([i, i + 1])) for i in range(400)]
    kept = sorted(chains, key=lambda c: c.bucket("kept:"))[:100]  # as relation_chains keeps them
    calibration, test = calibration_split(kept)
    assert 30 <= len(calibration) <= 70 and len(calibration) + len(test) == 100
    unsalted = sorted(chains, key=lambda c: c.bucket())[:100]
    assert calibration_split(unsalted)[1] == []  # what the salt prevents: every kept chain calibrating


def test_each_step_reads_the_relations_its_chain_follows():
    """The predictor sees, beside each context, the relation followed from each of its positions."""
    seen = []

    def recording(context, relations):
        seen.append(relations.copy())
        assert relations.shape == context.shape[:2]
        return oracle(context)

    chains = [Chain("a", np.array([1, 2, 3, 4]), np.array([5, 6, 7])), Chain("b", np.array([8, 9]))]
    rollout(recording, CANDIDATES, chains, prefix=1, teacher_forced=True)
    assert [r.tolist() for r in seen] == [[[5], [0]], [[5, 6]], [[5, 6, 7]]]
    with pytest.raises(ValueError, match="3 concepts need 2 relations"):
        Chain("c", np.array([1, 2, 3]), np.array([1]))
