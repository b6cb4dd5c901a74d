"""The LanceDB concept store: schema, ingest, sources, domains, relations, search."""

from .build import BuildSummary, build_store
from .store import ConceptStore, Hit, NewConcept

__all__ = ["BuildSummary", "ConceptStore", "Hit", "NewConcept", "build_store"]
