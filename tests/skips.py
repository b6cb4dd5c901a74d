"""Skips that mean something.

Tests for another platform carry a marker (`macos`, `linux`, `gpu`) and are deselected
where that platform is absent, so they do not pile up as skips. Any other skip must give
a reason listed in ALLOWED (or in MEQG_ALLOWED_SKIPS, comma-separated parts of reasons):
otherwise the run fails, so a host that lost OpenBLAS, bubblewrap, WordNet or chromium
says so instead of showing a few more skips that look normal.
"""

from __future__ import annotations

import os
import sys

import pytest

ALLOWED = (
    "Metal kernels need an Apple GPU",  # a Mac without Metal
    "Ray Client is installed here",  # the refusal it tests cannot happen
)


def platform_present(marker: str) -> bool:
    if marker == "macos":
        return sys.platform == "darwin"
    if marker == "linux":
        return sys.platform.startswith("linux")
    import meqg_mlx  # noqa: F401  (BLAS set-up before mlx.core)
    import mlx.core as mx

    return mx.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    present = {}
    kept, deselected = [], []
    for item in items:
        needs = {m.name for m in item.iter_markers()} & {"macos", "linux", "gpu"}
        for marker in needs - present.keys():
            present[marker] = platform_present(marker)
        (kept if all(present[m] for m in needs) else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def allowed() -> tuple[str, ...]:
    extra = os.environ.get("MEQG_ALLOWED_SKIPS", "")
    return ALLOWED + tuple(part.strip() for part in extra.split(",") if part.strip())


def unexpected_skips(terminalreporter) -> list[str]:
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(part in reason for part in allowed()):
            reasons.append(f"{report.nodeid}: {reason}")
    return reasons


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reasons = unexpected_skips(terminalreporter)
    if reasons:
        terminalreporter.section("skips not on the allowlist (tests/skips.py)", red=True)
        for line in reasons:
            terminalreporter.line(line)
        terminalreporter.line("install what they name, or accept them with MEQG_ALLOWED_SKIPS='part of a reason,...'")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == pytest.ExitCode.OK and unexpected_skips(reporter):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
