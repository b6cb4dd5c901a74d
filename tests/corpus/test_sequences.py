import numpy as np

from meqg_mlx.corpus.sequences import document_name, documents, split_documents, windows


def testdocument_names():
    assert document_name("pydoc:for#3") == "pydoc:for"
    assert document_name("py:json.dumps") == "py:json"
    assert document_name("py-example:statistics.mean#2") == "py-example:statistics.mean"
    assert document_name(None) is None


def test_documents_split_without_overlap_and_windows_follow_reading_order(small_store):
    docs = documents(small_store)
    assert len(docs) > 10 and all(len(d.ids) >= 3 for d in docs)
    train, validation = split_documents(docs, 0.2)
    train_ids = set(np.concatenate([d.ids for d in train]).tolist())
    assert not train_ids & set(np.concatenate([d.ids for d in validation]).tolist())
    assert split_documents(docs, 0.2)[1] == validation  # deterministic
    batch = windows(train, 8, np.random.default_rng(0), 16)
    assert batch.shape == (16, 9)
    for row in batch:
        valid = row[row >= 0]
        assert (np.diff(valid) > 0).all() and set(valid.tolist()) <= train_ids


def test_concept_table_rows_and_padding(small_store):
    from meqg_mlx.corpus.sequences import ConceptTable, seen_before

    table = ConceptTable(small_store)
    ids = table.ids[:3]
    inputs, targets, mask = table.rows(np.array([[ids[0], ids[1], ids[2]], [ids[2], ids[0], -1]]))
    assert np.array(inputs).tolist() == [[0, 1], [2, 0]] and np.array(targets).tolist() == [[1, 2], [0, table.pad_row]]
    assert np.array(mask).tolist() == [[1, 1], [1, 0]]
    assert np.allclose(np.array(table.matrix[table.pad_row]), 0) and table.matrix.shape[0] == len(table.ids) + 1
    assert np.array(seen_before(inputs))[0].tolist() == [[0, -1], [0, 1]]


def test_seen_among_says_what_comparing_with_seen_before_says():
    """The trainer's InfoNCE exclusions: a candidate seen at or before a position, repeats included."""
    import mlx.core as mx

    from meqg_mlx.corpus.sequences import seen_among, seen_before

    rng = np.random.default_rng(0)
    inputs = mx.array(rng.integers(0, 12, (5, 9)))  # few ids: repeats within rows
    candidates = mx.array(np.concatenate([rng.integers(0, 12, 30), [40, 41]]))  # and ids never seen
    seen = np.array(seen_before(inputs)).reshape(45, -1)
    expected = (np.array(candidates)[None, :, None] == seen[:, None, :]).any(-1)
    got = np.array(seen_among(inputs, candidates))
    assert got.shape == (45, 32) and np.array_equal(got, expected) and expected.any() and not expected.all()
