"""Ablations: variant configs at equal compute, verdicts on constructed reports, and a tiny run end to end."""

import json

import pytest

from meqg_mlx.config import MeqgConfig
from meqg_mlx.errors import InputError
from meqg_mlx.eval.ablation import kill_numbers, summarise, variant_config
from meqg_mlx.eval.evaluate import ChainReport

from ..conftest import meqg
from ..cli.test_train_cli import small_yaml


def test_variants_change_only_what_they_name_and_share_the_compute():
    base = MeqgConfig()
    configs = {name: variant_config(base, name, seed=2, steps=10) for name in ("full", "no-ledger", "no-gate", "plain")}
    flipped = variant_config(base, "sign-flip", 2, 10)
    assert [c.train.gate for c in configs.values()] == [True, True, False, False]
    assert [c.objective.lambda_mod for c in configs.values()] == [0.5, 0.0, 0.5, 0.0]
    assert flipped.objective.lambda_mod == -0.5 and base.objective.lambda_mod == 0.5  # the base is untouched
    assert all(c.train.compute == 30.0 and c.train.seed == 2 and c.train.steps == 10 for c in configs.values())
    with pytest.raises(InputError, match="unknown variant 'half'"):
        variant_config(base, "half", 0, 10)


def report(cascade_at_horizon: float, ece: float) -> ChainReport:
    return ChainReport(
        chains=10,
        calibration_chains=10,
        temperature=0.1,
        mean_confidence=0.5,
        accuracy=0.5,
        cascade_fail=[cascade_at_horizon],
        cascade_fail_top5=[cascade_at_horizon],
        teacher_forced_error=[0.5],
        free_running_error=[0.5],
        ece=[ece],
        brier=[0.2],
        ece_per_step=[ece],
        brier_per_step=[0.2],
        reliability={},
    )


def test_kill_number_verdicts_follow_the_intervals():
    met = kill_numbers({"full": [report(0.5, 0.02), report(0.52, 0.03), report(0.48, 0.025)],
                        "plain": [report(0.8, 0.1), report(0.81, 0.1), report(0.79, 0.1)],
                        "no-gate": [report(0.7, 0.04)] * 3}, horizon=1)  # fmt: skip
    assert [k["verdict"] for k in met] == ["met", "met"]
    assert met[1]["gap_to_no_gate"]["mean"] == pytest.approx(0.025 - 0.04)
    worse = kill_numbers({"full": [report(0.8, 0.2)] * 2 + [report(0.81, 0.21)],
                          "plain": [report(0.8, 0.1)] * 3}, horizon=1)  # fmt: skip
    assert [k["verdict"] for k in worse[:2]] == ["not met", "not met"]
    assert "note" not in met[1]
    flat = report(0.5, 0.02)
    flat.temperature = 1e3
    assert "uniform" in kill_numbers({"full": [flat] * 3}, horizon=1)[1]["note"]
    one_seed = kill_numbers({"full": [report(0.5, 0.02)], "plain": [report(0.8, 0.1)]}, horizon=1)
    assert [k["verdict"] for k in one_seed[:2]] == ["inconclusive", "inconclusive"]  # no interval from one seed


def test_chains_shorter_than_the_horizon_are_summarised_as_far_as_they_reach():
    """Two-hop chains under the default horizon 8: the summary stops at the steps every run reached."""
    from meqg_mlx.eval.report import ablation_markdown

    runs = {name: [report(c, 0.05), report(c + 0.01, 0.06)] for name, c in (("full", 0.5), ("plain", 0.8))}
    for reports in runs.values():
        for r in reports:
            r.reliability = {"edges": [0.0, 1.0], "accuracy": [0.5], "confidence": [0.5], "count": [10]}
    compute = {name: [{"steps": 6, "forwards": 18}] * 2 for name in runs}
    settings = {"horizon": 8, "store": "S", "chains": "two-hops.jsonl", "seeds": 2, "steps": 6, "prefix": 1}
    summary = summarise(settings, runs, compute)
    assert summary["horizon"] == 1 and len(summary["variants"]["full"]["cascade_fail"]) == 1
    assert summary["kill_numbers"][0]["verdict"] in ("met", "not met", "inconclusive")
    assert "horizon 1 (asked 8: the chains end sooner)" in ablation_markdown(summary)


def test_a_tiny_two_variant_one_seed_eval_end_to_end(small_store_path, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--store", str(small_store_path), "--variants", "full,plain", "--seeds", "1", "--steps", "6",
            "--horizon", "3", "--config", str(small_yaml(tmp_path)), "--out", str(out),
            "--tool-budgets", "0.01,30", "--tool-tasks", "2"]  # fmt: skip
    first = meqg(*args)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "report.json").read_text())
    assert set(summary["variants"]) == {"full", "plain"}
    assert summary["variants"]["plain"]["steps"]["mean"] == 6  # ungated: exactly the steps the compute buys
    assert summary["variants"]["full"]["steps"]["mean"] < 6  # the gate's checks cost forwards
    assert all(v["forwards"]["mean"] >= 18 for v in summary["variants"].values())
    assert [k["name"] for k in summary["kill_numbers"]] == ["cascade", "calibration", "tool-success"]
    assert "cascade: inconclusive" in first.stdout  # one seed: no interval
    for variant in summary["variants"].values():  # 10 ms cannot start a sandbox; 30 s always does
        assert [b["mean"] for b in variant["tools"]["tool_answered"]] == [0.0, 1.0]
        assert variant["tools"]["success"][0]["mean"] == 0.0
    assert summary["kill_numbers"][2]["where"].endswith("budgets 0.01 s")  # the tight one
    assert "## Tool success" in (out / "report.md").read_text() and (out / "tools.png").is_file()
    assert json.loads((out / "evals" / "plain-seed0-tools.json").read_text())["tasks"] == 2
    assert (out / "report.md").read_text().startswith("# meqg eval")
    assert (out / "cascade.png").read_bytes()[:4] == b"\x89PNG" and (out / "reliability.png").is_file()
    telemetry = (out / "runs" / "full-seed0" / "telemetry.jsonl").read_text()

    again = meqg(*args)  # reuses the finished runs and their evaluations
    assert again.returncode == 0, again.stderr
    assert (out / "runs" / "full-seed0" / "telemetry.jsonl").read_text() == telemetry
    assert json.loads((out / "report.json").read_text())["variants"] == summary["variants"]
    other = meqg(*[a if a != "6" else "7" for a in args])
    assert other.returncode == 2 and "holds an eval with other settings (steps)" in other.stderr


def test_without_an_os_sandbox_tool_success_refuses_before_training(small_store_path, tmp_path):
    out = tmp_path / "eval"
    no_sandbox = {"PATH": str(tmp_path)}  # no bwrap (nor sandbox-exec) to be found
    result = meqg("eval", "--store", str(small_store_path), "--out", str(out), env=no_sandbox)
    assert result.returncode == 2 and not out.exists()
    assert result.stderr.startswith("error: tool success needs the OS sandbox") and result.stderr.count("\n") == 1
    assert "--tool-budgets ''" in result.stderr
