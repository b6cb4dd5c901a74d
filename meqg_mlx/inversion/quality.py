"""How close decoded texts are to the originals: exact match, token F1, BLEU-4 (the vec2text paper's measures).

The default embedder's tokenizer is uncased, so texts are compared case-folded and
split into words and punctuation marks.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def exact_match(hypothesis: str, reference: str) -> bool:
    return words(hypothesis) == words(reference)


def token_f1(hypothesis: str, reference: str) -> float:
    hyp, ref = Counter(words(hypothesis)), Counter(words(reference))
    common = sum((hyp & ref).values())
    if not common:
        return 0.0
    precision, recall = common / sum(hyp.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def corpus_bleu(hypotheses: list[str], references: list[str], order: int = 4) -> float:
    """Corpus BLEU-4 (Papineni et al.) in [0, 100], one reference per hypothesis."""
    matches, totals = [0] * order, [0] * order
    hyp_length = ref_length = 0
    for hypothesis, reference in zip(hypotheses, references):
        hyp, ref = words(hypothesis), words(reference)
        hyp_length, ref_length = hyp_length + len(hyp), ref_length + len(ref)
        for n in range(1, order + 1):
            hyp_grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
            ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            matches[n - 1] += sum((hyp_grams & ref_grams).values())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if not hyp_length or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / order
    brevity = min(0.0, 1.0 - ref_length / hyp_length)
    return 100.0 * math.exp(brevity + log_precision)
