"""Where chains come from: a run's held-out documents, or a user's `--chains F.jsonl`.

Held-out means the trainer's own validation documents (`corpus.sequences.split_documents`
with the run's `validation_fraction`), so no chain concept was trained on. A chains
file holds one chain per line: a JSON list of texts (each step follows `next`), or
{"texts": [...], "relations": [...]} with the relation each step follows; a text the store
lacks (matched after `normalize_text`) is embedded with the run's encoder and becomes a
candidate too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..concepts.sources.files import jsonl_values
from ..concepts.store import ConceptStore
from ..concepts.text import normalize_text
from ..corpus.relations import NEXT, RelationVocabulary, held_out_rows
from ..corpus.sequences import ConceptTable, documents, split_documents
from ..encoder.base import Embedder, check_texts
from ..errors import InputError
from .chains import Candidates, Chain, cut


def store_candidates(store: ConceptStore, table: ConceptTable) -> Candidates:
    """Every store concept, in the table's row order (sorted by id)."""
    columns = store.columns(["concept_id", "text"])
    text_of = dict(zip(columns["concept_id"].to_pylist(), columns["text"].to_pylist()))
    return Candidates(table.vectors.astype(np.float64), [text_of[int(i)] for i in table.ids])


def held_out_chains(
    store: ConceptStore,
    table: ConceptTable,
    validation_fraction: float,
    length: int,
    vocabulary: RelationVocabulary,
) -> list[Chain]:
    """The validation documents cut into chains of `length` concepts (prose `next` chains, code modules in
    reading order), then relation chains from held-out concepts: module -> class -> method paths inside
    those documents, and WordNet hypernym paths from held-out synsets."""
    training, validation = split_documents(documents(store, required=False), validation_fraction)
    chains = [chain for doc in validation for chain in cut(doc.name, table.row_of[doc.ids], length)]
    trained = {int(i) for doc in training for i in doc.ids}
    held = held_out_rows(store, table, validation_fraction)
    return chains + relation_chains(store, table, trained, held, length, vocabulary)


RELATION_PATHS = {"contains": 3, "hypernym": None}  # relation followed -> longest path (None: the horizon's)
# Paths kept per relation, chosen by a salted hash of their name (unsalted, the kept ones would all fall
# in the calibration half of `calibration_split`): 20k WordNet synsets give 13k hypernym paths, which
# would be 97% of the chains and make one run's rollouts take minutes.
RELATION_CHAINS_LIMIT = 256


def relation_chains(
    store: ConceptStore,
    table: ConceptTable,
    trained: set[int],
    held: np.ndarray,
    length: int,
    vocabulary: RelationVocabulary,
) -> list[Chain]:
    """Paths along one relation type (first target each time) that start at a held-out concept (`held`, by
    row: its edges were never trained on) and touch no concept of a training document (`trained`, ids); at
    most RELATION_CHAINS_LIMIT per type. Each step follows the relation when the model knows it (else
    `next`). Later steps may follow edges training read, as the model's and the baselines' alike."""
    columns = store.columns(["concept_id", "relations"])
    follow: dict[str, dict[int, int]] = {kind: {} for kind in RELATION_PATHS}
    for concept_id, relations in zip(columns["concept_id"].to_pylist(), columns["relations"].to_pylist()):
        for relation in relations or []:
            if relation["type"] in follow and relation["target_id"] is not None:
                follow[relation["type"]].setdefault(concept_id, relation["target_id"])
    chains = []
    for kind, longest in RELATION_PATHS.items():
        edges, limit = follow[kind], min(longest or length, length)
        relation = vocabulary.names.index(kind) if kind in vocabulary.names else 0
        starts = sorted(set(edges) - set(edges.values()))  # where no path of this kind leads in
        paths = []
        for start in starts:
            path = [start]
            while path[-1] in edges and len(path) < limit and edges[path[-1]] not in path:
                path.append(edges[path[-1]])
            if len(path) >= 2 and held[table.row_of[start]] and not trained.intersection(path):
                steps = np.full(len(path) - 1, relation)
                paths.append(Chain(f"{kind}:{start}", table.row_of[np.array(path)], steps))
        chains += sorted(paths, key=lambda chain: chain.bucket("kept:"))[:RELATION_CHAINS_LIMIT]
    return chains


def read_chains_file(path: str | Path) -> list[tuple[list[str], list[str]]]:
    """The chains in a .jsonl file as (texts, relations): each line a JSON list of >= 2 non-empty texts
    (every step follows `next`), or {"texts": [...], "relations": [...]} with one relation name per step;
    anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"chains file not found: {path}")
    chains = []
    for number, chain in jsonl_values(path):
        where = f"{path}:{number}"
        texts, relations = (chain.get("texts"), chain.get("relations")) if isinstance(chain, dict) else (chain, None)
        if isinstance(chain, dict) and set(chain) - {"texts", "relations"}:
            raise InputError(f"{where}: a chain object holds texts and relations only")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise InputError(f"{where}: each line must be a JSON list of texts or an object with one")
        if len(texts) < 2:
            raise InputError(f"{where}: a chain needs at least 2 texts, got {len(texts)}")
        relations = [NEXT] * (len(texts) - 1) if relations is None else relations
        if not isinstance(relations, list) or not all(isinstance(r, str) for r in relations):
            raise InputError(f"{where}: relations must be a list of relation names")
        if len(relations) != len(texts) - 1:
            raise InputError(f"{where}: {len(texts)} texts need {len(texts) - 1} relations, got {len(relations)}")
        try:
            check_texts(texts)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        chains.append((texts, relations))
    return chains  # never empty: a file without a non-blank line is refused as empty


def with_texts(candidates: Candidates, texts: list[str], embedder: Embedder) -> tuple[Candidates, dict[str, int]]:
    """The candidates plus every text they lack (embedded), and each text's row (keyed by `normalize_text`)."""
    row_of = {normalize_text(text): row for row, text in enumerate(candidates.texts)}
    missing = list(dict.fromkeys(t for t in texts if normalize_text(t) not in row_of))
    vectors, names = candidates.vectors, list(candidates.texts)
    if missing:
        extra = embedder.encode(missing).astype(np.float64)
        if extra.shape[1] != vectors.shape[1]:
            raise InputError(f"the encoder gives {extra.shape[1]}-d vectors; the store holds {vectors.shape[1]}-d")
        for text in missing:
            row_of[normalize_text(text)] = len(names)
            names.append(text)
        vectors = np.concatenate([vectors, extra])
    return Candidates(vectors, names), row_of


def file_chains(
    path: str | Path, candidates: Candidates, embedder: Embedder, vocabulary: RelationVocabulary
) -> tuple[list[Chain], Candidates]:
    """The file's chains as candidate rows, each step's relation as the run's id (an unknown name is a
    one-line error); texts the store lacks are embedded and appended as candidates."""
    read = read_chains_file(path)
    relations = []
    for number, (_, names) in enumerate(read, 1):
        try:
            relations.append(np.array(vocabulary.ids(names), np.int64))
        except InputError as exc:
            raise InputError(f"{path}: chain {number}: {exc}") from None
    candidates, row_of = with_texts(candidates, [t for texts, _ in read for t in texts], embedder)
    chains = [
        Chain(f"{Path(path).name}:{i + 1}", np.array([row_of[normalize_text(t)] for t in texts]), steps)
        for i, ((texts, _), steps) in enumerate(zip(read, relations))
    ]
    return chains, candidates
