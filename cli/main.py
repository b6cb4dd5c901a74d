"""`meqg` entry point: assembles the typer app from the command files and turns library errors
into one-line exits."""

from __future__ import annotations

import sys

import typer

from meqg_mlx.errors import MeqgError

from . import (
    data_commands,
    decode_commands,
    demo_commands,
    doctor_commands,
    encode_commands,
    episode_commands,
    inverter_commands,
    monitor_commands,
    serve_commands,
    store_commands,
    train_commands,
)

app = typer.Typer(
    help="meqg: a local workbench for concept-space reasoning models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for commands in (
    doctor_commands,
    data_commands,
    store_commands,
    encode_commands,
    train_commands,
    monitor_commands,
    episode_commands,
    decode_commands,
    inverter_commands,
    serve_commands,
    demo_commands,
):
    commands.register(app)


def run() -> None:
    """Console-script entry: one line on stderr and exit 2 for any meqg error."""
    try:
        app()
    except MeqgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
