"""The monitor driven by Textual's pilot on telemetry recorded from a real run, live and replayed."""

import json
import threading
import time


from meqg_tui.monitor import HelpScreen, MonitorApp
from meqg_tui.widgets import EventsLog, ExpertsPanel, GatePanel, RunHeader

from .conftest import shown, wait_for

SIZE = (160, 48)


async def test_recorded_run_fills_every_panel(recorded_run):
    app = MonitorApp(recorded_run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 60/60" in shown(app.query_one(RunHeader)))
        header = shown(app.query_one(RunHeader))
        assert "run 8a8e" not in header and f"run {app.monitor.state.run_id}" in header
        assert "finished" in header and "step 60/60" in header and "steps/s" in header
        gate = shown(app.query_one("#gate-summary"))
        assert f"rejected {app.monitor.state.rejected}" in gate and app.monitor.state.rejected > 0
        rejected = [d for d in app.monitor.state.decisions if not d.accepted]
        decisions = shown(app.query_one("#gate-decisions"))
        assert rejected and rejected[-1].failed and "reject" in decisions and rejected[-1].failed in decisions
        experts = shown(app.query_one("#experts-body"))
        assert "expert 3" in experts and "router entropy" in experts and "RVQ level 1" in experts
        log = "\n".join(strip.text for strip in app.query_one(EventsLog).lines)
        for kind in ("regime", "recovery", "checkpoint", "eval", "run"):
            assert kind in log
        assert "finished at step 60" in log


async def test_keys_pause_follow_panels_screenshot_help_quit(recorded_run):
    app = MonitorApp(recorded_run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.monitor.state.ended)
        await pilot.press("p")
        assert app.monitor.paused and "PAUSED" in shown(app.query_one(RunHeader))
        await pilot.press("p")
        assert not app.monitor.paused
        await pilot.press("f")
        assert not app.monitor.follow and not app.query_one(EventsLog).auto_scroll
        assert "whole run" in shown(app.query_one(RunHeader))
        focused = []
        for _ in range(4):
            await pilot.press("tab")
            focused.append(app.focused.id)
        assert {"plots", "gate", "experts", "events"} == set(focused)
        await pilot.press("s")
        await wait_for(pilot, lambda: list(recorded_run.glob("monitor-step0000060-*.svg")))
        svg = next(recorded_run.glob("*.svg")).read_text()
        assert svg.startswith("<svg") and "meqg" in svg
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_live_view_follows_a_writer(recorded_records, tmp_path):
    path = tmp_path / "telemetry.jsonl"
    path.touch()
    app = MonitorApp(tmp_path, tick=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "waiting" in shown(app.query_one(RunHeader)))
        now = time.time()
        with open(path, "a") as f:
            for record in recorded_records[:25]:
                f.write(json.dumps(record | {"ts": now}) + "\n")
        await wait_for(pilot, lambda: app.monitor.state.records == 25)
        step = app.monitor.state.step
        await wait_for(
            pilot,
            lambda: (
                "running" in shown(app.query_one(RunHeader)) and f"step {step}/60" in shown(app.query_one(RunHeader))
            ),
        )
        with open(path, "a") as f:
            for record in recorded_records[25:]:
                f.write(json.dumps(record | {"ts": time.time()}) + "\n")
        await wait_for(pilot, lambda: app.monitor.state.ended == "finished")
        await wait_for(pilot, lambda: "step 60/60" in shown(app.query_one(RunHeader)))
        assert f"rejected {app.monitor.state.rejected}" in shown(app.query_one("#gate-summary"))


async def test_takes_in_a_fast_writer_in_order(recorded_records, tmp_path):
    """A writer at up to 50 events/s: every record arrives, in order (the lag is measured by bench/monitor.py)."""
    path = tmp_path / "telemetry.jsonl"
    path.touch()
    steps = [r for r in recorded_records if r["event"] == "step"]
    app = MonitorApp(tmp_path, tick=0.1)
    seen = []
    apply = app.monitor.state.apply
    app.monitor.state.apply = lambda record: (seen.append(record["step"]), apply(record))

    def writer():
        with open(path, "a") as f:
            for i in range(200):
                f.write(json.dumps(steps[i % len(steps)] | {"step": i + 1, "ts": time.time()}) + "\n")
                f.flush()
                time.sleep(0.02)

    async with app.run_test(size=SIZE) as pilot:
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            await wait_for(pilot, lambda: app.monitor.state.records == 200, timeout=60)
        finally:
            thread.join()
        await wait_for(pilot, lambda: "step 200" in shown(app.query_one(RunHeader)))
    assert seen == list(range(1, 201))


async def test_malformed_and_truncated_lines_are_counted_and_shown(recorded_records, tmp_path):
    lines = [json.dumps(r) for r in recorded_records]
    lines.insert(10, "this is not json")
    lines.insert(20, '{"step": 3, "event": "st')  # a line cut short mid-run
    (tmp_path / "telemetry.jsonl").write_text("\n".join(lines) + "\n" + '{"event": "step", "step"')
    app = MonitorApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.monitor.state.ended)
        await wait_for(pilot, lambda: "malformed lines 2" in shown(app.query_one(RunHeader)))
        assert "truncated last line" in shown(app.query_one(RunHeader))
        assert app.monitor.state.step == 60


async def test_older_schema_shows_n_a(recorded_records, tmp_path):
    old = [{k: v for k, v in r.items() if k not in ("experts", "kappa", "gate")} for r in recorded_records]
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    app = MonitorApp(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.monitor.state.ended)
        await wait_for(pilot, lambda: "expert load n/a" in shown(app.query_one("#experts-body")))
        assert "unchecked 60" in shown(app.query_one("#gate-summary"))
        assert app.query_one(GatePanel) and app.query_one(ExpertsPanel)


async def test_replay_plays_the_run_back_at_speed(recorded_run, recorded_records):
    duration = recorded_records[-1]["ts"] - recorded_records[0]["ts"]
    speed = duration / 2.0  # the whole run in about 2 s
    app = MonitorApp(recorded_run, replay=speed, tick=0.1)
    after_ticks = []  # (wall time before the tick, after it, replay clock, step shown)
    tick = app.monitor.tick

    def recorded_tick():
        before = time.monotonic()
        tick()
        after_ticks.append((before, time.monotonic(), app.monitor.source.clock, app.monitor.state.step))

    app.monitor.tick = recorded_tick
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.monitor.state.ended, timeout=60)
        await wait_for(pilot, lambda: f"replay x{speed:g} done" in shown(app.query_one(RunHeader)))
    start = after_ticks[0][0]
    assert all(clock <= speed * (after - start) for _, after, clock, _ in after_ticks)  # never ahead of speed
    steps = [step for *_, step in after_ticks]
    assert steps == sorted(steps) and steps[-1] == 60
    assert len({step for step in steps if 0 < step < 60}) >= 2  # played through, not all at once


def test_main_screen_snapshot(recorded_run, snap_compare):
    async def loaded(pilot):
        await wait_for(pilot, lambda: "step 60/60" in shown(pilot.app.query_one(RunHeader)))
        await pilot.pause()

    assert snap_compare(MonitorApp(recorded_run), terminal_size=SIZE, run_before=loaded)
