"""The eval screen of `meqg app` on reports `meqg eval` wrote (tests/data/eval, recorded by its
record.sh on the small test store): verdicts coloured by what they say, the cascade curves and the
reliability diagram drawn, report.md's tables; a directory without a report is a message."""

import os
import shutil
from pathlib import Path

from rich.text import Text

from meqg_mlx.eval.report import read_report, verdict_lines

from .conftest import wait_for, workbench

SIZE = (160, 48)
REPORTS = Path(__file__).parents[1] / "data" / "eval"


def shown(widget) -> Text:
    content = widget.content
    return content if isinstance(content, Text) else Text(str(content))


def styles_of(text: Text, line: str) -> set[str]:
    start = text.plain.index(line)
    return {str(span.style) for span in text.spans if span.start <= start < span.end}


async def test_an_ablation_report_shows_coloured_verdicts_plots_and_tables(workbench_dir):
    shutil.copytree(REPORTS, workbench_dir / "runs" / "eval")
    report = read_report(REPORTS / "ablation")
    app = workbench("eval")
    async with app.run_test(size=SIZE) as pilot:
        reports = app.screen.query_one("#reports")
        await wait_for(pilot, lambda: reports.option_count == 2)
        ids = [reports.get_option_at_index(i).id for i in range(2)]
        assert sorted(ids) == ["runs/eval/ablation", "runs/eval/run-report"]
        reports.focus()
        reports.highlighted = ids.index("runs/eval/ablation")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.report is not None)
        verdicts = shown(app.screen.query_one("#verdicts"))
        lines = verdict_lines(report["summary"])
        assert lines
        for line, verdict in lines:
            expected = {"met": "bold green", "not met": "bold red", "inconclusive": "bold yellow"}.get(verdict, "dim")
            assert expected in styles_of(verdicts, line), (line, verdict)
        markdown = app.screen.query_one("#report-md").source
        assert "| variant |" in markdown and "![" not in markdown


async def test_a_run_report_and_a_directory_without_one(workbench_dir):
    app = workbench("eval")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "no eval reports" in shown(app.screen.query_one("#verdicts")).plain)
        await pilot.press("o", *str(REPORTS / "run-report"), "enter")
        await wait_for(pilot, lambda: app.screen.report is not None)
        assert "no kill-numbers" in shown(app.screen.query_one("#verdicts")).plain
        assert "| horizon h |" in app.screen.query_one("#report-md").source
        app.screen.query_one("#report-path").value = ""
        await pilot.press(*"runs", "enter")
        await wait_for(pilot, lambda: "holds no eval report" in shown(app.screen.query_one("#verdicts")).plain)


def test_eval_screen_snapshot(workbench_dir, snap_compare):
    shutil.copytree(REPORTS, workbench_dir / "runs" / "eval")
    for name, when in (("ablation", 1.7e9), ("run-report", 1.6e9)):  # a clone's files all date from its checkout
        os.utime(workbench_dir / "runs" / "eval" / name / "report.json", (when, when))

    async def opened(pilot):
        reports = pilot.app.screen.query_one("#reports")
        await wait_for(pilot, lambda: reports.option_count == 2)
        reports.focus()
        reports.highlighted = [reports.get_option_at_index(i).id for i in range(2)].index("runs/eval/ablation")
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen.report is not None)
        await pilot.pause()

    assert snap_compare(workbench("eval"), terminal_size=SIZE, run_before=opened)


async def test_a_report_the_screen_cannot_read_is_a_message_and_the_app_goes_on(workbench_dir):
    broken = workbench_dir / "runs" / "broken"
    broken.mkdir()
    (broken / "report.json").write_text("{}")
    (broken / "report.md").write_text("# not what meqg eval writes\n")
    app = workbench("eval")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o", *"runs/broken", "enter")
        await wait_for(pilot, lambda: any("KeyError" in n.message for n in app._notifications))
        await pilot.press("f1")  # the app still answers
        await wait_for(pilot, lambda: app.current_mode == "store")
