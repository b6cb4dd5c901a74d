"""The MoE's expert products on the CPU as one kernel (metal/cpu/kernels.cpp, BLAS inside).

Rows come sorted by expert; each expert's run of rows is one matrix product with its
weights. The kernel reads the run lengths from the expert indices itself, so the graph
needs no host sync (the reference splits at the run lengths, which the host has to know:
one sync per layer, and a graph MLX cannot run ahead of). On GPUs `mx.gather_mm` runs
(ExpertsGLU), so this kernel is CPU-only.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from . import extension, kernel_function, kernel_status


def grouped_linear(rows: mx.array, weight: mx.array, experts: mx.array) -> mx.array:
    """rows (M, d_in) sorted by expert, weight (E, d_out, d_in), experts (M,) ascending
    -> (M, d_out): rows[m] @ weight[experts[m]].T."""
    if kernel_status("grouped_matmul").backend is None:
        return reference(rows, weight, experts)
    ids, ext = experts.astype(mx.float32), extension()
    function = kernel_function(
        lambda a, w: [ext.grouped_matmul(a, w, ids, True)],
        lambda inputs, outputs, cotangents: (
            ext.grouped_matmul(cotangents[0], inputs[1], ids, False),
            ext.grouped_weight_grad(cotangents[0], inputs[0], ids, inputs[1].shape[0]),
        ),
        lambda a, w: (reference(a, w, experts),),
    )
    return function(rows, weight)[0].astype(rows.dtype)


def reference(rows: mx.array, weight: mx.array, experts: mx.array) -> mx.array:
    """One product per expert's run, split where the host finds the runs end (it evaluates `experts`)."""
    count = weight.shape[0]
    runs = mx.split(rows, np.cumsum(np.bincount(np.array(experts), minlength=count))[:-1].tolist())
    # each expert's weights as a slice (w[e] would be a gather, and its gradient a scatter-add)
    return mx.concatenate([run @ w.squeeze(0).T for run, w in zip(runs, mx.split(weight, count))])
