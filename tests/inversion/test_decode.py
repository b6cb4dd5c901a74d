"""RunDecoder: store lookup, then the run's inverter; write-back stores only texts close to their vector."""

import numpy as np
import pytest

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.inversion.decode import RunDecoder
from meqg_mlx.inversion.lookup import Decoded

from ..conftest import memorized_on_a_copy


def decoder_on_a_copy(memorized, sentence_store_path, embedder, tmp_path) -> RunDecoder:
    return RunDecoder.from_run(memorized_on_a_copy(memorized, sentence_store_path, tmp_path)[0], embedder=embedder)


def test_write_back_keeps_only_close_texts_under_their_own_embedding(
    memorized, sentence_store_path, embedder, tmp_path
):
    decoder = decoder_on_a_copy(memorized, sentence_store_path, embedder, tmp_path)
    targets = embedder.encode(
        [
            "Bananas are yellow fruit.",  # decoded to noise: must never be stored
            "Sort a list in place.",  # decoded to a text the store has
            "Rivers carry water from the hills down to the sea.",
            "Rivers carry water from the hills down to the sea.",
        ]
    )
    decoded = [
        Decoded("the ) anond water : -", 0.5, 1, "", "inversion"),
        Decoded("SORT a list  in place.", 0.5, 1, "", "inversion"),
        Decoded("Rivers carry water from the hills to the sea.", 0.5, 1, "", "inversion"),
        Decoded("rivers CARRY water from the hills to the sea.", 0.5, 1, "", "inversion"),  # the same text again
    ]
    own = embedder.encode([d.text for d in decoded])
    cosines = np.einsum("ij,ij->i", own, targets)
    assert cosines[0] < 0.5 and cosines[2] > 0.9 and cosines[2] < 0.999  # close, but not the target's vector
    assert decoder.write_back(decoded, targets, floor=0.9) == 1
    assert [d.written_id for d in decoded] == [None, None, 12, None]
    assert "below the write-back floor 0.9" in decoded[0].not_written
    assert decoded[1].not_written == decoded[3].not_written == "the store already has this text"
    store = ConceptStore.open(decoder.store.uri)
    row = store.get([12])[0]
    assert row["text"] == decoded[2].text and row["source"] == "inversion"
    assert row["key"] == f"inversion cos={cosines[2]:.4f}"
    stored = store.vectors([12])[0]
    assert np.allclose(stored, own[2], atol=1e-5) and not np.allclose(stored, targets[2], atol=1e-2)
    # the default floor is inversion.target_cosine (0.99): this text does not reach it
    again = [Decoded("Rivers carry water down to the sea.", 0.5, 1, "", "inversion")]
    assert decoder.write_back(again, targets[2:3]) == 0 and "floor 0.99" in again[0].not_written


def test_misses_show_the_inverters_text_only_where_it_beats_the_nearest_store_text(
    memorized, sentence_store_path, embedder, tmp_path
):
    decoder = decoder_on_a_copy(memorized, sentence_store_path, embedder, tmp_path)
    learned = decoder.store.get([4])[0]["text"]  # a sentence the inverter learned, gone from the store
    decoder.store.remove([4])
    texts = ["Sort a list in place.", learned, "A recipe for tomato soup with basil."]
    for seeded in (False, True):
        decoder.inversion.seed_with_nearest = seeded
        hit, regained, other = decoder.texts(texts, correction_steps=2)
        assert hit.source == "store" and hit.text == texts[0] and hit.cosine == hit.score
        assert regained.source == "inversion" and regained.cosine > 0.99 > regained.score and not regained.hit
        for miss, text in ((regained, learned), (other, texts[2])):
            assert miss.correction_steps <= 2 and miss.cosine >= miss.score  # never shown worse than the nearest
            own = float(embedder.encode([miss.text])[0] @ embedder.encode([text])[0])
            assert miss.cosine == pytest.approx(own, abs=1e-5)
            assert miss.source == "inversion" or (miss.text, miss.cosine) == (miss.nearest_text, miss.score)
