"""Decoding quality measures against hand-computed values."""

import pytest

from meqg_mlx.inversion.quality import corpus_bleu, exact_match, token_f1


def test_exact_match_ignores_case_and_spacing_only():
    assert exact_match("sort a list , in place .", "Sort a list, in place.")
    assert not exact_match("sort a list in place", "Sort a list, in place.")


def test_token_f1():
    assert token_f1("the cat sat", "the cat sat") == 1.0
    assert token_f1("the dog", "a cat") == 0.0
    assert token_f1("the cat sat down", "the cat sat") == pytest.approx(2 * 0.75 * 1.0 / 1.75)


def test_bleu_matches_the_hand_computed_value():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25
    )
    assert corpus_bleu(["a b c d e"], ["a b c d e"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(100 * 2.718281828 ** (1 - 2))
    assert corpus_bleu(["x y"], ["a b c d"]) == 0.0
