"""Pick the fastest BLAS for MLX's Linux CPU backend and report what is in use.

The Linux `mlx-cpu` wheel bundles the reference BLAS (~3 GFLOP/s on a 1024^3
matmul). Loading a system OpenBLAS into the global symbol scope *before*
`mlx.core` resolves its `cblas_*` symbols there instead (~40x faster). torch is
imported first when it is installed: its own `sgemm_` (MKL) then wins for torch,
while MLX, which calls `cblas_sgemm`, gets OpenBLAS.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.util
import os
import platform
import sys
import time
import warnings
from pathlib import Path

OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

_state: dict[str, str | None] = {"openblas": None, "reason": None, "malloc": None}

# glibc mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 512 * 2**20


def system_openblas() -> str | None:
    """Path of a system OpenBLAS (override with MEQG_OPENBLAS), or None."""
    override = os.environ.get("MEQG_OPENBLAS")
    if override:
        return override if Path(override).exists() else None
    return next((p for p in OPENBLAS_CANDIDATES if Path(p).exists()), None)


def configure_blas() -> None:
    """Load a system OpenBLAS for MLX on Linux; idempotent, a no-op elsewhere.

    Must run before the first `import mlx.core`. Set MEQG_SYSTEM_BLAS=0 to opt out.
    """
    if _state["reason"] is not None:
        return
    if platform.system() != "Linux":
        _state["reason"] = "not Linux: MLX uses Accelerate/Metal"
        return
    if os.environ.get("MEQG_SYSTEM_BLAS", "1") == "0":
        _state["reason"] = "disabled by MEQG_SYSTEM_BLAS=0"
        return
    if "mlx.core" in sys.modules:
        _state["reason"] = "mlx.core was imported before meqg could configure BLAS"
        if system_openblas() is not None:
            warnings.warn(
                "mlx.core was imported before meqg_mlx, so MLX keeps its bundled reference BLAS "
                "(matmuls ~40x slower here); import meqg_mlx first",
                RuntimeWarning,
                stacklevel=2,
            )
        return
    path = system_openblas()
    if path is None:
        _state["reason"] = (
            "no system OpenBLAS found: MLX uses its bundled reference BLAS "
            "(slow); install Debian's libopenblas0-pthread"
        )
        return
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (binds torch to its own BLAS first; see module docstring)
    try:
        ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
    except OSError as exc:
        _state["reason"] = f"could not load {path}: {exc}"
        return
    _state["openblas"] = path
    _state["reason"] = f"system OpenBLAS {path}"


def keep_freed_buffers() -> None:
    """Let glibc reuse freed MLX CPU buffers instead of returning them to the OS.

    MLX's CPU backend mallocs a fresh buffer per op output; above glibc's mmap
    threshold each one is mmapped, page-faulted in and unmapped again. Measured on a
    2-core VM: a (2560, 1536) GELU 65 ms -> 27 ms, 11k page faults -> 0 per call.
    Buffers up to 32 MiB come from the heap, and up to 512 MiB of freed heap is kept.
    Set MEQG_MALLOC_TUNING=0 to opt out; a no-op where glibc is not the C library.
    """
    if _state["malloc"] is not None:
        return
    if platform.system() != "Linux" or os.environ.get("MEQG_MALLOC_TUNING", "1") == "0":
        _state["malloc"] = "default (tuning off or not Linux)"
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and libc.mallopt(
            M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES
        )
    except (OSError, AttributeError):
        ok = False
    _state["malloc"] = "glibc: buffers <= 32 MiB reused from the heap" if ok else "default (glibc mallopt unavailable)"


class _BeforeMLX(importlib.abc.MetaPathFinder):
    """Runs the backend setup the moment anything first imports `mlx` (then steps aside)."""

    def find_spec(self, name, path=None, target=None):
        if name == "mlx" or name.startswith("mlx."):
            sys.meta_path.remove(self)
            configure_blas()
            keep_freed_buffers()
        return None


def configure_when_mlx_loads() -> None:
    """Set up BLAS and malloc for MLX when it is first imported, not before.

    So `import meqg_mlx.errors` (or paths, runs, telemetry) costs nothing: no torch, no
    OpenBLAS, no malloc tuning, until some code path actually needs MLX.
    """
    if "mlx.core" in sys.modules:
        configure_blas()  # too late to swap BLAS; records why
        keep_freed_buffers()
    elif not any(isinstance(finder, _BeforeMLX) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BeforeMLX())


def blas_description() -> str:
    """What BLAS MLX uses in this process, in words."""
    configure_blas()
    return _state["reason"] or "unknown"


def loaded_blas_libraries() -> list[str]:
    """BLAS shared objects mapped into this process (Linux only)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    libs = {line.split()[-1] for line in maps.read_text().splitlines() if "blas" in line.lower() and "/" in line}
    return sorted(libs)


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 n^3 matmul throughput of MLX on its default device."""
    configure_blas()
    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a @ b)
    start = time.perf_counter()
    for _ in range(repeats):
        mx.eval(a @ b)
    seconds = (time.perf_counter() - start) / repeats
    return 2 * n**3 / seconds / 1e9


def doctor_report(measure: bool = True) -> dict[str, object]:
    """Backend, BLAS, devices and versions, plus a measured matmul figure."""
    configure_blas()
    import mlx.core as mx

    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("mlx", "numpy", "lancedb", "pyarrow", "faiss-cpu", "boto3", "ray", "torch", "sentence-transformers"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    report: dict[str, object] = {
        "platform": f"{platform.system()} {platform.machine()}",
        "mlx_default_device": str(mx.default_device()),
        "metal_available": bool(getattr(mx, "metal", None) and mx.metal.is_available()),
        "cuda_available": bool(getattr(mx, "cuda", None) and mx.cuda.is_available()),
        "blas": blas_description(),
        "blas_libraries": loaded_blas_libraries(),
        "malloc": _state["malloc"] or "default",
        "versions": versions,
    }
    if measure:
        report["matmul_1024_gflops"] = round(matmul_gflops(), 1)
    return report
