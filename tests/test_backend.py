import subprocess
import sys
from pathlib import Path

import pytest

from meqg_mlx import backend


def needs_system_openblas(test):
    """Linux only; on Linux a missing OpenBLAS is a skip that fails the run (tests/skips.py)."""
    no_openblas = backend.system_openblas() is None
    reason = "needs a system OpenBLAS (Debian: libopenblas0-pthread)"
    return pytest.mark.linux(pytest.mark.skipif(no_openblas, reason=reason)(test))


def test_doctor_reports_backend_blas_and_a_measured_matmul():
    report = backend.doctor_report()
    assert report["mlx_default_device"]
    assert report["versions"]["mlx"] != "not installed"
    assert report["matmul_1024_gflops"] > 0


@needs_system_openblas
def test_system_openblas_is_used_on_linux():
    """Which BLAS is loaded, not how fast it runs here (bench/matmul.py measures that against numpy)."""
    assert backend.blas_description().startswith("system OpenBLAS")
    assert any("openblas" in lib for lib in backend.loaded_blas_libraries())


@needs_system_openblas
@pytest.mark.parametrize("first", ["mlx.core", "meqg_mlx"])
def test_importing_mlx_first_warns_that_blas_is_slow(first):
    """MLX binds its BLAS when it loads: imported before meqg_mlx it keeps the reference one."""
    code = f"import {first}, mlx.core, meqg_mlx; print(meqg_mlx.backend.blas_description())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warned = "import meqg_mlx first" in done.stderr
    assert warned == (first == "mlx.core"), done.stderr
    assert done.stdout.startswith("mlx.core was imported before") == (first == "mlx.core")


@needs_system_openblas
@pytest.mark.parametrize("module", ["meqg_cli.main", "meqg_converters.train", "meqg_converters.coreml"])
def test_entry_points_set_up_blas_before_mlx_loads(module):
    """torchrun workers start in meqg_converters.train, which imports mlx.core before meqg_mlx."""
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_missing_override_path_means_no_openblas(monkeypatch, tmp_path):
    monkeypatch.setenv("MEQG_OPENBLAS", str(tmp_path / "missing.so"))
    assert backend.system_openblas() is None
    monkeypatch.setenv("MEQG_OPENBLAS", str(Path(__file__)))
    assert backend.system_openblas() == str(Path(__file__))


@pytest.mark.linux  # glibc malloc tuning
def test_freed_mlx_buffers_are_kept_for_reuse():
    """meqg_mlx's import asks glibc to keep freed buffers (MLX CPU page-faulted every op output in again)."""
    assert backend.doctor_report(measure=False)["malloc"] == "glibc: buffers <= 32 MiB reused from the heap"
