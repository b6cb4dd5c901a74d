"""RunState folds a real run's telemetry into what the panels show; older records give n/a, not errors."""

from meqg_tui.state import RunState


def fold(records):
    state = RunState()
    for record in records:
        state.apply(record)
    return state


def test_recorded_run_is_summarized(recorded_records):
    state = fold(recorded_records)
    steps = [r for r in recorded_records if r["event"] == "step"]
    rejected = sum(not r["gate"]["accepted"] for r in steps)
    assert rejected > 0
    assert (state.step, state.target, state.ended) == (60, 60, "finished")
    assert (state.accepted, state.rejected, state.unchecked) == (60 - rejected, rejected, 0)
    assert state.backtracks == sum(r["gate"]["retries"] for r in steps)
    assert state.decisions[-1].step == 60 and len(state.decisions) == 12
    assert any(
        d.failed == "armijo"
        for d in fold(
            recorded_records[: next(i for i, r in enumerate(recorded_records) if r["event"] == "gate") + 1]
        ).decisions
    )
    assert len(state.expert_load) == 4 and state.router_entropy > 0
    assert state.rvq["codes"] == 16 and len(state.rvq["perplexity"]) == 2
    kinds = {kind for _, kind, _ in state.events}
    assert {"regime", "recovery", "checkpoint", "eval", "gate", "run"} <= kinds
    xs, ys = state.series["phi"]
    assert xs == list(range(1, 61)) and ys[0] is None and max(y for y in ys if y is not None) > 0
    assert state.series["loss"][1] == [step["loss"] for step in steps]  # as recorded, never recomputed
    assert state.status(now=None, stall_after=30) == "finished"
    assert state.elapsed(None, 30) == recorded_records[-1]["ts"] - recorded_records[0]["ts"]
    assert state.steps_per_second() > 0


def test_fields_an_older_schema_lacks_are_none(recorded_records):
    old = []
    for record in recorded_records:
        record = {k: v for k, v in record.items() if k not in ("kappa", "experts", "terms", "loss", "schema")}
        if record.get("gate"):
            record["gate"] = {k: v for k, v in record["gate"].items() if k not in ("view_size", "trust_radius")}
        old.append(record)
    state = fold(old)
    assert state.step == 60 and state.expert_load is None
    assert set(state.series["kappa"][1]) == {None} and set(state.series["loss"][1]) == {None}
    assert state.decisions[-1].view_size is None


def test_live_status_running_stalled_waiting(recorded_records):
    state = RunState()
    assert state.status(now=0.0, stall_after=30) == "waiting"
    for record in recorded_records[:10]:
        state.apply(record)
    last = recorded_records[9]["ts"]
    assert state.status(now=last + 1, stall_after=30) == "running"
    assert state.elapsed(now=last + 1, stall_after=30) == last + 1 - recorded_records[0]["ts"]
    assert state.status(now=last + 31, stall_after=30) == "stalled"


def test_new_events_are_handed_out_once(recorded_records):
    state = fold(recorded_records[:30])
    seen = state.events_seen
    for record in recorded_records[30:]:
        state.apply(record)
    fresh = state.new_events(seen)
    assert fresh and fresh[-1][1] == "run" and state.new_events(state.events_seen) == []


def test_inverter_telemetry_shows_its_loss_and_learning_rate():
    """`meqg monitor RUN/inverter` follows `meqg inverter train` (its step records: loss, lr, tokens/s)."""
    records = [
        {
            "schema": 1,
            "ts": 1.0 + i,
            "run_id": "r-inverter",
            "step": i,
            "event": "step",
            "loss": 8.0 - i,
            "lr": 1e-3,
            "tokens_per_s": 1000.0,
            "seconds": float(i),
        }
        for i in range(1, 4)
    ]
    state = fold(
        records
        + [
            {
                "schema": 1,
                "ts": 9.0,
                "run_id": "r-inverter",
                "step": 3,
                "event": "run",
                "status": "finished",
                "target": 3,
                "seconds": 3.0,
            }
        ]
    )
    assert state.series["loss"] == ([1, 2, 3], [7.0, 6.0, 5.0]) and state.series["lr"][1] == [1e-3] * 3
    assert state.ended == "finished" and state.series["phi"][1] == [None] * 3


def test_regime_bands_are_the_ones_the_run_used(recorded_records):
    import yaml

    from .conftest import RECORDED

    regime = yaml.safe_load(RECORDED.with_suffix(".yaml").read_text())["regime"]
    assert fold(recorded_records).bands == (regime["phi_geometric"], regime["phi_breakdown"])
    assert fold(recorded_records[1:]).bands is None  # a run that did not say: no bands drawn


def test_a_live_training_run_folds_as_it_is_written(small_store_path, tmp_path):
    """A real `meqg train` writing telemetry while the monitor's tail reads it: the state seen live
    says running, and ends where a fold of the finished file ends."""
    import sys
    import time
    from pathlib import Path

    from meqg_mlx.telemetry import read_telemetry
    from meqg_tui.tail import TelemetryTail

    from ..cli.test_train_cli import train_args
    from ..processes import child, wait_until

    run = tmp_path / "run"
    tail, live, seen = TelemetryTail(run / "telemetry.jsonl"), RunState(), []
    command = [str(Path(sys.executable).with_name("meqg")), *train_args(small_store_path, run, 30, tmp_path)]
    with child(command, stdout=open(tmp_path / "train.out", "w"), stderr=open(tmp_path / "train.err", "w")) as train:

        def folded_to_the_end():
            for record in tail.read():
                live.apply(record)
            seen.append((live.step, live.status(now=time.time(), stall_after=60), train.poll() is None))
            return live.ended

        wait_until(folded_to_the_end, 300, "the live run's last record", 0.05)
        train.wait(timeout=60)
    assert train.returncode == 0, (tmp_path / "train.err").read_text()
    assert any(status == "running" and alive and 0 < step < 30 for step, status, alive in seen), seen[-5:]
    records, malformed = read_telemetry(run / "telemetry.jsonl")
    final = fold(records)
    assert malformed == 0 and tail.malformed == 0 and (live.step, live.target, live.ended) == (30, 30, "finished")
    assert (live.accepted, live.rejected, live.unchecked, live.backtracks) == (
        final.accepted,
        final.rejected,
        final.unchecked,
        final.backtracks,
    )
    assert live.accepted + live.rejected + live.unchecked == 30
    assert live.series["loss"] == final.series["loss"] and len(live.series["loss"][0]) == 30
    assert live.expert_load == final.expert_load and live.records == final.records
    evaluations = [text for _, kind, text in final.events if kind == "eval"]
    assert evaluations and evaluations[-1].startswith("next r@1 ") and " vs " in evaluations[-1]


def test_loss_is_kept_per_batch_source(recorded_records):
    """Steps say whether their batch was documents or relation walks; the monitor plots each loss apart."""
    steps = [dict(r) for r in recorded_records if r["event"] == "step"][:4]
    for record, source in zip(steps, ("documents", "walks", "walks", None)):
        if source:
            record["batch"] = source
    state = fold(steps)
    assert [y is not None for y in state.series["loss_walks"][1]] == [False, True, True, False]
    assert [y is not None for y in state.series["loss_documents"][1]] == [True, False, False, False]
    assert state.series["loss_walks"][1][1] == state.series["loss"][1][1]
