"""Prose as concept sequences: `next` chains of its sentences (`concepts/text.py` splits them); pydoc topics."""

from __future__ import annotations

from collections.abc import Iterator

from ..text import split_sentences
from . import ConceptRecord


def document_records(doc_key: str, text: str, source: str, about: str | None = None) -> list[ConceptRecord]:
    """One text concept per sentence, chained by `next`; each `describes` `about` when given."""
    records = [
        ConceptRecord(f"{doc_key}#{i}", sentence, "text", source) for i, sentence in enumerate(split_sentences(text))
    ]
    for current, following in zip(records, records[1:]):
        current.relate(following.key, "next")
    if about:
        for record in records:
            record.relate(about, "describes", 0.5)
    return records


def pydoc_topics() -> Iterator[ConceptRecord]:
    """The Python reference's help topics (`pydoc_data.topics`), as sentence chains."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield from document_records(f"pydoc:{name}", topics[name], "pydoc")
