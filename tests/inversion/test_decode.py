"""RunDecoder: store lookup, then the run's inverter; write-back keeps the store free of duplicate texts."""

import json
import shutil

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.inversion.decode import RunDecoder
from meqg_mlx.inversion.lookup import Decoded


def test_write_back_skips_texts_the_store_already_has(memorized, sentence_store_path, embedder, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(sentence_store_path, store)
    run = tmp_path / "run"
    shutil.copytree(memorized[0], run)
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "store": str(store)}))
    decoder = RunDecoder.from_run(run, embedder=embedder)
    vectors = embedder.encode(["x one", "x two", "x three"])
    decoded = [
        Decoded("SORT a list  in place.", 0.5, 1, "", "inversion"),
        Decoded("A new text.", 0.5, 1, "", "inversion"),
        Decoded("a NEW text.", 0.5, 1, "", "inversion"),
    ]
    assert decoder.write_back(decoded, vectors) == 1
    assert [d.written_id for d in decoded] == [None, 12, None]
    assert ConceptStore.open(store).get([12])[0]["text"] == "A new text."


def test_hits_come_from_the_store_and_misses_from_the_inverter(memorized, embedder):
    decoder = RunDecoder.from_run(memorized[0], embedder=embedder)
    texts = ["Sort a list in place.", "A recipe for tomato soup with basil."]
    decoder.inversion.seed_with_nearest = False
    hit, miss = decoder.texts(texts, correction_steps=2)
    assert hit.source == "store" and hit.text == "Sort a list in place." and hit.inversion_cosine is None
    assert miss.source == "inversion" and miss.text and miss.correction_steps == 2 and not miss.hit
    assert miss.nearest_text and miss.score < decoder.lookup.threshold
    decoder.inversion.seed_with_nearest = True  # now it can do no worse than the nearest store text
    _, seeded = decoder.texts(texts, correction_steps=2)
    assert seeded.inversion_cosine >= seeded.score - 1e-5 and seeded.source in ("inversion", "nearest")
    assert seeded.source == "inversion" or seeded.text == seeded.nearest_text
