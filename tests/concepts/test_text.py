from meqg_mlx.concepts.text import normalize_text, split_sentences


def test_split_sentences_keeps_abbreviations_together():
    text = "Sort the list, e.g. by key. Then return it!\n\nA new paragraph starts here. Ok"
    assert split_sentences(text) == ["Sort the list, e.g. by key.", "Then return it!", "A new paragraph starts here."]


def test_long_sentences_are_cut_at_a_word_and_fragments_dropped():
    long = "Word " * 200 + "end."
    (cut,) = split_sentences(long)
    assert len(cut) <= 604 and cut.endswith(" ...") and not cut.endswith("Wor ...")
    assert split_sentences("Too short. Fine sentence here.") == ["Fine sentence here."]


def test_the_dedup_key_folds_case_and_whitespace():
    assert normalize_text("  Sort\tthe   LIST\n") == normalize_text("sort the list") == "sort the list"
