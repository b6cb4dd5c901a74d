"""`meqg eval`: a run's multi-step numbers, or ablations of the gate and the ledger (docs/design.md, Eval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .progress import out


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    run: Annotated[
        Optional[Path], typer.Option("--run", help="Evaluate this trained run (its latest checkpoint and store).")
    ] = None,
    store: Annotated[
        Optional[str],
        typer.Option(
            "--store", help="Train and evaluate every variant x seed on this store; with --run: the run's store, moved."
        ),
    ] = None,
    chains: Annotated[
        Optional[Path], typer.Option("--chains", help="Chains to follow: one JSON list of texts per line.")
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, max=64, help="Steps to roll out after the prefix.")] = 8,
    prefix: Annotated[int, typer.Option(min=1, max=64, help="True concepts a rollout starts from.")] = 1,
    snap: Annotated[
        bool, typer.Option("--snap", help="Feed each free-running step the store concept it decodes to.")
    ] = False,
    output: Annotated[
        Optional[Path],
        typer.Option("--out", help="Report directory (with --store: also the runs; reused by a second call)."),
    ] = None,
    variants: Annotated[
        str, typer.Option(help="With --store: comma-separated (full, no-ledger, no-gate, plain, sign-flip).")
    ] = "full,no-ledger,no-gate,plain,sign-flip",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="With --store: runs per variant.")] = 3,
    steps: Annotated[
        int, typer.Option(min=1, help="With --store: every run gets the compute of this many ungated steps.")
    ] = 300,
    config_file: Annotated[
        Optional[Path], typer.Option("--config", help="With --store: the YAML config every variant starts from.")
    ] = None,
    tool_budgets: Annotated[
        str,
        typer.Option(help="Seconds per episode for tool success, comma-separated; '' skips it (needs the sandbox)."),
    ] = "0.1,0.25,0.5,1.0",
    tool_tasks: Annotated[int, typer.Option(min=1, max=1000, help="Generated programs per budget.")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Roll runs over held-out chains: cascade-fail by horizon, teacher-forced error, calibration."""
    from meqg_mlx.errors import InputError
    from meqg_mlx.eval.tool_success import parse_budgets

    budgets = parse_budgets(tool_budgets)
    if run is None and store is None:
        raise InputError("give --run RUN (one run, --store: its store moved) or --store STORE (the ablations)")
    if run is None:
        if output is None:
            raise InputError("--store needs --out: the variant runs and the report are written there")
        tools = (budgets, tool_tasks)
        return ablations(
            store, output, variants, seeds, steps, horizon, prefix, snap, chains, config_file, tools, as_json
        )
    one_run(run, store, chains, horizon, prefix, snap, output, budgets, tool_tasks, as_json)


def one_run(run, store, chains, horizon, prefix, snap, output, budgets, tool_tasks, as_json) -> None:
    import numpy as np

    from meqg_mlx.eval.evaluate import evaluate_run
    from meqg_mlx.eval.report import check_new_output, run_report_json, write_run_report
    from meqg_mlx.eval.tool_success import evaluate_run_tools, require_sandbox

    from .progress import progress_bar

    if output is not None:
        check_new_output(output)
    if budgets:
        require_sandbox()
    report = evaluate_run(run, chains, horizon, prefix, snap=snap, store_path=store)
    tools = None
    if budgets:
        with progress_bar() as update:
            tools = evaluate_run_tools(run, budgets, tool_tasks, progress=update, store_path=store)
    source = str(chains) if chains else "held-out documents and relation paths of the run's store"
    if output is not None:
        write_run_report(output, run, report, source, tools)
    if as_json:
        print(json.dumps(run_report_json(run, report, source, tools), indent=1))
        return
    out.print(
        f"[bold]{run}[/]: {report.chains} test chains ({source}), temperature {report.temperature:.3g}", soft_wrap=True
    )
    out.print(" h  cascade  top-5  free-err  forced-err  ECE    Brier  best baseline's cascade (lower is better)")
    for h in range(len(report.cascade_fail)):
        best = min(report.baselines, key=lambda name: np.nan_to_num(report.baselines[name][h], nan=np.inf))
        out.print(
            f"{h + 1:>2}  {report.cascade_fail[h]:7.3f}  {report.cascade_fail_top5[h]:5.3f}  "
            f"{report.free_running_error[h]:8.3f}  {report.teacher_forced_error[h]:10.3f}  "
            f"{report.ece[h]:5.3f}  {report.brier[h]:5.3f}  {report.baselines[best][h]:.3f} {best}"
        )
    if tools is not None:
        out.print(" budget  success  tool answered  kept   seconds")
        for b, seconds in enumerate(tools.budgets):
            out.print(
                f"{seconds:6g} s  {tools.success[b]:7.3f}  {tools.tool_answered[b]:13.3f}  "
                f"{tools.kept[b]:5.3f}  {tools.mean_seconds[b]:7.3f}"
            )
    if output is not None:
        out.print(f"report: {output / 'report.md'}")


def ablations(
    store, output, variants, seeds, steps, horizon, prefix, snap, chains, config_file, tools, as_json
) -> None:
    from meqg_mlx.concepts.store import ConceptStore
    from meqg_mlx.config import load_config
    from meqg_mlx.encoder import embedder_from_config
    from meqg_mlx.eval.ablation import run_ablation
    from meqg_mlx.eval.report import verdict_lines, write_ablation_report
    from meqg_mlx.eval.tool_success import require_sandbox

    from .progress import progress_bar

    config = load_config(config_file)
    ConceptStore.open(store)  # a missing or damaged store fails here, before anything is written
    budgets, tool_tasks = tools
    if budgets:
        require_sandbox()  # before the encoder loads: the library checks again, but only after that
    embedder = embedder_from_config(config) if chains or budgets else None
    names = [name.strip() for name in variants.split(",") if name.strip()]
    with progress_bar() as update:
        summary = run_ablation(
            output, store, config, names, seeds, steps, horizon, prefix, chains, embedder, update, budgets, tool_tasks,
            snap,
        )  # fmt: skip
    write_ablation_report(output, summary)
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    for line, _ in verdict_lines(summary):
        out.print(line, soft_wrap=True)
    out.print(f"report: {output / 'report.md'}")
