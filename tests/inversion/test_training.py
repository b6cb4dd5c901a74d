"""Inverter training on a real store: the loss falls, the texts come back, files are whole and checked."""

import json

import numpy as np
import pytest

from meqg_mlx.concepts.store import ConceptStore, normalize_text
from meqg_mlx.errors import MeqgError
from meqg_mlx.inversion.checkpoint import TrainedInverter
from meqg_mlx.inversion.training import InverterTraining, split_examples
from meqg_mlx.telemetry import read_telemetry

from ..conftest import SENTENCES
from .conftest import tiny_config


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
