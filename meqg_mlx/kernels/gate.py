"""The Null-Stability Gate's reductions over a proposed step, in one pass (body: metal/gate.h).

For parameter arrays before a step, the proposed ones and their gradients, one (N, 4)
array: ||s||^2, ||before||^2, grad . s (s = proposed - before) and the count of
non-finite proposed values, per array. `gate_reductions_reference` is the MLX-ops
version (five ops per array), which runs on GPUs, with MEQG_KERNELS=0 or without the
extension, and is the oracle of the tests. Nothing here is differentiated.
"""

from __future__ import annotations

import mlx.core as mx

from . import extension, kernel_status


def gate_reductions(before: list[mx.array], proposed: list[mx.array], grads: list[mx.array]) -> mx.array:
    if kernel_status("gate_reductions").backend == "cpu":
        return extension().gate_reductions(before, proposed, grads)
    return gate_reductions_reference(before, proposed, grads)


def gate_reductions_reference(before: list[mx.array], proposed: list[mx.array], grads: list[mx.array]) -> mx.array:
    rows = []
    for b, p, g in zip(before, proposed, grads, strict=True):
        s = p - b
        rows.append(mx.stack([(s * s).sum(), (b * b).sum(), (g * s).sum(), (~mx.isfinite(p)).sum().astype(b.dtype)]))
    return mx.stack(rows).astype(mx.float32)
