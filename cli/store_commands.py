"""`meqg store stats|search|show`: read a concept store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Inspect and search a concept store.", no_args_is_help=True)

StoreOption = typer.Option(None, "--store", help="Concept store directory [default: $MEQG_HOME/stores/stdlib]")
JsonOption = typer.Option(False, "--json", help="Machine-readable output.")


def _open(store: Optional[Path]):
    from meqg_mlx.concepts import ConceptStore
    from meqg_mlx.paths import default_store

    return ConceptStore.open(store or default_store())


@app.command()
def stats(store: Optional[Path] = StoreOption, as_json: bool = JsonOption) -> None:
    """Counts by kind, source and validation; relations; domains; index."""
    info = _open(store).stats()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key in ("path", "concepts", "relations", "dim", "origin_model", "table_version", "fragments", "bytes",
                "kinds", "sources", "validation", "index"):
        value = info[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"{key:>14}: {value}")
    for domain in info["domains"]:
        print(f"{'domain ' + str(domain['domain']):>14}: {domain['count']:>6}  {domain['label']}")


@app.command()
def search(text: Optional[str] = typer.Argument(None, help="Query text."), store: Optional[Path] = StoreOption,
           vector: Optional[Path] = typer.Option(None, help="Search by a vector file (.npy or JSON) instead."),
           k: int = typer.Option(10, "-k", "--k", min=1, max=1000, help="Number of hits."),
           raw: bool = typer.Option(False, "--raw", help="Plain nearest concept vectors, no grouping by subject."),
           as_json: bool = JsonOption) -> None:
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
        print(json.dumps([{**_plain(r.subject), "score": r.score, "via": _plain(r.via) if r.via else None}
                          for r in results], indent=2))
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
def show(concept_id: int = typer.Argument(..., help="Concept id."), store: Optional[Path] = StoreOption,
         as_json: bool = JsonOption) -> None:
    """One concept with its relations resolved to their targets."""
    from meqg_mlx.errors import StoreError

    concepts = _open(store)
    rows = concepts.get([concept_id])
    if not rows:
        raise StoreError(f"no concept with id {concept_id} in {concepts.path}")
    row = rows[0]
    neighbors = concepts.neighbors(concept_id)
    if as_json:
        row = {**row, "created_at": str(row["created_at"]),
               "neighbors": [{"type": t, "weight": w, "concept_id": r["concept_id"], "text": r["text"]}
                             for t, w, r in neighbors]}
        print(json.dumps(row, indent=2))
        return
    for key in ("concept_id", "key", "kind", "source", "validation", "domain", "origin_model", "created_at"):
        print(f"{key:>12}: {row[key]}")
    print(f"{'text':>12}: {row['text']}")
    for relation_type, weight, target in neighbors:
        print(f"{relation_type:>12} -> {target['concept_id']:>7} ({weight:.2f}) {target['text'].splitlines()[0][:90]}")
