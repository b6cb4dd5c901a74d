"""Tool success: generated programs print their known answers in the real sandbox, episodes on a real
run score as constructed cases say they must, and the kill-number follows its intervals."""

import dataclasses

import numpy as np
import pytest

from meqg_mlx.concepts.text import normalize_text
from meqg_mlx.corpus.sequences import ConceptTable
from meqg_mlx.episode.budget import Budget
from meqg_mlx.episode.engine import DiamondEngine
from meqg_mlx.errors import InputError
from meqg_mlx.eval.ablation import tight, tool_kill_number
from meqg_mlx.eval.tasks import store_candidates, with_texts
from meqg_mlx.eval.tool_success import FAMILIES, ToolReport, evaluate_tools, generate_tasks, parse_budgets
from meqg_mlx.sandbox import isolation, run_python

needs_sandbox = pytest.mark.skipif(not isolation().safe, reason="tool episodes need the OS sandbox (bubblewrap)")


def test_tasks_are_the_same_everywhere_and_cover_every_family():
    tasks = generate_tasks(14)
    assert tasks == generate_tasks(14) and tasks != generate_tasks(14, seed=1)
    assert {t.name.rsplit("-", 1)[0] for t in tasks} == set(FAMILIES)
    assert all(t.prompt.startswith("What does this program print?\n```python\n") for t in tasks)
    with pytest.raises(InputError, match="need at least 1"):
        generate_tasks(0)


@needs_sandbox
def test_every_generated_program_prints_its_known_answer_in_the_sandbox():
    for task in generate_tasks(14):
        result = run_python(task.code, timeout_s=30)
        assert result.ok and result.stdout.strip() == task.answer, (task, result.stderr)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.1,x", "'x' is not a number"),
        ("0", "'0' must be in"),
        ("-1", "must be in"),
        ("nan", "'nan' must be in"),
        ("61", "'61' must be in"),
    ],  # fmt: skip
)
def test_bad_budgets_are_one_line_errors(text, message):
    assert parse_budgets(" 0.5, 0.1,,0.5 ") == (0.1, 0.5) and parse_budgets("") == ()
    with pytest.raises(InputError, match=message):
        parse_budgets(text)


@pytest.fixture(scope="module")
def engine(trained_run_path, embedder):
    return DiamondEngine.from_run(trained_run_path, embedder)


def scored(engine, tasks):
    candidates, row_of = with_texts(
        store_candidates(engine.store, ConceptTable(engine.store)), [t.answer for t in tasks], engine.embedder
    )
    return candidates, [row_of[normalize_text(t.answer)] for t in tasks]


@needs_sandbox
def test_a_rollout_that_keeps_the_observation_succeeds_exactly_when_the_tool_answers(engine):
    """converge_cosine -1: the first step always 'converges', so the episode ends on the tool's observation."""
    config = dataclasses.replace(engine.config)
    config.episode = dataclasses.replace(config.episode, converge_cosine=-1.0)
    keeper = engine.with_config(config)
    tasks = generate_tasks(3)
    report = evaluate_tools(keeper, tasks, (0.01, 30.0), *scored(keeper, tasks))
    assert report.tool_answered == [0.0, 1.0]  # 10 ms is not enough to start a sandbox; 30 s always is
    assert report.success == [0.0, 1.0] and report.kept[1] == 1.0
    assert report.stopped_by[1] == {"converged": 3} and report.mean_steps == [0.0, 0.0]
    assert report.mean_seconds[0] < report.mean_seconds[1] < 30


@needs_sandbox
def test_an_episode_scores_only_what_it_ends_on(engine):
    """A rollout free to walk away (never converging, ungated) is scored on its last accepted concept."""
    config = dataclasses.replace(engine.config)
    config.episode = dataclasses.replace(config.episode, converge_cosine=1.0, gate=False, max_steps=3)
    walker = engine.with_config(config)
    tasks = generate_tasks(3)
    candidates, rows = scored(walker, tasks)
    report = evaluate_tools(walker, tasks, (30.0,), candidates, rows)
    assert report.tool_answered == [1.0] and report.mean_steps[0] >= 1
    result = walker.episode(tasks[0].prompt, ["python"], Budget(seconds=30))
    assert result.response["telemetry"]["tools"][0].get("ok"), result.response["telemetry"]["tools"]
    last = result.response["concepts"][-1]  # the ungated walk accepted at least one step
    final = result.final / np.linalg.norm(result.final)
    assert float(walker.store.vectors([last["concept_id"]])[0] @ final) == pytest.approx(last["score"], abs=1e-5)
    observation = walker.embedder.encode([result.response["telemetry"]["tools"][0]["text"]])[0]
    assert np.linalg.norm(observation - final) > 1e-3  # it ended on its own step, not on the observation


def tool_report(success: list[float]) -> ToolReport:
    n = len(success)
    return ToolReport(list(range(1, n + 1)), 10, success, [1.0] * n, success, [0.1] * n, [1.0] * n, [{}] * n)


def test_the_tool_kill_number_compares_full_with_plain_at_the_tight_budgets():
    assert tight([0.1, 0.25, 0.5, 1.0]) == [0, 1, 2] and tight([1.0]) == [0]
    budgets = [0.1, 0.5, 1.0]  # the last is not tight: 0.0 there changes nothing
    met = tool_kill_number(
        {"full": [tool_report([0.6, 0.6, 0.0]), tool_report([0.62, 0.58, 0.0]), tool_report([0.6, 0.61, 0.0])],
         "plain": [tool_report([0.4, 0.4, 1.0]), tool_report([0.41, 0.39, 1.0]), tool_report([0.4, 0.4, 1.0])]},
        budgets,
    )  # fmt: skip
    assert met["verdict"] == "met" and met["measured"]["mean"] == pytest.approx(0.5, abs=0.02)
    assert met["absolute_gain"]["mean"] == pytest.approx(0.2, abs=0.01) and "0.1, 0.5 s" in met["where"]
    same = [tool_report([0.5, 0.5, 0.5])] * 3
    assert tool_kill_number({"full": same, "plain": same}, budgets)["verdict"] == "not met"
    never = tool_kill_number({"full": same, "plain": [tool_report([0.0, 0.0, 1.0])] * 3}, budgets)
    assert never["verdict"] == "inconclusive" and "plain never succeeded" in never["note"]
    assert tool_kill_number({"full": same}, budgets)["verdict"] == "not measured (needs full and plain)"
    assert tool_kill_number({}, [])["verdict"] == "not measured (--tool-budgets is empty)"
