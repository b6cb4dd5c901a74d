"""Arrow schemas of the concept store's LanceDB tables (docs/design.md, Data flow)."""

from __future__ import annotations

import pyarrow as pa

CONCEPTS_TABLE = "concepts"
DOMAINS_TABLE = "domains"
KINDS = ("text", "code", "lexical")
VALIDATIONS = ("none", "passed", "failed", "error", "timeout")

RELATION_TYPE = pa.struct(
    [
        ("target_id", pa.int64()),
        ("type", pa.string()),
        ("weight", pa.float32()),
    ]
)


def concepts_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("concept_id", pa.int64(), nullable=False),
            pa.field("key", pa.string()),
            pa.field("text", pa.string(), nullable=False),
            pa.field("kind", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("origin_model", pa.string()),
            pa.field("dim", pa.int32()),
            pa.field("domain", pa.int32()),
            pa.field("domain_scores", pa.list_(pa.float32())),
            pa.field("relations", pa.list_(RELATION_TYPE)),
            pa.field("source", pa.string()),
            pa.field("validation", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def domains_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("domain", pa.int32(), nullable=False),
            pa.field("label", pa.string()),
            pa.field("centroid", pa.list_(pa.float32(), dim)),
            pa.field("variance", pa.float32()),
            pa.field("count", pa.int64()),
            pa.field("representative_ids", pa.list_(pa.int64())),
        ]
    )


def vectors_column(vectors, dim: int) -> pa.FixedSizeListArray:
    """(n, dim) float32 numpy -> Arrow fixed-size list column without copying row by row."""
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)


def vectors_from_column(column, dim: int):
    """Arrow fixed-size list column -> (n, dim) float32 numpy."""
    import numpy as np

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32(), dim))
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
