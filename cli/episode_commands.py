"""`meqg run PROMPT`: one Diamond episode on a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.text import Text

from .options import RunStoreOption
from .progress import out


def register(app: typer.Typer) -> None:
    app.command("run")(run_episode)


def run_episode(
    prompt: Annotated[str, typer.Argument(help="What to reason about.")],
    run: Annotated[Path, typer.Option("--run", help="Trained run directory (its latest checkpoint and store).")],
    budget_seconds: Annotated[float, typer.Option(help="Wall-clock budget of the episode.")] = 2.0,
    max_flops: Annotated[float, typer.Option(help="Analytic VMM FLOPs the episode may spend.")] = 3e11,
    max_kv_bytes: Annotated[float, typer.Option(help="Bytes of context and recurrent state it may hold.")] = 128
    * 2**20,
    tools: Annotated[
        Optional[List[str]],
        typer.Option(
            "--tools", help="Tools: python (runs the prompt's ```python blocks in the sandbox), store. Repeatable."
        ),
    ] = None,
    unsafe_python: Annotated[
        bool,
        typer.Option(help="Run python blocks even where no OS sandbox exists (bubblewrap, sandbox-exec): UNSAFE."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole response (docs/design.md, HTTP API).")
    ] = False,
    relation: Annotated[
        str, typer.Option(help="The relation each step follows: one of the run's (vmm.relations in its config.yaml).")
    ] = "next",
    store: RunStoreOption = None,
) -> None:
    """Roll the prompt out as gated concept steps under a budget and decode them by store lookup."""
    from meqg_mlx.config import load_run
    from meqg_mlx.corpus.relations import RelationVocabulary
    from meqg_mlx.episode.budget import Budget
    from meqg_mlx.episode.engine import DiamondEngine
    from meqg_mlx.episode.request import check_prompt
    from meqg_mlx.episode.tools import check_tool_names
    from meqg_mlx.runs import RunDir
    from meqg_mlx.telemetry import json_safe

    budget = Budget(seconds=budget_seconds, max_flops=max_flops, max_kv_bytes=max_kv_bytes)
    names = check_tool_names([name for item in tools or [] for name in item.split(",") if name])
    config = load_run(RunDir(run))[1]
    check_prompt(prompt, config.episode.max_prompt_chars)  # before the model and encoder load
    RelationVocabulary.of_model(config.vmm.relations).id(relation)
    response = DiamondEngine.from_run(run, store_path=store).run(
        prompt, names, budget, allow_unsafe_python=unsafe_python, relation=relation
    )
    if as_json:
        print(json.dumps(json_safe(response), indent=1))
        return
    print_response(response)


def print_response(response: dict) -> None:
    """An episode's concepts, tool results and budget, a line each."""
    telemetry = response["telemetry"]
    for concept in response["concepts"]:
        shown = concept["text"] or f"[~ {concept['nearest_text']}]"
        out.print(Text.assemble((f"cos {concept['cosine']:.2f}  ", "dim"), " ".join(shown.split())), soft_wrap=True)
    for tool in telemetry["tools"]:
        out.print(Text(f"tool {tool['tool']}: {tool.get('text', tool.get('skipped'))}", "dim"), soft_wrap=True)
    b = telemetry["budget"]
    accepted = sum(step["gate"]["accepted"] for step in telemetry["steps"])
    out.print(
        f"{len(response['concepts'])} concepts, {accepted}/{len(telemetry['steps'])} steps accepted, "
        f"stopped by {telemetry['stopped_by']}; {b['seconds']:.2f} s, {b['flops']:.3g} FLOPs, "
        f"{b['kv_bytes'] / 2**20:.2f} MiB state",
        soft_wrap=True,
    )
