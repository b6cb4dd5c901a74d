"""WordNet 3.x database files (data.noun, data.verb, ...) as lexical concepts with typed relations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ...errors import InputError
from . import ConceptRecord

STANDARD_PLACES = (
    "/usr/share/wordnet",
    "/usr/local/share/wordnet",
    "/opt/homebrew/share/wordnet/dict",
    "/usr/local/WordNet-3.0/dict",
    "~/nltk_data/corpora/wordnet",
    "~/wordnet/dict",
)
POS_FILES = (("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv"))
POINTERS = {
    "@": "hypernym",
    "@i": "hypernym",
    "~": "hyponym",
    "~i": "hyponym",
    "%p": "part_meronym",
    "%m": "member_meronym",
    "%s": "substance_meronym",
    "#p": "part_holonym",
    "#m": "member_holonym",
    "#s": "substance_holonym",
    "!": "antonym",
    "&": "similar_to",
}


def find_wordnet(path: str | Path | None = None) -> Path | None:
    """The WordNet dict directory: `path`, $WNHOME/dict, or a standard place."""
    candidates = [path] if path else [os.path.join(os.environ["WNHOME"], "dict")] if "WNHOME" in os.environ else []
    candidates = candidates or list(STANDARD_PLACES)
    for candidate in candidates:
        directory = Path(candidate).expanduser()
        if (directory / "data.noun").is_file():
            return directory
    return None


def _key(pos: str, offset: str) -> str:
    return f"wn:{'a' if pos == 's' else pos}:{offset}"


def parse_data_line(line: str) -> ConceptRecord:
    """One synset line of a WordNet data file (see wndb(5WN))."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, ss_type = fields[0], fields[2]
    word_count = int(fields[3], 16)
    lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(word_count)]
    lemmas = [lemma.split("(")[0] for lemma in lemmas]
    at = 4 + 2 * word_count
    pointer_count = int(fields[at])
    record = ConceptRecord(_key(ss_type, offset), f"{', '.join(lemmas)}: {gloss.strip()}", "lexical", "wordnet")
    for i in range(pointer_count):
        symbol, target, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
        if symbol in POINTERS:
            record.relate(_key(pos, target), POINTERS[symbol])
    return record


def wordnet_records(path: str | Path | None = None, under: list[str] | None = None) -> Iterator[ConceptRecord]:
    """Every synset, or with `under` (words) the synsets below the first noun sense of each word (along
    hyponyms) together with all of their hypernyms, so every hypernym chain in it reaches the top."""
    if under:
        yield from _below(list(wordnet_records(path)), under)
        return
    directory = find_wordnet(path)
    if directory is None:
        where = path or "standard places (" + ", ".join(STANDARD_PLACES) + ")"
        raise InputError(f"no WordNet database (data.noun) found in {where}; on Debian: apt-get install wordnet-base")
    for _, name in POS_FILES:
        file = directory / name
        if not file.is_file():
            continue
        with open(file, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if line.startswith("  ") or not line.strip():
                    continue
                try:
                    yield parse_data_line(line.rstrip("\n"))
                except (IndexError, ValueError) as exc:
                    raise InputError(f"{file}:{number}: not a WordNet data line") from exc


def _below(records: list[ConceptRecord], words: list[str]) -> list[ConceptRecord]:
    by_key = {r.key: r for r in records}
    first_sense = {}
    for record in records:
        if record.key.startswith("wn:n:"):
            for lemma in record.text.partition(": ")[0].split(", "):
                first_sense.setdefault(lemma, record.key)
    missing = [word for word in words if word not in first_sense]
    if missing:
        raise InputError(f"wordnet@: no noun {missing[0]!r} in WordNet")
    hyponyms: dict[str, list[str]] = {}
    for record in records:
        for target, kind, _ in record.relations:
            if kind == "hypernym":
                hyponyms.setdefault(target, []).append(record.key)
    kept = set()
    below = [first_sense[word] for word in words]
    while below:
        key = below.pop()
        if key not in kept:
            kept.add(key)
            below.extend(hyponyms.get(key, []))
    above = list(kept)
    while above:
        for target, kind, _ in by_key[above.pop()].relations:
            if kind == "hypernym" and target in by_key and target not in kept:
                kept.add(target)
                above.append(target)
    return [r for r in records if r.key in kept]
