from meqg_mlx.concepts.sources.prose import document_records, pydoc_topics


def test_documents_become_next_chains():
    records = document_records(
        "doc:x", "First sentence here. Second sentence here. Third one is here.", "file", about="py:thing"
    )
    assert [r.key for r in records] == ["doc:x#0", "doc:x#1", "doc:x#2"]
    assert ("doc:x#1", "next", 1.0) in records[0].relations
    assert all(("py:thing", "describes", 0.5) in r.relations for r in records)
    assert not any(t == "next" for _, t, _ in records[2].relations)


def test_pydoc_topics_are_real_prose():
    records = list(pydoc_topics())
    assert len(records) > 2000
    assert any("for" in r.text and "loop" in r.text for r in records)
    assert all(r.source == "pydoc" and r.kind == "text" for r in records)
