"""meqg's kernel sources: bodies written once (`ssd_scan.h`, `conv.h`, `rvq.h`, `activations.h`,
`softmax.h`, `gate.h`, `norm.h`, `mix.h`), a prelude per dialect (`prelude_cpu.h`, `prelude_metal.h`,
`prelude_cuda.h`), and
the CPU extension built from `cpu/` by `make kernels`. `meqg_mlx.kernels` reads and
dispatches them."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
BUILD_FAILED = HERE / "_meqg_kernels.failed"  # written by `make kernels` when the extension did not build


def source(name: str) -> str:
    """The text of a kernel source in this folder (`ssd_scan.h`, `prelude_metal.h`, ...)."""
    return (HERE / name).read_text()
