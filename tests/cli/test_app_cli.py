"""`meqg app`'s one-line errors: an unknown screen, and a web server off loopback without a
(long enough) token, refused before anything listens."""

import pytest
from typer.testing import CliRunner

from meqg_cli.main import app
from meqg_mlx.errors import MeqgError

from ..conftest import meqg

runner = CliRunner()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--screen", "nope"], "unknown screen 'nope' (known: store, runs, episode, eval)"),
        (["--web", "--host", "0.0.0.0"], "listening on 0.0.0.0 (not loopback) needs --token"),
        (["--web", "--token", "short"], "--token must have at least 16 characters"),
    ],
)
def test_bad_arguments_are_one_line_errors(arguments, message):
    result = runner.invoke(app, ["app", *arguments])
    assert isinstance(result.exception, MeqgError) and message in str(result.exception)


def test_the_console_script_prints_the_error_in_one_line():
    result = meqg("app", "--screen", "nope")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["error: unknown screen 'nope' (known: store, runs, episode, eval)"]
