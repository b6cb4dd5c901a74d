"""`meqg` entry point: assembles the typer app from the command files and turns library errors
into one-line exits."""

from __future__ import annotations

import sys

import typer

# typer 0.29 vendors click; its exceptions are what a standalone_mode=False call raises
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from meqg_mlx.errors import MeqgError

from . import (
    app_commands,
    coreml_commands,
    data_commands,
    decode_commands,
    demo_commands,
    doctor_commands,
    encode_commands,
    eval_commands,
    episode_commands,
    export_commands,
    inverter_commands,
    monitor_commands,
    predict_commands,
    runs_commands,
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
    runs_commands,
    monitor_commands,
    episode_commands,
    predict_commands,
    decode_commands,
    eval_commands,
    inverter_commands,
    export_commands,
    coreml_commands,
    serve_commands,
    demo_commands,
    app_commands,
):
    commands.register(app)


def run() -> None:
    """Console-script entry: one line on stderr and exit 2 for any meqg error or bad argument."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        print(exc.format_message(), file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:  # bad arguments (UsageError) among them: point at the command's help
        ctx = exc.ctx if isinstance(exc, UsageError) else None
        where = f" (see: {ctx.command_path} --help)" if ctx else ""
        print(f"error: {' '.join(exc.format_message().split())}{where}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except MeqgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # the machine refused (permissions, a full disk): what and where, in one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
