"""Diamond episodes on a real run (a VMM trained briefly on the small real store)."""

import dataclasses
import shutil
import threading
import time

import mlx.core as mx
import numpy as np
import pytest

from meqg_mlx.concepts.text import split_sentences
from meqg_mlx.episode.budget import Budget
from meqg_mlx.episode.engine import DiamondEngine, code_in
from meqg_mlx.errors import InputError, MeqgError
from meqg_mlx.inversion.training import InverterTraining

from ..conftest import tiny_config


@pytest.fixture(scope="module")
def engine(trained_run_path, embedder):
    engine = DiamondEngine.from_run(trained_run_path, embedder)
    engine.run("warm up", [], Budget())
    return engine


def test_an_episode_answers_with_concepts_and_seed_000_telemetry(engine):
    response = engine.run("Insert an item into a sorted list. Keep the list sorted.", [], Budget(seconds=5))
    telemetry = response["telemetry"]
    assert telemetry["stopped_by"] in ("converged", "max_steps", "rejected")
    assert len(response["concepts"]) >= 1 and response["text"]
    assert set(telemetry["objective"]) == {"Delta", "S_geo", "S_ent", "S_mod"}
    assert {"accepted", "armijo", "trust", "kl_smooth", "retries", "view_size", "collapse_pressure"} <= set(
        telemetry["gate"]
    )
    budget = telemetry["budget"]
    assert budget["flops"] > 0 and budget["kv_bytes"] > 0 and budget["seconds"] < 5
    for concept in response["concepts"]:
        assert concept["hit"] == (concept["score"] >= engine.lookup.threshold)


BETWEEN_UNITS_SECONDS = 0.5  # decoding, telemetry and a busy machine's scheduling between measured units


def within_budget(run) -> dict:
    """Run `run()` (an episode); it must end within its seconds plus the longest unit of work it measured
    (the engine starts no unit it expects to overrun), plus the unmeasured work between units."""
    started = time.perf_counter()
    response = run()
    elapsed = time.perf_counter() - started
    budget = response["telemetry"]["budget"]
    assert budget["seconds"] <= elapsed
    assert elapsed <= budget["limits"]["seconds"] + budget["longest_unit_seconds"] + BETWEEN_UNITS_SECONDS, budget
    return response


def test_one_second_budget_ends_within_a_unit_of_work(engine):
    engine.config.episode.max_steps = 10_000
    try:
        for tools in ([], ["python", "store"]):
            response = within_budget(
                lambda: engine.run(
                    "Read a file line by line.\n```python\nprint(2 + 3)\n```",
                    tools,
                    Budget(seconds=1.0, max_flops=1e15),
                )
            )
            assert response["telemetry"]["stopped_by"] in ("seconds", "converged", "rejected")
    finally:
        engine.config.episode.max_steps = 6


def endless(engine: DiamondEngine, **episode) -> DiamondEngine:
    """The engine with steps that never count as converged (and any other episode settings)."""
    config = engine.config
    return engine.with_config(
        dataclasses.replace(config, episode=dataclasses.replace(config.episode, converge_cosine=1.0, **episode))
    )


def test_steps_read_the_context_through_the_cache_as_the_whole_forward_would(engine, embedder):
    prompt = "Open a file. Read its lines. Count the words. Print the total."
    result = endless(engine, gate=False, retrieve_k=0, max_steps=5).episode(prompt, [], Budget(max_flops=1e15))
    steps = result.response["telemetry"]["steps"]
    assert len(steps) >= 2 and [s["fed"] for s in steps[1:]] == [2] * (len(steps) - 1)  # last concept, new one
    context = list(embedder.encode(split_sentences(prompt)))
    assert steps[0]["fed"] == len(context)
    assert engine.memory is not None  # the last concept reads the store, as the engine's steps do
    for _ in result.response["concepts"]:  # the whole context through the VMM at every step, no cache
        memory = engine.memory.read_last(context[-1][None], np.array([0]), len(context))
        proposal = np.array(engine.model(mx.array(np.stack(context))[None], memory=memory).next_vector[0, -1])
        context.append(proposal / np.linalg.norm(proposal))
    np.testing.assert_allclose(result.final, context[-1], atol=1e-5)


def test_an_episode_follows_its_relation_from_the_prompts_last_concept(engine, embedder):
    """Each step reads the episode's relation from the last prompt concept on (`next` before it), through
    the cache as the whole forward with those relations would."""
    prompt = "Open a file. Read its lines. Count the words."
    relation = engine.vocabulary.id("defined_in")
    walker = endless(engine, gate=False, retrieve_k=0, max_steps=4)
    result = walker.episode(prompt, [], Budget(max_flops=1e15), relation="defined_in")
    assert len(result.response["telemetry"]["steps"]) >= 2  # a step after the first read it from the cache
    context = list(embedder.encode(split_sentences(prompt)))
    walked_from = len(context) - 1
    for _ in result.response["concepts"]:
        relations = [[relation if i >= walked_from else 0 for i in range(len(context))]]
        memory = engine.memory.read_last(context[-1][None], np.array([relation]), len(context))
        whole = engine.model(mx.array(np.stack(context))[None], relations=mx.array(relations), memory=memory)
        proposal = np.array(whole.next_vector[0, -1])
        context.append(proposal / np.linalg.norm(proposal))
    np.testing.assert_allclose(result.final, context[-1], atol=1e-5)
    plain = walker.episode(prompt, [], Budget(max_flops=1e15))
    assert not np.allclose(plain.final, result.final, atol=1e-3)  # the relation changes where it goes
    with pytest.raises(InputError, match="unknown relation 'meronym'; this run knows next, contains"):
        engine.run(prompt, [], relation="meronym")


def test_max_flops_stops_the_episode_at_the_exact_count(engine):
    engine = endless(engine)
    prompt = "Sort a list. Then reverse it."
    free = engine.run(prompt, [], Budget(max_flops=1e15))["telemetry"]
    assert len(free["steps"]) >= 2, free["stopped_by"]  # (this prompt ends by converging after 2 steps)
    assert sum(step["flops"] for step in free["steps"]) == free["budget"]["flops"]
    limit = free["steps"][0]["flops"] + 1.0  # room for the first step, not the second
    capped = engine.run(prompt, [], Budget(max_flops=limit))["telemetry"]
    assert capped["stopped_by"] == "max_flops" and len(capped["steps"]) == 1
    assert capped["budget"]["flops"] == limit - 1.0
    tiny = engine.run(prompt, [], Budget(max_flops=10))["telemetry"]
    assert tiny["stopped_by"] == "max_flops" and tiny["budget"]["flops"] == 0 and tiny["steps"] == []


def test_a_step_outside_any_trust_region_backtracks_widens_the_view_and_is_rejected(engine):
    max_backtracks = engine.config.gate.max_backtracks
    response = endless(engine, trust_radius=1e-6).run("Sort a list. Then reverse it.", [], Budget(max_flops=1e15))
    telemetry = response["telemetry"]
    assert telemetry["stopped_by"] == "rejected" and response["concepts"] == []
    (step,) = telemetry["steps"]
    finest = engine.args.rvq_levels
    assert not step["gate"]["accepted"] and step["gate"]["failed"] == "trust"
    assert step["gate"]["retries"] == max_backtracks and step["gate"]["view_size"] < finest  # widened, then gave up
    # both views were charged for what they fed the VMM: the finest the prompt (its cache was empty), k slots
    # and the last concept; the widened one, from the same cache, only its 2k slots and the last concept
    k, context = engine.config.episode.retrieve_k, step["gate"]["context"]
    assert step["fed"] == (context - 2 * k) + k + (2 * k + 1)
    assert step["flops"] == step["fed"] * engine.flops_per_concept


def test_an_ungated_episode_takes_the_step_the_gate_rejects_as_it_stands(engine):
    gated = endless(engine, trust_radius=1e-6).run("Sort a list. Then reverse it.", [], Budget(max_flops=1e15))
    ungated = endless(engine, trust_radius=1e-6, gate=False).run(
        "Sort a list. Then reverse it.", [], Budget(max_flops=1e15)
    )
    assert gated["telemetry"]["stopped_by"] == "rejected" and ungated["concepts"]
    first = ungated["telemetry"]["steps"][0]["gate"]
    assert first["accepted"] and not first["trust"] and first["retries"] == 0  # unchecked, unscaled
    free = endless(engine).run("Sort a list. Then reverse it.", [], Budget(max_flops=1e15))["telemetry"]["steps"][0]
    assert first["step_norm"] == pytest.approx(free["gate"]["step_norm"], rel=1e-5)  # the same, whole proposal


def test_backtracking_brings_an_overlong_step_inside_the_trust_region(engine):
    free = endless(engine).run("Sort a list. Then reverse it.", [], Budget(max_flops=1e15))["telemetry"]["steps"][0]
    assert free["gate"]["accepted"] and free["gate"]["retries"] == 0
    radius = 0.3 * free["gate"]["step_norm"]  # the full step is too long; a quarter of it fits
    step = endless(engine, trust_radius=radius).run("Sort a list. Then reverse it.", [], Budget(max_flops=1e15))
    first = step["telemetry"]["steps"][0]["gate"]
    assert first["accepted"] and first["retries"] >= 1 and first["step_norm"] <= radius
    assert first["view_size"] == engine.args.rvq_levels


def test_python_tool_result_joins_the_context(engine):
    response = engine.run("Compute:\n```python\nprint(6 * 7)\n```", ["python"], Budget(seconds=5))
    (tool,) = response["telemetry"]["tools"]
    assert tool["tool"] == "python" and tool["text"] == "42" and tool["ok"] and tool["latency_ms"] > 0
    assert response["telemetry"]["steps"][0]["gate"]["context"] >= 3  # prompt sentence(s), observation, slots
    skipped = engine.run("No code here.", ["python"], Budget())["telemetry"]["tools"]
    assert skipped == [{"tool": "python", "skipped": "no code block"}]
    assert code_in("a\n```py\nx = 1\n```\nb") == "x = 1\n"


def test_bad_prompts_tools_and_runs_are_one_line_errors(engine, tmp_path):
    with pytest.raises(InputError, match="prompt is empty"):
        engine.run("  ", [])
    with pytest.raises(InputError, match="characters; the limit"):
        engine.run("x" * 10_000, [])
    with pytest.raises(InputError, match="unknown tool 'web'"):
        engine.run("hello", ["web"])
    with pytest.raises(MeqgError, match="run.json missing"):
        DiamondEngine.from_run(tmp_path)


def test_store_misses_show_the_closer_of_the_inverters_and_the_nearest_text(
    trained_run_path, small_store, embedder, tmp_path
):
    run_with_inverter = tmp_path / "run"  # a copy: the module's run stays without an inverter
    shutil.copytree(trained_run_path, run_with_inverter)
    InverterTraining(small_store, run_with_inverter, embedder, tiny_config(steps=40)).train()
    engine = DiamondEngine.from_run(run_with_inverter, embedder)
    assert engine.corrector is not None
    # a lookup threshold no predicted concept reaches: every concept is a store miss, whatever the VMM learned
    config = engine.config
    engine = engine.with_config(
        dataclasses.replace(config, inversion=dataclasses.replace(config.inversion, lookup_threshold=0.99999))
    )
    result = engine.episode("Insert an item into a sorted list. Keep the list sorted.", [], Budget(seconds=5))
    response = result.response
    misses = [c for c in response["concepts"] if not c["hit"]]
    assert misses
    for concept, vector in zip(response["concepts"], result.concept_vectors):
        shown = concept["text"] or concept["nearest_text"]  # the inverter's text only where it beat the nearest
        assert concept["source"] == "inversion" or concept["text"] is None
        assert concept["cosine"] >= concept["score"] - 1e-6
        assert concept["cosine"] == pytest.approx(float(embedder.encode([shown])[0] @ vector), abs=1e-4)
    assert response["text"] == "\n".join(c["text"] or f"[~ {c['nearest_text']}]" for c in response["concepts"])
    within_budget(lambda: engine.run("Read a file line by line.", ["store"], Budget(seconds=1.0, max_flops=1e15)))


def test_episode_steps_report_the_trainers_gate_decision(engine):
    """One policy decides both: an episode step's gate record carries every GateDecision field."""
    from meqg_mlx.diamond.gate import GateDecision

    steps = engine.run("Sort a list. Then reverse it.", [], Budget())["telemetry"]["steps"]
    fields = {f.name for f in dataclasses.fields(GateDecision)} | {"failed"}
    assert steps and all(fields <= set(step["gate"]) for step in steps)


def test_a_cancelled_episode_starts_no_step(engine):
    """`meqg serve` sets the event when the client has gone: nothing more is computed for it."""
    cancelled = threading.Event()
    cancelled.set()
    response = engine.run("Insert an item into a sorted list.", [], Budget(seconds=5), cancelled=cancelled)
    telemetry = response["telemetry"]
    assert telemetry["stopped_by"] == telemetry["budget"]["stopped_by"] == "cancelled"
    assert telemetry["steps"] == [] and response["concepts"] == [] and telemetry["budget"]["flops"] == 0
