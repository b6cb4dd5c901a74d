"""`meqg store stats|search|show|add-vectors|project`: a concept store and its vector columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .options import JsonOption, StoreOption
from .progress import out

app = typer.Typer(help="Inspect and search a concept store.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="store")


def _open(store: Optional[str]):
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.paths import default_store

    return ConceptStore.open(store or default_store())


@app.command()
def stats(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Counts by kind, source and validation; relations by type; domains; index."""
    info = _open(store).stats()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key in (
        "path",
        "concepts",
        "relations",
        "relation_types",
        "dim",
        "origin_model",
        "table_version",
        "fragments",
        "bytes",
        "kinds",
        "sources",
        "validation",
        "index",
    ):
        value = info[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"{key:>14}: {value}")
    for name, column in info["vector_columns"].items():
        print(
            f"{'column ' + name:>14}: {column['dim']}-d from {column['origin_model']}"
            f"{'' if column['normalized'] else ' (unnormalised)'}, {column['filled']} filled"
        )
    for domain in info["domains"]:
        print(f"{'domain ' + str(domain['domain']):>14}: {domain['count']:>6}  {domain['label']}")


@app.command()
def search(
    text: Annotated[Optional[str], typer.Argument(help="Query text.")] = None,
    store: StoreOption = None,
    vector: Annotated[Optional[Path], typer.Option(help="Search by a vector file (.npy or JSON) instead.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=1000, help="Number of hits.")] = 10,
    raw: Annotated[bool, typer.Option("--raw", help="Plain nearest concept vectors, no grouping by subject.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Concepts nearest to TEXT by cosine. By default a matching docstring sentence or
    example answers with the function it documents (shown with `via`)."""
    from meqg_mlx.concepts.search import SubjectHit, search_subjects
    from meqg_mlx.encoder import default_embedder
    from meqg_mlx.encoder.base import check_vectors, load_vector_file
    from meqg_mlx.errors import InputError

    if (text is None) == (vector is None):
        raise InputError("give either a query TEXT or --vector FILE")
    concepts = _open(store)
    if vector is not None:
        query = check_vectors(load_vector_file(vector), concepts.dim, f"vector file {vector}")
        if len(query) != 1:
            raise InputError(f"vector file {vector} holds {len(query)} vectors; search takes one")
        text, vector = f"<vector from {vector}>", query[0]
    else:
        embedder = default_embedder()
        concepts.check_model(embedder.name, embedder.dim)
        vector = embedder.encode([text])[0]
    if raw:
        results = [SubjectHit(hit, hit.score, None) for hit in concepts.search_vector(vector, k)]
    else:
        results = search_subjects(concepts, vector, k)
    if as_json:
        print(
            json.dumps(
                [{**_plain(r.subject), "score": r.score, "via": _plain(r.via) if r.via else None} for r in results],
                indent=2,
            )
        )
    else:
        print_results(text, results)


def print_results(text: str, results) -> None:
    """One line per hit: id, score, domain, first line of text; a `via` line for grouped hits."""
    print(f"\n{text!r}")
    for result in results:
        hit = result.subject
        print(f"  {hit.concept_id:>7}  {result.score:.3f}  d{hit.domain:<3} {hit.text.splitlines()[0][:100]}")
        if result.via:
            print(f"  {'':>7}  {'':>5}  via {result.via.text.splitlines()[0][:96]!r}")


def _plain(hit) -> dict:
    return {key: value for key, value in hit.__dict__.items() if key != "relations"}


@app.command()
def show(
    concept_id: Annotated[int, typer.Argument(help="Concept id.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """One concept with its relations resolved to their targets."""
    from meqg_mlx.errors import StoreError

    concepts = _open(store)
    rows = concepts.get([concept_id])
    if not rows:
        raise StoreError(f"no concept with id {concept_id} in {concepts.uri}")
    row = rows[0]
    neighbors = concepts.neighbors(concept_id)
    if as_json:
        row = {
            **row,
            "created_at": str(row["created_at"]),
            "neighbors": [
                {"type": t, "weight": w, "concept_id": r["concept_id"], "text": r["text"]} for t, w, r in neighbors
            ],
        }
        print(json.dumps(row, indent=2))
        return
    for key in ("concept_id", "key", "kind", "source", "validation", "domain", "origin_model", "created_at"):
        print(f"{key:>12}: {row[key]}")
    print(f"{'text':>12}: {row['text']}")
    for relation_type, weight, target in neighbors:
        print(f"{relation_type:>12} -> {target['concept_id']:>7} ({weight:.2f}) {target['text'].splitlines()[0][:90]}")


@app.command()
def remove(
    concept_ids: Annotated[Optional[List[int]], typer.Argument(help="Concept ids to delete.")] = None,
    source: Annotated[
        Optional[str], typer.Option(help="Also delete every concept of this source (e.g. inversion: write-back).")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete concepts and the relations pointing at them, as one new store version."""
    from meqg_mlx.errors import InputError

    concepts = _open(store)
    ids = list(concept_ids or [])
    if source is not None:
        found = concepts.columns(["concept_id"], where="source = '" + source.replace("'", "''") + "'")
        if not found.num_rows:
            raise InputError(f"no concept of source {source!r} in {concepts.uri}")
        ids += found["concept_id"].to_pylist()
    if not ids:
        raise InputError("give the concept ids to remove, or --source SOURCE")
    result = concepts.remove(ids)
    if as_json:
        print(json.dumps(result))
        return
    out.print(
        f"{concepts.uri}: removed {result['removed']} concepts and {result['relations_dropped']} relations pointing at "
        f"them; {concepts.count()} concepts left (table version {result['version']})",
        soft_wrap=True,
    )


@app.command("add-vectors")
def add_vectors(
    column: Annotated[str, typer.Option("--column", help="Name of the vector column to fill.")],
    store: StoreOption = None,
    model: Annotated[
        Optional[Path], typer.Option(help="Local sentence-transformers directory [default: bundled all-MiniLM-L6-v2].")
    ] = None,
    backend: Annotated[str, typer.Option(help="auto | mlx | torch.")] = "auto",
    output: Annotated[str, typer.Option(help="sentence | mean (unnormalised, for GTR inverters).")] = "sentence",
    max_tokens: Annotated[int, typer.Option(min=1, help="Truncate texts to this many tokens.")] = 128,
) -> None:
    """Embed every concept with a second model into its own vector column (only those it lacks)."""
    from meqg_mlx.concepts.columns import fill_vector_column
    from meqg_mlx.encoder import load_embedder

    from .progress import progress_bar

    concepts = _open(store)
    embedder = load_embedder(backend, str(model or ""), "float32", max_tokens, output)
    with progress_bar() as update:
        added = fill_vector_column(concepts, column, embedder, progress=update)
    info = concepts.vector_columns.declared()[column]
    print(
        f"{column}: +{added} vectors ({info['dim']}-d from {info['origin_model']}"
        f"{'' if info['normalized'] else ', unnormalised'}), {concepts.count()} concepts"
    )


@app.command()
def project(
    source: Annotated[str, typer.Option("--source", help="Vector column to map from (`vector` is the main one).")],
    target: Annotated[str, typer.Option("--target", help="Vector column to map to.")],
    store: StoreOption = None,
    held_out_every: Annotated[int, typer.Option(min=2, help="Concepts with id % N == 0 measure the fit.")] = 10,
    ridge: Annotated[
        float,
        typer.Option(
            help="Ridge lambda as a fraction of the mean eigenvalue of the Gram matrix (0: plain least squares)."
        ),
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Fit a linear map between two vector columns by least squares (or ridge); save it and report its fit."""
    from dataclasses import asdict

    from meqg_mlx.concepts.columns import LinearProjection

    concepts = _open(store)
    projection = LinearProjection.fit(concepts, source, target, held_out_every, ridge)
    path = projection.save(concepts)
    report = asdict(projection.report)
    if as_json:
        print(json.dumps({"path": str(path), **report}, indent=2))
        return
    print(
        f"{source} ({projection.models[0]}) -> {target} ({projection.models[1]}): {path}\n"
        f"  {report['train_rows']} training / {report['held_out_rows']} held-out concepts\n"
        f"  relative error ||XW-Y||/||Y||: train {report['train_relative_error']:.4f}, "
        f"held-out {report['held_out_relative_error']:.4f}\n"
        f"  held-out mean cosine(projected, true): {report['held_out_mean_cosine']:.4f}\n"
        f"  {'plain least squares' if not report['ridge'] else 'ridge lambda ' + format(report['ridge'], '.4g')}"
    )
