"""`meqg eval`: a run's multi-step numbers (docs/design.md, Eval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .progress import out


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Trained run directory (its latest checkpoint and store).")],
    chains: Annotated[
        Optional[Path], typer.Option("--chains", help="Chains to follow: one JSON list of texts per line.")
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, max=64, help="Steps to roll out after the prefix.")] = 8,
    prefix: Annotated[int, typer.Option(min=1, max=64, help="True concepts a rollout starts from.")] = 1,
    output: Annotated[
        Optional[Path], typer.Option("--out", help="Write report.json, report.md and PNGs into this new directory.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Roll the run over held-out chains: cascade-fail by horizon, teacher-forced error, calibration."""
    from meqg_mlx.eval.evaluate import evaluate_run
    from meqg_mlx.eval.report import check_new_output, write_run_report

    if output is not None:
        check_new_output(output)
    report = evaluate_run(run, chains, horizon, prefix)
    source = str(chains) if chains else "held-out documents of the run's store"
    if output is not None:
        write_run_report(output, run, report, source)
    if as_json:
        print(json.dumps({"run": str(run), "chains": source, **report.as_dict()}, indent=1))
        return
    out.print(
        f"[bold]{run}[/]: {report.chains} test chains ({source}), temperature {report.temperature:.3g}", soft_wrap=True
    )
    out.print(" h  cascade  top-5  free-err  forced-err  ECE    Brier")
    for h in range(len(report.cascade_fail)):
        out.print(
            f"{h + 1:>2}  {report.cascade_fail[h]:7.3f}  {report.cascade_fail_top5[h]:5.3f}  "
            f"{report.free_running_error[h]:8.3f}  {report.teacher_forced_error[h]:10.3f}  "
            f"{report.ece[h]:5.3f}  {report.brier[h]:5.3f}"
        )
    if output is not None:
        out.print(f"report: {output / 'report.md'}")
