"""The inverter's tokens: the embedder's own tokenizer.json, cut to the vocabulary its training texts use.

Model ids 0..3 are PAD, BOS, EOS, UNK; the rest map one-to-one onto tokenizer ids,
so the output layer is a few thousand rows instead of the tokenizer's ~30k. The
default embedder's tokenizer is uncased and splits punctuation off; `SurfaceForms`,
learned from the training texts, writes the output back as those texts were written.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..encoder.base import load_tokenizer

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = 4
_WORD = re.compile(r"\w+")


class SurfaceForms:
    """How the training texts wrote what an uncased tokenizer lowercases and splits apart.

    Learned from the tokenizer's offsets into the training texts: whether each token pair
    was mostly written without a space (`io.BytesIO.read(self`), for pairs never seen how
    often the left token was glued to what followed it and the right one to what preceded
    it, and each word's most common casing (`BytesIO`, `Canis`; a text's first word as texts
    mostly began with it). The words stay the same,
    so cosines and the case- and space-blind quality measures do not change; the text
    reads as written instead of `io. bytesio. read ( self`.
    """

    def __init__(
        self,
        glued: set[tuple[int, int]],
        spaced: set[tuple[int, int]],
        before: dict[int, tuple[int, int]],
        after: dict[int, tuple[int, int]],
        cased: dict[str, str],
        opening: dict[str, str],
    ):
        self.glued, self.spaced, self.cased, self.opening = glued, spaced, cased, opening
        self.before, self.after = before, after  # token -> (times glued to its neighbour, times seen beside one)

    def _fallback(self, left: int, right: int) -> bool:
        glued_after, seen_after = self.after.get(left, (0, 0))
        glued_before, seen_before = self.before.get(right, (0, 0))
        return 2 * (glued_after + glued_before) > seen_after + seen_before

    @classmethod
    def learn(cls, tokenizer, texts: list[str], min_pair_count: int = 2) -> "SurfaceForms":
        pairs, glued_pairs = Counter(), Counter()
        before, glued_before, after, glued_after = Counter(), Counter(), Counter(), Counter()
        for enc in tokenizer.encode_batch(texts, add_special_tokens=False):
            for i in range(1, len(enc.ids)):
                a, b = enc.ids[i - 1], enc.ids[i]
                glued = enc.offsets[i][0] == enc.offsets[i - 1][1]
                pairs[a, b] += 1
                before[b] += 1
                after[a] += 1
                if glued:
                    glued_pairs[a, b] += 1
                    glued_before[b] += 1
                    glued_after[a] += 1
        openings = Counter(m.group(0) for m in map(_WORD.match, texts) if m)
        forms = cls(
            set(),
            set(),
            {t: (glued_before[t], n) for t, n in before.items()},
            {t: (glued_after[t], n) for t, n in after.items()},
            most_common_casing(Counter(w for text in texts for w in _WORD.findall(text))),
            most_common_casing(openings),
        )
        for pair, n in pairs.items():  # only the pairs the fallback gets wrong are kept
            if n >= min_pair_count and (2 * glued_pairs[pair] > n) != forms._fallback(*pair):
                (forms.glued if 2 * glued_pairs[pair] > n else forms.spaced).add(pair)
        return forms

    def write(self, tokenizer, ids: list[int]) -> str:
        """Tokenizer ids -> text, spaced and cased as the training texts were."""
        out = []
        for i, token in enumerate(ids):
            piece = tokenizer.id_to_token(token) or ""
            continued = piece.startswith("##")
            piece = piece[2:] if continued else piece
            if i and not continued:
                pair = (ids[i - 1], token)
                glue = pair in self.glued or pair not in self.spaced and self._fallback(*pair)
                out.append("" if glue else " ")
            out.append(piece)
        text = _WORD.sub(lambda m: self.cased.get(m.group(0), m.group(0)), "".join(out))
        opening = _WORD.match(text)  # a text's first word as texts mostly began with it ("A young girl")
        if opening and opening.group(0).lower() in self.opening:
            text = self.opening[opening.group(0).lower()] + text[opening.end() :]
        return text

    def to_json(self) -> dict:
        return {
            "glued": sorted(map(list, self.glued)),
            "spaced": sorted(map(list, self.spaced)),
            "before": [[t, *counts] for t, counts in sorted(self.before.items())],
            "after": [[t, *counts] for t, counts in sorted(self.after.items())],
            "cased": self.cased,
            "opening": self.opening,
        }

    @classmethod
    def from_json(cls, data: dict) -> "SurfaceForms":
        return cls(
            {tuple(p) for p in data["glued"]},
            {tuple(p) for p in data["spaced"]},
            {t: (g, n) for t, g, n in data["before"]},
            {t: (g, n) for t, g, n in data["after"]},
            dict(data["cased"]),
            dict(data["opening"]),
        )


def most_common_casing(words: Counter) -> dict[str, str]:
    """lowercase word -> its most common written form, where that is not the lowercase itself."""
    best: dict[str, tuple[int, str]] = {}
    for word, count in words.items():
        if count > best.get(word.lower(), (0, ""))[0]:
            best[word.lower()] = (count, word)
    return {key: word for key, (_, word) in best.items() if word != key}


class InverterVocab:
    def __init__(self, tokenizer_path: str | Path, token_ids: np.ndarray, surface: SurfaceForms | None = None):
        self.surface = surface  # None: the tokenizer's own decoding (inverters saved before surface forms)
        self.tokenizer_path = str(tokenizer_path)
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.token_ids = np.asarray(token_ids, dtype=np.int64)  # model id - SPECIALS -> tokenizer id
        self._to_model = np.full(self.tokenizer.get_vocab_size(with_added_tokens=True), UNK, np.int64)
        self._to_model[self.token_ids] = np.arange(SPECIALS, SPECIALS + len(self.token_ids))

    @classmethod
    def from_texts(cls, tokenizer_path: str | Path, texts: list[str]) -> "InverterVocab":
        tokenizer = load_tokenizer(tokenizer_path)
        used = {i for enc in tokenizer.encode_batch(texts, add_special_tokens=False) for i in enc.ids}
        return cls(tokenizer_path, np.array(sorted(used), dtype=np.int64), SurfaceForms.learn(tokenizer, texts))

    @property
    def size(self) -> int:
        return SPECIALS + len(self.token_ids)

    def lengths(self, texts: list[str]) -> np.ndarray:
        """Model tokens of each text including BOS and EOS."""
        return np.array([len(e.ids) + 2 for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)])

    def encode(self, texts: list[str], max_tokens: int) -> np.ndarray:
        """(n, longest) int32: BOS text EOS, PAD after; texts longer than max_tokens are cut (EOS kept)."""
        rows = [
            self._to_model[np.array(e.ids, np.int64)][: max_tokens - 2]
            for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)
        ]
        out = np.full((len(rows), max(len(r) for r in rows) + 2), PAD, np.int32)
        for i, row in enumerate(rows):
            out[i, 0], out[i, 1 : len(row) + 1], out[i, len(row) + 1] = BOS, row, EOS
        return out

    def decode(self, rows: np.ndarray) -> list[str]:
        """Generated model ids (after BOS) -> texts; stops at EOS, drops specials."""
        texts = []
        for row in np.asarray(rows):
            end = np.flatnonzero(row == EOS)
            row = row[: end[0] if len(end) else len(row)]
            ids = self.token_ids[row[row >= SPECIALS] - SPECIALS].tolist()
            texts.append(self.surface.write(self.tokenizer, ids) if self.surface else self.tokenizer.decode(ids))
        return texts

    def word_embeddings(self, table: np.ndarray) -> np.ndarray:
        """Rows of the embedder's (tokenizer vocab, d) embedding table for the model vocabulary."""
        specials = [self.tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")]
        fallback = table.mean(axis=0)
        head = np.stack([table[i] if i is not None else fallback for i in specials])
        return np.concatenate([head, table[self.token_ids]]).astype(np.float32)
