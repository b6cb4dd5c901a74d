"""The episode screen of `meqg app`: a Diamond episode on a real trained run, shown step by step
as the engine's own telemetry has it; an empty prompt or a bad budget is a message."""

import shutil


from meqg_tui.episode_screen import EpisodeScreen

from .conftest import drawn, shown, wait_for, workbench

SIZE = (160, 48)
PROMPT = "Insert an item into a sorted list. Keep the list sorted."


async def test_an_episode_shows_each_step_its_gate_decision_and_the_final_text(workbench_dir, trained_run_path):
    shutil.copytree(trained_run_path, workbench_dir / "runs" / "trained")
    app = workbench("episode")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, EpisodeScreen)
        await wait_for(pilot, lambda: str(screen.query_one("#run").value).endswith("trained"))
        await wait_for(pilot, lambda: screen.query_one("#relation").value == "next")

        assert app.focused is screen.query_one("#prompt")
        await pilot.press("enter")  # an empty prompt
        assert "the prompt is empty" in shown(screen.query_one("#episode-status"))
        screen.query_one("#seconds").value = "-1"
        await pilot.press(*PROMPT, "enter")
        assert "budget must be a number of seconds > 0" in shown(screen.query_one("#episode-status"))

        screen.query_one("#seconds").value = "5"
        screen.query_one("#prompt").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.response is not None, 120, "the episode did not finish")
        telemetry = screen.response["telemetry"]
        table = screen.query_one("#steps")
        assert table.row_count == len(telemetry["steps"]) >= 1
        concepts = {c["step"]: c for c in screen.response["concepts"]}
        for row, step in enumerate(telemetry["steps"]):
            cells = [str(cell) for cell in table.get_row_at(row)]
            assert cells[1] == ("accepted" if step["gate"]["accepted"] else "rejected")
            assert cells[2] == (step["gate"]["failed"] or "")
            assert cells[3:5] == [str(step["gate"]["retries"]), str(step["gate"]["view_size"])]
            if step["index"] in concepts:
                concept = concepts[step["index"]]
                assert cells[7] == f"{concept['cosine']:.3f}"
                assert cells[8] == " ".join((concept["text"] or f"[~ {concept['nearest_text']}]").split())
        status = shown(screen.query_one("#episode-status"))
        assert f"stopped by {telemetry['stopped_by']}" in status and f"{len(telemetry['steps'])} steps" in status
        assert shown(screen.query_one("#final")) == (screen.response["text"] or "(no concept accepted)")


async def test_no_trained_run_is_a_message(workbench_dir):
    app = workbench("episode")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "no run with a checkpoint" in shown(app.screen.query_one("#episode-status")))
        await pilot.press(*"hello", "enter")
        assert "choose a run first" in shown(app.screen.query_one("#episode-status"))


def test_episode_screen_snapshot(workbench_dir, snap_compare):
    async def ready(pilot):
        await wait_for(pilot, lambda: drawn(pilot.app, "no run with a checkpoint", "f4 eval"))

    assert snap_compare(workbench("episode"), terminal_size=SIZE, run_before=ready)
