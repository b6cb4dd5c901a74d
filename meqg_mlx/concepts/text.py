"""Text as the store keys and splits it: the dedup key of a concept's text, prose into paragraphs and
sentences (what a document becomes, and what an episode's prompt becomes)."""

from __future__ import annotations

import re

_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Dr.", "No.", "approx.", "resp.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(`*])")
MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 600


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, each with its whitespace collapsed."""
    return [re.sub(r"\s+", " ", block).strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


def normalize_text(text: str) -> str:
    """Dedup key: case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip().casefold()


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
