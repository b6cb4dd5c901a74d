"""The inverter's tokens: the embedder's own tokenizer.json, cut to the vocabulary its training texts use.

Model ids 0..3 are PAD, BOS, EOS, UNK; the rest map one-to-one onto tokenizer ids,
so the output layer is a few thousand rows instead of the tokenizer's ~30k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..encoder.base import load_tokenizer

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = 4


class InverterVocab:
    def __init__(self, tokenizer_path: str | Path, token_ids: np.ndarray):
        self.tokenizer_path = str(tokenizer_path)
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.token_ids = np.asarray(token_ids, dtype=np.int64)  # model id - SPECIALS -> tokenizer id
        self._to_model = np.full(self.tokenizer.get_vocab_size(with_added_tokens=True), UNK, np.int64)
        self._to_model[self.token_ids] = np.arange(SPECIALS, SPECIALS + len(self.token_ids))

    @classmethod
    def from_texts(cls, tokenizer_path: str | Path, texts: list[str]) -> "InverterVocab":
        tokenizer = load_tokenizer(tokenizer_path)
        used = {i for enc in tokenizer.encode_batch(texts, add_special_tokens=False) for i in enc.ids}
        return cls(tokenizer_path, np.array(sorted(used), dtype=np.int64))

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
            row = row[row >= SPECIALS]
            texts.append(self.tokenizer.decode(self.token_ids[row - SPECIALS].tolist()))
        return texts

    def word_embeddings(self, table: np.ndarray) -> np.ndarray:
        """Rows of the embedder's (tokenizer vocab, d) embedding table for the model vocabulary."""
        specials = [self.tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]")]
        fallback = table.mean(axis=0)
        head = np.stack([table[i] if i is not None else fallback for i in specials])
        return np.concatenate([head, table[self.token_ids]]).astype(np.float32)
