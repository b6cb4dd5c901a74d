"""Every surface that shows a decoded text shows that text's own cosine to the vector it decodes.

Before: episodes printed the nearest store text's cosine beside the inverter's (worse) text.
A run whose lookup threshold no concept reaches sends every concept to its inverter, which
competes with the nearest store text; whichever is shown, its cosine must be its own.
"""

import json
import re

import pytest

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.episode.budget import Budget
from meqg_mlx.episode.engine import DiamondEngine
from meqg_mlx.inversion.training import InverterTraining
from meqg_mlx.train.run import TrainingRun

from ..conftest import meqg, tiny_config
from ..train.test_trainer import small_config

PROMPT = "Insert an item into a sorted list. Keep the list sorted."


@pytest.fixture(scope="module")
def run(small_store_path, embedder, tmp_path_factory):
    run = tmp_path_factory.mktemp("cosines") / "run"
    config = small_config(steps=40, learning_rate=3e-3, warmup_steps=5)
    config.episode.max_steps = 4
    config.inversion.lookup_threshold = 0.99999
    TrainingRun(run, small_store_path, config).train()
    inverter = tiny_config(steps=60, lookup_threshold=0.99999, seed_with_nearest=False)
    InverterTraining(ConceptStore.open(small_store_path), run, embedder, inverter).train()
    return run


def cosine(embedder, text: str, vector) -> float:
    return float(embedder.encode([text])[0] @ vector)


def test_decode_prints_each_shown_texts_own_cosine(run, embedder):
    texts = ["Insert an item into a sorted list.", "A recipe for tomato soup with basil.", "bisect.insort"]
    shown = meqg("decode", "--run", str(run), "--steps", "1", *texts)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == len(texts)
    for text, line in zip(texts, lines):
        printed, decoded = re.search(r" cos (-?\d\.\d{3})[^:]*: (.*)$", line).groups()
        assert float(printed) == pytest.approx(cosine(embedder, decoded, embedder.encode([text])[0]), abs=6e-4), line


def test_run_and_its_json_print_each_shown_texts_own_cosine(run, embedder):
    args = ("run", PROMPT, "--run", str(run), "--budget-seconds", "120")
    printed = [line for line in meqg(*args).stdout.splitlines() if line.startswith("cos ")]
    answered = json.loads(meqg(*args, "--json").stdout)["concepts"]
    result = DiamondEngine.from_run(run, embedder).episode(PROMPT, [], Budget(seconds=120))
    concepts = result.response["concepts"]
    assert concepts and len(printed) == len(answered) == len(concepts)
    for line, answer, concept, vector in zip(printed, answered, concepts, result.concept_vectors):
        shown = concept["text"] or concept["nearest_text"]
        assert concept["cosine"] == pytest.approx(cosine(embedder, shown, vector), abs=1e-4)
        assert (answer["text"], answer["nearest_text"]) == (concept["text"], concept["nearest_text"])
        assert answer["cosine"] == pytest.approx(concept["cosine"], abs=1e-4)  # what `meqg serve` answers too
        value, text = re.fullmatch(r"cos (-?\d\.\d\d)  (.*)", line).groups()
        assert float(value) == pytest.approx(answer["cosine"], abs=0.006)
        assert text == " ".join((answer["text"] or f"[~ {answer['nearest_text']}]").split())
