"""Prose as concept sequences: sentence splitting and `next` chains; pydoc topics."""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import ConceptRecord

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Dr.", "No.", "approx.", "resp.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(`*])")
MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 600


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, each with its whitespace collapsed."""
    return [re.sub(r"\s+", " ", block).strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


def split_sentences(text: str) -> list[str]:
    """Sentences of prose, short fragments dropped and very long ones cut at a word boundary."""
    sentences: list[str] = []
    for paragraph in paragraphs(text):
        pending = ""
        for piece in _SENTENCE_END.split(paragraph):
            pending = f"{pending} {piece}".strip() if pending else piece.strip()
            if pending.endswith(_ABBREVIATIONS):
                continue
            sentences.append(pending)
            pending = ""
        if pending:
            sentences.append(pending)
    return [_cut(s) for s in sentences if len(s) >= MIN_SENTENCE_CHARS and re.search(r"[A-Za-z]{2}", s)]


def _cut(sentence: str) -> str:
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    return sentence[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " ..."


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
