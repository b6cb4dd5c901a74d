"""`meqg doctor`: backend, BLAS, devices, versions, a measured matmul, and the encoder `auto` picks."""

from __future__ import annotations

import json

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(doctor)


def doctor(
    brief: Annotated[bool, typer.Option(help="One line: backend, BLAS, matmul speed, sandbox.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Backend, BLAS in use, devices, versions, a measured MLX matmul GFLOP/s, meqg's kernels in use (and why
    not), and the python sandbox in force."""
    from meqg_mlx.backend import doctor_report
    from meqg_mlx.encoder import choose_backend
    from meqg_mlx.kernels import status as kernel_status
    from meqg_mlx.sandbox import isolation

    report = doctor_report()
    backend, why = choose_backend()
    report["encoder_backend"] = f"auto -> {backend}: {why}"
    kernels = kernel_status()
    report["kernels"] = {k.name: f"{k.backend or 'off'} ({k.reason})" for k in kernels}
    sandbox = isolation()
    report["python_sandbox"] = str(sandbox) if sandbox.safe else f"none ({sandbox.detail}): the python tool refuses"
    if as_json:
        print(json.dumps(report, indent=2))
    elif brief:
        print(
            f"meqg doctor: mlx {report['versions']['mlx']} on {report['mlx_default_device']}, "
            f"BLAS: {report['blas']}, 1024^3 matmul {report['matmul_1024_gflops']} GFLOP/s, encoder: {backend}, "
            f"kernels: {sum(k.backend is not None for k in kernels)}/{len(kernels)} on, python sandbox: {sandbox.kind}"
        )
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key:>20}: {value}")
