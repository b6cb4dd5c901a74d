"""The inverter's vocabulary writes its output as the training texts were written: spacing and casing."""

from meqg_mlx.encoder.base import load_tokenizer
from meqg_mlx.inversion.quality import words
from meqg_mlx.inversion.tokens import InverterVocab, SurfaceForms

TEXTS = [
    "io.BytesIO.read(self, /)",
    "io.BytesIO.write(self, b, /)",
    "json.loads(s, *, cls=None)",
    "json.dumps(obj, *, indent=None)",
    "Return the number of items in the queue.",
    "Return a new list, sorted.",
    "dog, domestic dog, Canis familiaris: a member of the genus Canis",
    "wolf: any of various wild members of the genus Canis",
    "A member of the genus Canis.",
]


def test_texts_come_back_spaced_and_cased_as_written(embedder):
    tokenizer = load_tokenizer(embedder.tokenizer_path)
    surface = SurfaceForms.learn(tokenizer, TEXTS)
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert surface.write(tokenizer, ids) == text
        assert tokenizer.decode(ids) != text  # what the uncased tokenizer alone gives back
    unseen = "json.BytesIO.loads(self, obj, /)"  # pairs seen elsewhere, in a new order
    assert surface.write(tokenizer, tokenizer.encode(unseen, add_special_tokens=False).ids) == unseen
    lowered = tokenizer.encode("a wolf, a member of the genus canis", add_special_tokens=False).ids
    assert surface.write(tokenizer, lowered) == "A wolf, a member of the genus Canis"  # openings as texts began
    again = SurfaceForms.from_json(surface.to_json())
    assert (again.cased, again.opening, again.glued, again.before) == (
        surface.cased,
        surface.opening,
        surface.glued,
        surface.before,
    )


def test_the_vocabulary_decodes_with_its_surface_forms_and_keeps_the_words(embedder):
    vocab = InverterVocab.from_texts(embedder.tokenizer_path, TEXTS)
    tokens = vocab.encode(TEXTS, 32)[:, 1:]  # model ids after BOS, EOS-ended
    assert vocab.decode(tokens) == TEXTS
    plain = InverterVocab(embedder.tokenizer_path, vocab.token_ids)
    assert [words(t) for t in plain.decode(tokens)] == [words(t) for t in TEXTS]
