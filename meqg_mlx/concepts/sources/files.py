"""User files: .txt/.md prose, .jsonl/.parquet rows with a text column and optional relations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ...errors import InputError
from . import ConceptRecord
from .prose import document_records

SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def file_records(
    path: str | Path, text_column: str = "text", skipped: list[str] | None = None
) -> Iterator[ConceptRecord]:
    """Records from one file, or from every file under a directory (sorted; hidden ones left out).

    One file fails on its first bad record. Under a directory a bad record (empty text, bad JSON, ...)
    or file (a type meqg cannot read, not UTF-8, ...) is skipped, its one-line reason appended to
    `skipped`, and the directory fails only when nothing usable is left."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"source not found: {path}")
    if not path.is_dir():
        yield from _records(path, text_column, _fail)
        return
    reasons = skipped if skipped is not None else []
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    usable = 0
    for file in files:
        try:
            for record in _records(file, text_column, lambda error: reasons.append(str(error))):
                usable += 1
                yield record
        except InputError as exc:
            reasons.append(str(exc))
    if not usable:
        found = f"{len(files)} files, " + "; ".join(reasons[:3]) if files else "no files"
        raise InputError(f"nothing usable under {path} ({found}; meqg reads {', '.join(SUFFIXES)})")


def _fail(error: InputError) -> None:
    raise error


def _records(file: Path, text_column: str, bad: Callable[[InputError], None]) -> Iterator[ConceptRecord]:
    """One file's records; a bad record goes to `bad` (which raises it, or keeps it and goes on)."""
    if file.suffix not in SUFFIXES:
        raise InputError(f"unsupported file type {file.suffix or '(none)'}: {file} (use {', '.join(SUFFIXES)})")
    if file.suffix == ".parquet":
        yield from _table_records(file, _parquet_rows(file), text_column, bad)
    elif file.suffix == ".jsonl":
        yield from _table_records(file, _jsonl_rows(file, bad), text_column, bad)
    else:
        yield from _prose_records(file)


def _read_text(file: Path) -> str:
    data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{file} is not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise InputError(f"{file} is empty")
    return text


def _prose_records(file: Path) -> Iterator[ConceptRecord]:
    text = _read_text(file)
    doc_key = f"file:{file.resolve()}"
    if file.suffix == ".md":
        for i, block in enumerate(_FENCE.findall(text)):
            if block.strip():
                yield ConceptRecord(f"{doc_key}:code{i}", block.strip()[:2000], "code", "file")
        text = _FENCE.sub("\n\n", text)
        text = _LINK.sub(r"\1", text)
        text = re.sub(r"^#+\s*(.*)$", r"\1.", text, flags=re.M)
        text = re.sub(r"[*_`]{1,3}", "", text)
    records = document_records(doc_key, text, "file")
    if not records:
        raise InputError(f"{file} has no sentences to store")
    yield from records


def jsonl_values(file: Path, bad: Callable[[InputError], None] = _fail) -> Iterator[tuple[int, object]]:
    """(line number, value) of each non-blank line of a UTF-8 JSON-lines file; a line that is not JSON
    goes to `bad` (by default a one-line error)."""
    for number, line in enumerate(_read_text(file).splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            bad(InputError(f"{file}:{number}: invalid JSON ({exc.msg})"))


def _jsonl_rows(file: Path, bad: Callable[[InputError], None]) -> Iterator[tuple[int, dict]]:
    for number, row in jsonl_values(file, bad):
        if isinstance(row, dict):
            yield number, row
        else:
            bad(InputError(f"{file}:{number}: each line must be a JSON object"))


def _parquet_rows(file: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # noqa: BLE001  (arrow raises several types for bad files)
        raise InputError(f"{file} is not a readable parquet file ({exc})") from exc
    if table.num_rows == 0:
        raise InputError(f"{file} is empty")
    yield from enumerate(table.to_pylist(), 1)


def _table_records(
    file: Path, rows: Iterator[tuple[int, dict]], text_column: str, bad: Callable[[InputError], None]
) -> Iterator[ConceptRecord]:
    base = f"file:{file.resolve()}"
    for number, row in rows:
        try:
            yield _table_record(file, base, number, row, text_column)
        except InputError as exc:
            bad(exc)


def _table_record(file: Path, base: str, number: int, row: dict, text_column: str) -> ConceptRecord:
    text = row.get(text_column)
    if not isinstance(text, str):
        raise InputError(f"{file}:{number}: no string column '{text_column}'")
    if not text.strip():
        raise InputError(f"{file}:{number}: empty text")
    kind = row.get("kind") or "text"
    if kind not in ("text", "code", "lexical"):
        raise InputError(f"{file}:{number}: unknown kind {kind!r}")
    record = ConceptRecord(f"{base}:{row.get('id', number)}", text.strip(), kind, "file")
    for relation in row.get("relations") or []:
        try:
            record.relate(
                f"{base}:{relation['target']}",
                str(relation.get("type", "related")),
                float(relation.get("weight", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{file}:{number}: relations need {{target, type, weight}}") from exc
    return record
