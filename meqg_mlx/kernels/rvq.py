"""Residual vector quantisation's nearest-code search (body: metal/rvq.h).

The scores r . c stay a matrix product (BLAS, or the GPU's); the kernel reads them once per
row for the argmin of |c|^2 - 2 r . c, where MLX ops pass over the (rows, codes) matrix three
times. Codes are integers: there is no gradient to carry. Below KERNEL_MIN_ROWS rows (a decoding
step's candidate) the MLX ops run: at one row the kernel's extra graph nodes cost ~20 us
more than the passes it saves (bench/kernels.py).
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx

from ..errors import InputError
from . import device_backend, extension, gpu_kernel, kernel_status, launch


KERNEL_MIN_ROWS = 64


def nearest_code(residual: mx.array, book: mx.array) -> mx.array:
    """residual (N, d), book (C, d) -> (N,) uint32: each row's nearest code, ties to the lower index."""
    if residual.ndim != 2 or book.ndim != 2 or residual.shape[1] != book.shape[1] or book.shape[0] == 0:
        raise InputError(
            f"nearest_code: residual (N, d) and book (C >= 1, d) expected, got {residual.shape}, {book.shape}"
        )
    if kernel_status("nearest_code").backend is None or residual.shape[0] < KERNEL_MIN_ROWS:
        return reference(residual, book)
    norms, scores = mx.square(book).sum(-1), residual @ book.T
    backend = device_backend()
    if backend == "cpu":
        codes = extension().nearest_code(scores, norms)
    else:
        dims = {"C": book.shape[0], "ROWS": residual.shape[0]}
        codes = launch(_gpu_kernel(backend), [scores, norms], dims, [(residual.shape[0],)])[0]
    return codes.astype(mx.uint32)


def reference(residual: mx.array, book: mx.array) -> mx.array:
    return mx.argmin(mx.square(book).sum(-1) - 2 * residual @ book.T, axis=-1)


@cache
def _gpu_kernel(backend: str):
    return gpu_kernel(
        "meqg_nearest_code",
        ["scores", "norms"],
        ["code"],
        ["rvq.h"],
        "meqg_nearest_code_row(row, scores, norms, code, C)",
        atomic=False,
    )
