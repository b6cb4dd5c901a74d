"""tests/skips.py: a skip whose reason is not on the allowlist fails the run; another platform's tests
are deselected, not skipped. Checked on a throwaway suite in a child pytest."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OTHER_PLATFORM = "linux" if sys.platform == "darwin" else "macos"
SUITE = f"""
import pytest

def test_runs():
    pass

@pytest.mark.skip(reason="bubblewrap is not installed")
def test_lost_its_sandbox():
    pass

@pytest.mark.skip(reason="Ray Client is installed here: the address would be tried")
def test_allowed():
    pass

@pytest.mark.{OTHER_PLATFORM}
def test_for_another_platform():
    raise AssertionError("deselected, never run")
"""


def child_pytest(suite: Path, allowed: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEQG_ALLOWED_SKIPS": allowed}
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(suite)]
    return subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True, timeout=120)


def test_an_unlisted_skip_fails_the_run_and_another_platforms_tests_are_deselected(tmp_path):
    (tmp_path / "conftest.py").write_text(
        "from tests.skips import pytest_collection_modifyitems, pytest_sessionfinish, pytest_terminal_summary\n"
    )
    (tmp_path / "test_suite.py").write_text(SUITE)
    strict = child_pytest(tmp_path, "")
    assert strict.returncode == 1, strict.stdout
    assert "skips not on the allowlist" in strict.stdout and "bubblewrap is not installed" in strict.stdout
    assert "1 passed, 2 skipped, 1 deselected" in strict.stdout
    listed = strict.stdout.split("skips not on the allowlist")[1].split("short test summary")[0]
    assert "Ray Client" not in listed
    accepted = child_pytest(tmp_path, "bubblewrap")
    assert accepted.returncode == 0, accepted.stdout
    assert "skips not on the allowlist" not in accepted.stdout
