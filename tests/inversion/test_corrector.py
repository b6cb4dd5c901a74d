"""The corrector loop: re-embedded hypotheses, the best kept, stops at the target cosine or the step budget."""

import numpy as np
import pytest

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.config import InversionConfig
from meqg_mlx.inversion.corrector import Corrector


def test_correction_never_lowers_the_cosine_and_uses_its_steps(memorized, embedder):
    inverter = memorized[2]
    targets = embedder.encode(
        [
            "A recipe for tomato soup with fresh basil.",
            "The train leaves at noon.",
            "Hash the file and compare the digests.",
        ]
    )
    # The memorized inverter's next-token distributions are peaked (training loss ~1e-4): at the
    # default temperature (0.7) its samples may all be its greedy text, depending on where training
    # ended, which a 1e-7 change in the store's vectors moves; at 2.0 they differ, seen at every seed.
    # So the invariants hold at both, and finding something closer is asked of 2.0 alone.
    for temperature in (InversionConfig.temperature, 2.0):
        config = InversionConfig(candidates=3, target_cosine=0.9999, temperature=temperature)
        results = Corrector(inverter, embedder, config).invert(targets, correction_steps=3)
        for target, r in zip(targets, results):
            assert r.cosine >= r.first_cosine and r.steps == 3, temperature
            assert np.isclose(r.cosine, float(embedder.encode([r.text])[0] @ target), atol=1e-5), temperature
    assert any(r.cosine > r.first_cosine for r in results)  # at 2.0 sampling found something closer


def test_vectors_already_decoded_well_stop_at_the_target(memorized, sentence_store_path, embedder):
    _, vectors = ConceptStore.open(sentence_store_path).all_vectors()
    corrector = Corrector(memorized[2], embedder, InversionConfig(target_cosine=0.5))
    results = corrector.invert(vectors[1:4], correction_steps=5)
    assert all(r.steps == 0 and r.text == r.first_text for r in results)


def test_a_closer_seed_text_is_where_correction_starts(memorized, embedder):
    texts = ["A recipe for tomato soup with fresh basil.", "The train leaves at noon."]
    corrector = Corrector(memorized[2], embedder, InversionConfig(target_cosine=0.999))
    seeded = corrector.invert(embedder.encode(texts), correction_steps=2, seed_texts=texts)
    assert [r.text for r in seeded] == texts and all(r.cosine > 0.999 and r.steps == 0 for r in seeded)
    assert all(r.first_cosine < 0.999 for r in seeded)  # the inverter alone did not get there


def test_a_vector_decodes_the_same_alone_or_anywhere_in_a_batch(memorized, embedder):
    texts = ["Return the number of items in the queue.", "A recipe for tomato soup.", "The train leaves at noon."]
    targets = embedder.encode(texts)
    config = InversionConfig(candidates=3, target_cosine=0.9999, temperature=2.0)
    corrector = Corrector(memorized[2], embedder, config)
    alone = corrector.invert(targets[:1], correction_steps=2)[0]
    for batch, row in ((targets, 0), (targets[::-1], 2), (np.repeat(targets[1:2], 2, 0).tolist() + [targets[0]], 2)):
        inverted = corrector.invert(np.asarray(batch), correction_steps=2)[row]
        assert (inverted.text, inverted.found_at) == (alone.text, alone.found_at)
        assert inverted.cosine == pytest.approx(alone.cosine, abs=1e-5)
    reseeded = {corrector.invert(targets, correction_steps=2, seed=seed)[1].text for seed in range(4)}
    assert len(reseeded) > 1  # the seed, not the batch, varies the samples


def test_a_beam_corrects_from_several_hypotheses_and_never_does_worse(memorized, embedder):
    texts = ["Count the lines in a file.", "Sort a list lazily.", "Open a remote socket and wait."]
    seeds = ["Merge two sorted iterables lazily.", "Round a number.", "Spawn a child process and wait for it."]
    targets = embedder.encode(texts)
    results = {}
    for beam in (1, 3):
        config = InversionConfig(candidates=3, target_cosine=0.9999, temperature=2.0, beam=beam)
        results[beam] = Corrector(memorized[2], embedder, config).invert(targets, 1, seed_texts=seeds)
    # the best hypothesis gets the same samples in both; the beam also corrects from the runner-up
    assert all(wide.cosine >= narrow.cosine - 1e-6 for wide, narrow in zip(results[3], results[1]))
    for r, target in zip(results[3], targets):
        assert r.cosine == pytest.approx(float(embedder.encode([r.text])[0] @ target), abs=1e-5)
