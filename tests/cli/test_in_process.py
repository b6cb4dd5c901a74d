"""The CLI in process with typer's CliRunner: fast checks beside the subprocess tests (which run
`meqg` as a user does)."""

import pytest
from typer.testing import CliRunner

from meqg_cli.main import app

runner = CliRunner()
COMMANDS = (
    "doctor",
    "data",
    "store",
    "encode",
    "train",
    "monitor",
    "run",
    "decode",
    "inverter",
    "serve",
    "demo",
    "app",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_library_errors_reach_the_entry_point_as_meqg_errors(tmp_path):
    """The console script turns these into `error: ...`, exit 2 (tests/cli/test_cli.py checks that)."""
    from meqg_mlx.errors import MeqgError

    missing = runner.invoke(app, ["monitor", str(tmp_path / "nope")])
    assert isinstance(missing.exception, MeqgError) and "no run directory" in str(missing.exception)
    replay = runner.invoke(app, ["monitor", str(tmp_path), "--replay", "-1"])
    assert isinstance(replay.exception, MeqgError) and "--replay" in str(replay.exception)
    empty = runner.invoke(app, ["run", "hello", "--run", str(tmp_path)])
    assert isinstance(empty.exception, MeqgError) and "run.json missing" in str(empty.exception)


def test_encode_prints_vectors_of_the_model_it_names():
    import json

    result = runner.invoke(app, ["encode", "Sort a list.", "--backend", "mlx"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "all-MiniLM-L6-v2" and data["dim"] == 384 and len(data["vectors"][0]) == 384
