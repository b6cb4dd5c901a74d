import numpy as np

from meqg_mlx.concepts import ConceptStore, NewConcept
from meqg_mlx.concepts.domains import compute_domains, label_domains
from meqg_mlx.concepts.search import search_subjects


def test_sentence_hits_answer_with_the_function_they_describe(tmp_path):
    store = ConceptStore.create(tmp_path / "s", dim=3, origin_model="m")
    first = store.reserve_ids(3)
    function, sentence, other = first, first + 1, first + 2
    store.add(
        [
            NewConcept(function, "list.sort()", np.array([1.0, 0.0, 0.0]), kind="code"),
            NewConcept(
                sentence, "The sort is in place.", np.array([0.0, 1.0, 0.0]), relations=[(function, "describes", 0.5)]
            ),
            NewConcept(other, "something else", np.array([0.6, 0.0, 0.8])),
        ]
    )
    results = search_subjects(store, np.array([0.0, 1.0, 0.1]), k=2)
    assert results[0].subject.concept_id == function and results[0].via.concept_id == sentence
    assert results[0].score == results[0].via.score
    assert results[1].subject.concept_id == other and results[1].via is None


def test_search_subjects_on_real_stdlib_concepts(small_store, embedder):
    query = embedder.encode(["Serialize obj to a JSON formatted str"])[0]
    keys = [r.subject.key for r in search_subjects(small_store, query, 3)]
    assert "py:json.dumps" in keys


def test_domain_labels_name_what_is_distinctive():
    """A word in every text of both domains ("each") is as frequent as the distinctive ones and names neither.
    (Words of four letters or more count.)"""
    texts = [
        *["sort each list", "each list to sort", "sort each list in place"],
        *["decode each json", "each json to decode", "decode each json text"],
    ]
    names = label_domains(texts, np.array([0, 0, 0, 1, 1, 1]), 2, words=2)
    assert names == ["list sort", "decode json"]  # ties in alphabetical order


def test_domain_labels_do_not_depend_on_the_hash_seed():
    """Tied words are ordered by the word: the same store gets the same labels in every process."""
    import subprocess
    import sys

    script = (
        "import numpy as np; from meqg_mlx.concepts.domains import label_domains; "
        "print(label_domains(['alpha beta gamma delta', 'epsilon zeta theta iota'], np.array([0, 1]), 2))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": str(seed)},
            check=True,
        ).stdout
        for seed in range(3)
    }
    assert outputs == {"['alpha beta delta', 'epsilon iota theta']\n"}


def test_compute_domains_rows_are_consistent():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(1000, 1200)
    rows, labels, scores = compute_domains(ids, x, [f"text {i}" for i in range(200)], k=5)
    assert len(rows) == 5 and sum(r["count"] for r in rows) == 200
    assert scores.shape == (200, 5) and (labels == scores.argmax(axis=1)).all()
    for row in rows:
        assert set(row["representative_ids"]) <= set(ids[labels == row["domain"]].tolist())
        assert 0 <= row["variance"] <= 2
