"""Inverter training on a real store: the loss falls, the texts come back, files are whole and checked."""

import json

import numpy as np
import pytest
from mlx.utils import tree_flatten

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.concepts.text import normalize_text
from meqg_mlx.errors import MeqgError
from meqg_mlx.inversion.checkpoint import TrainedInverter
from meqg_mlx.inversion.training import InverterTraining, split_examples
from meqg_mlx.telemetry import read_telemetry

from ..conftest import SENTENCES, tiny_config


def squashed(text: str) -> str:
    return "".join(normalize_text(text).split())


def test_training_lowers_the_loss_and_learns_the_training_texts(memorized, sentence_store_path, embedder):
    run, summary, inverter = memorized
    assert summary.steps == 300 and not summary.interrupted
    assert summary.last_loss < 0.2 * summary.first_loss
    ids, vectors = ConceptStore.open(sentence_store_path).all_vectors()
    trained = ids % 20 != 0
    texts = inverter.generate(vectors[trained])
    exact = [squashed(t) == squashed(SENTENCES[i]) for t, i in zip(texts, ids[trained])]
    assert sum(exact) >= 9, texts  # the tokenizer is uncased: compared case-folded, spaces removed
    cosines = np.einsum("ij,ij->i", embedder.encode(texts), vectors[trained])
    assert cosines.mean() > 0.95


def test_held_out_concepts_are_never_trained_on(sentence_store_path, embedder, memorized):
    store = ConceptStore.open(sentence_store_path)
    train, held = split_examples(store, embedder.tokenizer_path, 24, 20)
    assert held.ids.tolist() == [0] and 0 not in train.ids and len(train.ids) == len(SENTENCES) - 1
    assert memorized[2].meta["held_out_every"] == 20 and memorized[2].meta["trained_texts"] == len(SENTENCES) - 1


def test_telemetry_records_steps_evals_checkpoints_and_the_end(memorized):
    run = memorized[0]
    records, bad = read_telemetry(run / "inverter" / "telemetry.jsonl")
    events = [r["event"] for r in records]
    assert bad == 0 and events.count("step") == 300 and events.count("eval") == 3 and events[-1] == "run"
    assert all(r["loss"] > 0 and r["tokens_per_s"] > 0 for r in records if r["event"] == "step")
    assert json.loads((run / "run.json").read_text())["store"]


def test_a_saved_inverter_reloads_to_the_same_texts(memorized, sentence_store_path, tmp_path):
    run, summary, inverter = memorized
    _, vectors = ConceptStore.open(sentence_store_path).all_vectors()
    again = TrainedInverter.load(summary.directory)
    assert again.generate(vectors) == inverter.generate(vectors)
    inverter.save(tmp_path / "model")
    inverter.save(tmp_path / "model")  # replaced whole, nothing left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_corrupt_or_missing_inverters_are_one_line_errors(memorized, tmp_path):
    source = memorized[1].directory
    for name, damage in (("inverter.json", "{not json"), ("model.safetensors", "garbage")):
        broken = tmp_path / name
        broken.mkdir()
        for f in source.iterdir():
            (broken / f.name).write_bytes(f.read_bytes())
        (broken / name).write_text(damage)
        with pytest.raises(MeqgError, match="corrupt inverter") as info:
            TrainedInverter.load(broken)
        assert "\n" not in str(info.value)
    with pytest.raises(MeqgError, match="no trained inverter"):
        TrainedInverter.load(tmp_path / "nothing")


def test_a_run_on_another_store_is_refused(memorized, small_store, embedder):
    with pytest.raises(MeqgError, match="is a run on the store"):
        InverterTraining(small_store, memorized[0], embedder, tiny_config())


def test_an_inverter_is_never_replaced_silently_and_resumes_exactly(sentence_store_path, embedder, tmp_path):
    store = ConceptStore.open(sentence_store_path)
    # own hypotheses for 6 of the 11 texts after steps 2 and 4: the resume must bring step 2's back
    config = tiny_config(steps=6, eval_every=3, own_hypotheses=6, own_hypotheses_every=2)
    straight = InverterTraining(store, tmp_path / "straight", embedder, config)
    straight.train()
    with pytest.raises(MeqgError, match=r"already holds an inverter \(step 6\): pass --resume .* or --force"):
        InverterTraining(store, tmp_path / "straight", embedder, config)
    with pytest.raises(MeqgError, match="no inverter to resume"):
        InverterTraining(store, tmp_path / "fresh", embedder, config, resume=True)

    halted = tiny_config(steps=3, eval_every=3, own_hypotheses=6, own_hypotheses_every=2)
    InverterTraining(store, tmp_path / "halted", embedder, halted).train()
    resumed = InverterTraining(store, tmp_path / "halted", embedder, config, resume=True)
    summary = resumed.train()
    assert summary.steps == 6
    ours, theirs = dict(tree_flatten(resumed.model.parameters())), dict(tree_flatten(straight.model.parameters()))
    assert all(np.allclose(np.array(ours[k]), np.array(theirs[k]), atol=1e-6) for k in theirs)
    records, _ = read_telemetry(tmp_path / "halted" / "inverter" / "telemetry.jsonl")
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3, 4, 5, 6]
    assert len({r["run_id"] for r in records}) == 1  # one inverter run, one telemetry run id
    with pytest.raises(MeqgError, match="already at step 6"):
        InverterTraining(store, tmp_path / "halted", embedder, config, resume=True).train()

    replaced = InverterTraining(store, tmp_path / "halted", embedder, tiny_config(steps=2), force=True)
    replaced.train()
    records, _ = read_telemetry(tmp_path / "halted" / "inverter" / "telemetry.jsonl")
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2] and len({r["run_id"] for r in records}) == 1


def test_own_hypotheses_are_the_embeddings_of_what_the_inverter_writes_now(sentence_store_path, embedder, tmp_path):
    training = InverterTraining(
        ConceptStore.open(sentence_store_path), tmp_path / "run", embedder, tiny_config(steps=4, own_hypotheses=5)
    )
    training.train()  # no regeneration: own_hypotheses_every is 250
    assert not training.has_own.any()
    training.regenerate_own_hypotheses()
    rows = np.flatnonzero(training.has_own)
    assert len(rows) == 5
    written = TrainedInverter(training.model, training.vocab, {}).generate(training.train_set.vectors[rows])
    assert np.allclose(training.own[rows], embedder.encode([t if t.strip() else "." for t in written]), atol=1e-5)
    assert not np.allclose(training.own[rows], training.train_set.vectors[rows], atol=0.05)  # 4 steps: near misses


SUBJECTS = ["The old farmer", "A young girl", "The tired doctor", "My brother", "The quiet teacher", "A tall sailor"]
VERBS = ["painted", "repaired", "sold", "carried", "washed", "found"]
OBJECTS = ["a red boat", "the broken fence", "an empty bottle", "the wooden chair", "a heavy box", "the blue kettle"]
PLACES = ["near the river", "in the garden", "at the market", "behind the school", "on the hill"]


def test_an_inverter_writes_texts_no_store_holds_closer_than_the_nearest_stored_text(embedder, tmp_path):
    """Texts composed of parts the store holds, in combinations it never saw: the nearest stored text
    differs in some part; the inverter, trained on the store's texts alone, writes the text itself."""
    from meqg_mlx.concepts.store import NewConcept
    from meqg_mlx.config import InversionConfig
    from meqg_mlx.inversion.corrector import Corrector

    rng = np.random.default_rng(0)
    texts = [f"{s} {v} {o} {p}." for s in SUBJECTS for v in VERBS for o in OBJECTS for p in PLACES]
    order = rng.permutation(len(texts))
    stored, unseen = [texts[i] for i in order[:700]], [texts[i] for i in order[700:760]]
    store = ConceptStore.create(tmp_path / "store", embedder.dim, embedder.name)
    first = store.reserve_ids(len(stored))
    store.add(
        [NewConcept(first + i, t, v, source="test") for i, (t, v) in enumerate(zip(stored, embedder.encode(stored)))]
    )
    config = tiny_config(steps=1000, batch_size=32, eval_every=600, held_out_every=10**9)
    config.inverter.hidden, config.inverter.heads = 96, 2
    trained = InverterTraining(store, tmp_path / "run", embedder, config)
    trained.train()
    inverter = TrainedInverter.load(trained.inverter.model_dir)
    targets = embedder.encode(unseen)
    _, matrix = store.all_vectors()
    nearest = (targets @ matrix.T).max(axis=1)  # the nearest stored text's cosine (its vector is its embedding)
    corrector = Corrector(inverter, embedder, InversionConfig(target_cosine=0.999, candidates=4, beam=2))
    inverted = corrector.invert(targets, correction_steps=3)
    cosines = np.array([r.cosine for r in inverted])
    first = np.array([r.first_cosine for r in inverted])
    written = np.einsum("ij,ij->i", embedder.encode([r.text for r in inverted]), targets)
    assert np.allclose(written, cosines, atol=1e-5)  # the cosines are the written texts' own
    assert first.mean() > nearest.mean(), (first.mean(), nearest.mean())  # one pass already beats the store
    assert cosines.mean() > nearest.mean() + 0.05 and cosines.mean() > 0.95, (cosines.mean(), nearest.mean())
