import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meqg_mlx.concepts.sources.files import file_records
from meqg_mlx.concepts.sources.wordnet import find_wordnet, parse_data_line, wordnet_records
from meqg_mlx.errors import InputError

WN_LINES = """  1 This software and database is being provided to you, the LICENSEE, by
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)
00001930 03 n 01 physical_entity 0 002 @ 00001740 n 0000 %p 00002137 n 0000 | an entity that has physical existence
00002137 03 n 02 abstraction 0 abstract_entity 0 001 ! 00001930 n 0101 | a general concept formed by extracting common features from specific examples
"""


def test_txt_and_md_become_sentence_chains(tmp_path):
    (tmp_path / "a.txt").write_text("The cat sat on the mat. The dog did not sit at all.")
    (tmp_path / "b.md").write_text(
        "# Title here\n\nSome **bold** text with a [link](http://x).\n\n```\nprint(1)\n```\n"
    )
    records = list(file_records(tmp_path))
    texts = [r.text for r in records]
    assert "The cat sat on the mat." in texts and "Some bold text with a link." in texts
    assert any(r.kind == "code" and r.text == "print(1)" for r in records)
    assert any(t == "next" for r in records for _, t, _ in r.relations)


def test_jsonl_and_parquet_with_relations(tmp_path):
    rows = [
        {"id": "a", "text": "alpha concept", "relations": [{"target": "b", "type": "before", "weight": 0.3}]},
        {"id": "b", "text": "beta concept", "kind": "code"},
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist([{"body": "gamma concept"}]), tmp_path / "p.parquet")
    records = list(file_records(tmp_path / "r.jsonl"))
    assert records[0].relations == [(records[1].key, "before", 0.3)] and records[1].kind == "code"
    assert [r.text for r in file_records(tmp_path / "p.parquet", text_column="body")] == ["gamma concept"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"   \n", "is empty"),
        ("latin.txt", "caf\xe9 au lait".encode("latin-1"), "is not valid UTF-8"),
        ("bad.jsonl", b'{"text": "ok"}\n{broken\n', "bad.jsonl:2: invalid JSON"),
        ("notext.jsonl", b'{"body": "x"}\n', "no string column 'text'"),
        ("blank.jsonl", b'{"text": "  "}\n', "empty text"),
        ("x.csv", b"a,b\n", "unsupported file type .csv"),
        ("bad.parquet", b"not parquet", "not a readable parquet file"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=message):
        list(file_records(tmp_path / name))


def unusable_folder(root):
    """A folder as users have them: good rows among bad ones, files meqg cannot read, a hidden file."""
    root.mkdir()
    rows = ['{"text": "a first fine row"}', '{"text": ""}', "{broken", "[1, 2]", '{"text": "a second fine row"}']
    (root / "notes.jsonl").write_text("\n".join(rows) + "\n")
    (root / "table.csv").write_text("a,b\n")
    (root / "latin.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (root / "blank.txt").write_text("  \n")
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    return root


def test_a_folder_skips_what_it_cannot_use_and_says_where(tmp_path):
    folder = unusable_folder(tmp_path / "docs")
    skipped = []
    records = list(file_records(folder, skipped=skipped))
    assert [r.text for r in records] == ["a first fine row", "a second fine row"]
    assert len(skipped) == 6 and not any(".DS_Store" in reason for reason in skipped)
    for where in ("notes.jsonl:2: empty text", "notes.jsonl:3: invalid JSON", "notes.jsonl:4: each line must be",
                  "unsupported file type .csv", "latin.txt is not valid UTF-8", "blank.txt is empty"):  # fmt: skip
        assert sum(where in reason for reason in skipped) == 1, (where, skipped)
    (folder / "notes.jsonl").unlink()
    with pytest.raises(InputError, match="nothing usable under .*3 files, .*latin.txt is not valid UTF-8"):
        list(file_records(folder))


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="source not found"):
        list(file_records(tmp_path / "nope.txt"))


def test_wordnet_lines_parse_into_typed_relations(tmp_path):
    (tmp_path / "data.noun").write_text(WN_LINES)
    records = list(wordnet_records(tmp_path))
    assert [r.key for r in records] == ["wn:n:00001740", "wn:n:00001930", "wn:n:00002137"]
    assert records[2].text.startswith("abstraction, abstract entity: a general concept")
    assert records[1].relations == [("wn:n:00001740", "hypernym", 1.0), ("wn:n:00002137", "part_meronym", 1.0)]
    assert ("wn:n:00001930", "antonym", 1.0) in records[2].relations
    assert all(r.kind == "lexical" for r in records)


def test_wordnet_missing_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no WordNet database"):
        list(wordnet_records(tmp_path))


@pytest.mark.skipif(find_wordnet() is None, reason="WordNet database not installed (Debian: wordnet-base)")
def test_real_wordnet_database():
    records = []
    for record in wordnet_records():
        records.append(record)
        if len(records) == 2000:
            break
    assert records[0].key == "wn:n:00001740" and records[0].text.startswith("entity:")
    assert sum(t == "hypernym" for r in records for _, t, _ in r.relations) > 1000
    assert parse_data_line(WN_LINES.splitlines()[1]).key == "wn:n:00001740"


@pytest.mark.skipif(find_wordnet() is None, reason="WordNet database not installed (Debian: wordnet-base)")
def test_a_wordnet_subtree_holds_its_hyponyms_and_every_hypernym_above():
    records = list(wordnet_records(under=["food"]))
    keys = {r.key for r in records}
    assert 1000 < len(records) < 3000 and "wn:n:00001740" in keys  # entity, at the top
    for record in records:  # every hypernym chain reaches the top inside the subtree
        hypernyms = [t for t, kind, _ in record.relations if kind == "hypernym"]
        assert record.key == "wn:n:00001740" or any(t in keys for t in hypernyms)
    with pytest.raises(InputError, match="wordnet@: no noun 'zzyzx' in WordNet"):
        list(wordnet_records(under=["zzyzx"]))
