"""Second vector columns and least-squares projections between them, on a real store."""

import shutil

import numpy as np
import pytest

from meqg_mlx.concepts.columns import LinearProjection, fill_vector_column
from meqg_mlx.concepts.store import ConceptStore, NewConcept
from meqg_mlx.encoder.mlx_encoder import MLXSentenceEncoder
from meqg_mlx.errors import InputError, StoreError

from ..conftest import cli, meqg
from ..encoder.tiny_models import build_tiny_gtr


@pytest.fixture(scope="module")
def gtr_dir(tmp_path_factory):
    return build_tiny_gtr(tmp_path_factory.mktemp("gtr"), "relu", seed=3)[0]


@pytest.fixture
def store(tmp_path, small_store_path):
    shutil.copytree(small_store_path, tmp_path / "store")
    return ConceptStore.open(tmp_path / "store")


def test_a_second_column_keeps_unnormalised_vectors_and_refuses_another_model(store, gtr_dir, embedder):
    mean = MLXSentenceEncoder(gtr_dir, output="mean")
    assert fill_vector_column(store, "gtr_mean", mean, batch_size=200) == store.count()
    ids, vectors = store.vector_columns.read("gtr_mean")
    texts = {row["concept_id"]: row["text"] for row in store.get(ids[:5].tolist())}
    assert np.allclose(vectors[:5], mean.encode([texts[i] for i in ids[:5]]), atol=1e-6)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    with pytest.raises(StoreError, match="holds 32-d vectors from gtr:mean; refusing 24-d vectors from gtr"):
        fill_vector_column(store, "gtr_mean", MLXSentenceEncoder(gtr_dir))
    reopened = ConceptStore.open(store.uri)
    assert reopened.vector_columns.declared()["gtr_mean"] == {
        "origin_model": "gtr:mean",
        "dim": 32,
        "normalized": False,
    }
    # new concepts arrive without the column; filling again embeds only those
    first = reopened.reserve_ids(1)
    reopened.add([NewConcept(first, "A brand new concept.", embedder.encode(["A brand new concept."])[0])])
    assert reopened.vector_columns.missing("gtr_mean")[0].tolist() == [first]
    assert "gtr_mean" not in reopened.get([first])[0]
    assert (
        fill_vector_column(reopened, "gtr_mean", mean) == 1 and len(reopened.vector_columns.missing("gtr_mean")[0]) == 0
    )
    assert reopened.stats()["vector_columns"]["gtr_mean"]["filled"] == reopened.count()


def test_projection_fits_a_linear_relation_and_reports_worse_fits(store, gtr_dir):
    fill_vector_column(store, "gtr_mean", MLXSentenceEncoder(gtr_dir, output="mean"))
    fill_vector_column(store, "gtr", MLXSentenceEncoder(gtr_dir))
    # the sentence vector is Dense(mean) normalised: linear up to each row's length
    near = LinearProjection.fit(store, "gtr_mean", "gtr")
    assert near.report.held_out_mean_cosine > 0.99 and near.report.held_out_rows > 50
    # MiniLM and a random tiny T5 share little: the same fit reports it
    far = LinearProjection.fit(store, "gtr", "vector")
    assert far.report.held_out_mean_cosine < near.report.held_out_mean_cosine - 0.1
    assert far.report.held_out_relative_error > near.report.held_out_relative_error
    near.save(store)
    loaded = LinearProjection.load(store, "gtr_mean", "gtr")
    _, x = store.vector_columns.read("gtr_mean")
    projected = loaded(x[:4])
    assert np.allclose(projected, near(x[:4])) and np.allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="takes 32-d rows"):
        loaded(np.ones((1, 24)))
    with pytest.raises(StoreError, match="no vector column 'nope'"):
        LinearProjection.fit(store, "nope", "gtr")
    with pytest.raises(StoreError, match="no projection gtr->vector"):
        LinearProjection.load(store, "gtr", "vector")


def test_cli_add_vectors_and_project(store, gtr_dir):
    added = meqg(
        "store",
        "add-vectors",
        "--store",
        store.uri,
        "--column",
        "gtr_mean",
        "--model",
        str(gtr_dir),
        "--output",
        "mean",
    )
    assert added.returncode == 0 and f"+{store.count()} vectors (32-d from gtr:mean, unnormalised)" in added.stdout
    meqg("store", "add-vectors", "--store", store.uri, "--column", "gtr", "--model", str(gtr_dir))
    fitted = meqg("store", "project", "--store", store.uri, "--source", "gtr_mean", "--target", "gtr")
    assert fitted.returncode == 0 and "held-out mean cosine" in fitted.stdout, fitted.stderr
    assert "gtr_mean_to_gtr.npz" in fitted.stdout
    stats = meqg("store", "stats", "--store", store.uri)
    assert "column gtr_mean: 32-d from gtr:mean (unnormalised)" in stats.stdout
    bad = cli("store", "add-vectors", "--store", store.uri, "--column", "Bad-Name", "--model", str(gtr_dir))
    assert bad.returncode != 0 and "bad vector column name 'Bad-Name'" in bad.stderr


def test_the_identity_map_fits_exactly_and_a_ridge_says_its_lambda(store):
    identity = LinearProjection.fit(store, "vector", "vector")
    assert identity.report.ridge == 0.0
    assert identity.report.held_out_relative_error < 1e-5 and identity.report.held_out_mean_cosine > 1 - 1e-6
    _, x = store.vector_columns.read("vector")
    assert np.allclose(identity(x[:50]), x[:50], atol=1e-5)
    shrunk = LinearProjection.fit(store, "vector", "vector", ridge=0.1)
    gram_mean_eigenvalue = float((x.astype(np.float64) ** 2).sum() + len(x)) / (store.dim + 1)
    assert shrunk.report.ridge == pytest.approx(0.1 * gram_mean_eigenvalue, rel=0.15)  # training rows only
    assert shrunk.report.held_out_relative_error > 100 * identity.report.held_out_relative_error
    fitted = meqg("store", "project", "--store", store.uri, "--source", "vector", "--target", "vector")
    assert fitted.returncode == 0, fitted.stderr
    assert "held-out 0.0000" in fitted.stdout and "plain least squares" in fitted.stdout
    bad = cli("store", "project", "--store", store.uri, "--source", "vector", "--target", "vector", "--ridge", "-1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--ridge" in bad.stderr
