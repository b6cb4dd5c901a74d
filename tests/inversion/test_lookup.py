"""Store lookup on the small real store: a stored concept's vector gives back its text; far vectors miss."""

import numpy as np
import pytest

from meqg_mlx.errors import ConfigError, InputError
from meqg_mlx.inversion.lookup import StoreLookup


def test_stored_vectors_decode_to_their_own_text(small_store):
    ids, vectors = small_store.all_vectors()
    rows = {r["concept_id"]: r["text"] for r in small_store.get(ids[:5].tolist())}
    decoded = StoreLookup(small_store, threshold=0.99).decode(vectors[:5])
    assert [d.text for d in decoded] == [rows[i] for i in ids[:5].tolist()]
    assert all(d.hit and d.score > 0.999 for d in decoded)


def test_a_vector_far_from_the_store_misses_but_names_the_nearest(small_store):
    vector = np.random.default_rng(0).normal(size=small_store.dim)
    (decoded,) = StoreLookup(small_store, threshold=0.9).decode(vector)
    assert not decoded.hit and decoded.text is None
    assert decoded.score < 0.9 and decoded.concept_id is not None and decoded.nearest_text


def test_bad_vectors_and_thresholds_are_one_line_errors(small_store):
    lookup = StoreLookup(small_store)
    with pytest.raises(InputError, match="dimension 3, the store expects"):
        lookup.decode(np.ones(3))
    with pytest.raises(InputError, match="NaN"):
        lookup.decode(np.full(small_store.dim, np.nan))
    with pytest.raises(ConfigError, match="threshold"):
        StoreLookup(small_store, threshold=1.5)
