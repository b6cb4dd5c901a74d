"""`meqg doctor`: backend, BLAS, devices, versions, a measured matmul, and the encoder `auto` picks."""

from __future__ import annotations

import json

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command()(doctor)


def doctor(
    brief: Annotated[bool, typer.Option(help="One line: backend, BLAS and matmul speed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Backend, BLAS in use, devices, versions, and a measured MLX matmul GFLOP/s."""
    from meqg_mlx.backend import doctor_report
    from meqg_mlx.encoder import choose_backend

    report = doctor_report()
    backend, why = choose_backend()
    report["encoder_backend"] = f"auto -> {backend}: {why}"
    if as_json:
        print(json.dumps(report, indent=2))
    elif brief:
        print(
            f"meqg doctor: mlx {report['versions']['mlx']} on {report['mlx_default_device']}, "
            f"BLAS: {report['blas']}, 1024^3 matmul {report['matmul_1024_gflops']} GFLOP/s, encoder: {backend}"
        )
    else:
        for key, value in report.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(value) or "-"
            print(f"{key:>20}: {value}")
