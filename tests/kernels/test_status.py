from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx

from meqg_mlx.kernels import KERNELS, device_backend, extension, extension_problem, kernel_status, status


def test_the_extension_was_built_and_runs():
    """`make test` builds the extension first: no silent fallback to the MLX-ops paths."""
    assert extension() is not None, extension_problem()
    assert extension_problem() is None


def test_every_kernel_runs_on_the_cpu_through_the_extension(monkeypatch):
    monkeypatch.delenv("MEQG_KERNELS", raising=False)
    previous = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        assert device_backend() == "cpu"
        assert [s.name for s in status()] == list(KERNELS)
        assert all(s.backend == "cpu" and "C++ extension" in s.reason for s in status())
    finally:
        mx.set_default_device(previous)


def test_meqg_kernels_0_turns_every_kernel_off(monkeypatch):
    monkeypatch.setenv("MEQG_KERNELS", "0")
    assert all(s.backend is None and "MEQG_KERNELS=0" in s.reason for s in status())
    assert kernel_status("ssd_scan").backend is None


def test_doctor_lists_the_kernels_and_why():
    for setting, expected in (("1", f"ssd_scan {device_backend()} ("), ("0", "ssd_scan off (MEQG_KERNELS=0")):
        done = subprocess.run(
            [sys.executable, "-m", "meqg_cli.main", "doctor"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MEQG_KERNELS": setting},
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout
