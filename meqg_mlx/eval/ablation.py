"""Ablations at equal compute: the same backbone, data and seeds, with the gate and the ledger on,
off, or the ledger's sign flipped; each variant trained per seed, evaluated on the same held-out
chains, and summarised with 95% intervals over seeds and a verdict per kill-number.

Equal compute: every run may spend `(1 + BACKWARD_COST) * steps` forward-equivalents on its
steps, what `steps` ungated steps cost; gate checks are forwards, so gated variants take fewer
steps. Runs live in OUT/runs/VARIANT-seedK (ordinary run directories: `meqg monitor` shows any);
a second call with the same OUT and settings reuses finished runs and their evaluations.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_text
from ..config import MeqgConfig, to_yaml
from ..errors import InputError
from ..progress import Progress, no_progress
from ..runs import RunDir
from ..telemetry import read_telemetry
from ..train.trainer import BACKWARD_COST
from .evaluate import ChainReport, evaluate_run
from .metrics import TEMPERATURE_BOUND, Interval, mean_interval, verdict
from .tool_success import DEFAULT_TASKS, ToolReport, evaluate_run_tools, require_sandbox


def _sign_flip(config: MeqgConfig) -> None:
    config.objective.lambda_mod = -(abs(config.objective.lambda_mod) or 0.5)


def _no_gate(config: MeqgConfig) -> None:
    config.train.gate = config.episode.gate = False


def _no_ledger(config: MeqgConfig) -> None:
    config.objective.lambda_mod = 0.0


VARIANTS: dict[str, tuple[str, Callable[[MeqgConfig], None]]] = {
    "full": ("gate and ledger, as configured", lambda config: None),
    "no-ledger": ("lambda_mod = 0", _no_ledger),
    "no-gate": ("plain AdamW steps, ungated episodes", _no_gate),
    "plain": ("neither: the backbone the kill-numbers compare against", lambda c: (_no_gate(c), _no_ledger(c))),
    "sign-flip": ("lambda_mod < 0: the ledger's pull reversed", _sign_flip),
}
DEFAULT_VARIANTS = ("full", "no-ledger", "no-gate", "plain", "sign-flip")
SETTINGS_FILE = "eval.json"
TOOL_FIELDS = ("success", "tool_answered", "kept", "mean_seconds", "mean_steps")  # summarised per budget


@dataclass(frozen=True)
class KillNumber:
    name: str
    claim: str
    threshold: float
    higher_is_better: bool


KILL_NUMBERS = (
    KillNumber("cascade", "relative cascade-fail reduction of full against plain at the horizon >= 10%", 0.10, True),
    KillNumber("calibration", "ECE of full over steps 1..horizon <= 0.05", 0.05, False),
    KillNumber("tool-success", "relative tool-success gain of full over plain at the tight budgets >= 15%", 0.15, True),
)


def variant_config(base: MeqgConfig, variant: str, seed: int, steps: int) -> MeqgConfig:
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    config = copy.deepcopy(base)
    VARIANTS[variant][1](config)
    config.train.seed, config.train.steps = seed, steps
    config.train.compute = (1.0 + BACKWARD_COST) * steps
    return config


def finished(run: RunDir) -> bool:
    if not run.telemetry_path.exists():
        return False
    records, _ = read_telemetry(run.telemetry_path)
    ends = [r for r in records if r["event"] == "run"]
    return bool(ends) and ends[-1].get("status") == "finished"


def check_settings(out: Path, settings: dict) -> None:
    """A new OUT records its settings; an existing one must hold the same (else its runs would be mixed)."""
    path = out / SETTINGS_FILE
    if out.exists() and not path.is_file():
        raise InputError(f"{out} exists and is not a meqg eval directory: choose a new --out")
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != settings:
            changed = sorted(k for k in settings if saved.get(k) != settings[k])
            raise InputError(f"{out} holds an eval with other settings ({', '.join(changed)}): choose a new --out")
        return
    out.mkdir(parents=True)
    write_text(path, json.dumps(settings, indent=1))


def run_ablation(
    out: str | Path,
    store: str | Path,
    base: MeqgConfig,
    variants: list[str],
    seeds: int,
    steps: int,
    horizon: int,
    prefix: int,
    chains: str | Path | None = None,
    embedder=None,
    progress: Progress = no_progress,
    tool_budgets: tuple[float, ...] = (),
    tool_tasks: int = DEFAULT_TASKS,
    snap: bool = False,
) -> dict:
    """Train (or reuse) every variant x seed, evaluate each (`snap`: as `evaluate_run`'s), and summarise;
    returns the report dict."""
    from ..train.run import TrainingRun

    out = Path(out)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise InputError(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})" if unknown else "no variant")
    if seeds < 1 or steps < 1:
        raise InputError(f"--seeds and --steps must be at least 1, got {seeds} and {steps}")
    if tool_budgets:
        require_sandbox()  # before any training: its absence would otherwise end the eval an hour in
    settings = {
        "store": str(Path(store).resolve()),
        "variants": list(variants),
        "seeds": seeds,
        "steps": steps,
        "horizon": horizon,
        "prefix": prefix,
        "snap": snap,
        "chains": str(Path(chains).resolve()) if chains else None,
        "config": to_yaml(base),
        "tool_budgets": list(tool_budgets),
        "tool_tasks": tool_tasks,
    }
    check_settings(out, settings)
    reports: dict[str, list[ChainReport]] = {v: [] for v in variants}
    compute: dict[str, list[dict]] = {v: [] for v in variants}
    tools: dict[str, list[ToolReport]] = {v: [] for v in variants}
    for variant in variants:
        for seed in range(seeds):
            name = f"{variant}-seed{seed}"
            run = RunDir(out / "runs" / name)
            if not finished(run):
                config = variant_config(base, variant, seed, steps)
                training = TrainingRun(run, resume=True) if run.exists() else TrainingRun(run, store, config)
                training.train(on_step=lambda record, name=name: progress(f"training {name}", record["step"], steps))
            cached = out / "evals" / f"{name}.json"
            report = _cached(cached, ChainReport)
            if report is None:
                progress(f"evaluating {name}", 0, 1)
                report = evaluate_run(run, chains, horizon, prefix, embedder, snap)
                write_text(cached, json.dumps(report.as_dict()))
                progress(f"evaluating {name}", 1, 1)
            reports[variant].append(report)
            compute[variant].append(_compute_spent(run))
            if tool_budgets:
                cached = out / "evals" / f"{name}-tools.json"
                tool_report = _cached(cached, ToolReport)
                if tool_report is None:
                    label = f"tool episodes {name}"
                    tool_report = evaluate_run_tools(run, tool_budgets, tool_tasks, embedder, progress, label)
                    write_text(cached, json.dumps(tool_report.as_dict()))
                tools[variant].append(tool_report)
    return summarise(settings, reports, compute, tools)


def _cached(path: Path, kind: type):
    """A run's saved evaluation, or None when there is none or it is from a meqg that reported other fields."""
    try:
        return kind(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _compute_spent(run: RunDir) -> dict:
    records, _ = read_telemetry(run.telemetry_path)
    steps = [r for r in records if r["event"] == "step"]
    return {"steps": steps[-1]["step"], "forwards": steps[-1].get("forwards")} if steps else {}


def _interval_dict(interval: Interval) -> dict:
    return {"mean": interval.mean, "low": interval.low, "high": interval.high, "n": interval.n}


def summarise(
    settings: dict,
    reports: dict[str, list[ChainReport]],
    compute: dict[str, list[dict]],
    tools: dict[str, list[ToolReport]] | None = None,
) -> dict:
    """Means and 95% intervals over seeds per variant, and the kill-number verdicts."""
    tools = tools or {}
    # chains shorter than the asked horizon (a file of 2-4 hop chains) are summarised as far as all reach
    horizon = min([settings["horizon"]] + [len(r.cascade_fail) for runs in reports.values() for r in runs])
    variants = {}
    for variant, runs in reports.items():
        variants[variant] = {
            "description": VARIANTS[variant][0],
            "runs": len(runs),
            "steps": _interval_dict(mean_interval([c["steps"] for c in compute[variant]])),
            "forwards": _interval_dict(mean_interval([c["forwards"] for c in compute[variant]])),
            "cascade_fail": [_interval_dict(mean_interval([r.cascade_fail[h] for r in runs])) for h in range(horizon)],
            "cascade_fail_top5": [
                _interval_dict(mean_interval([r.cascade_fail_top5[h] for r in runs])) for h in range(horizon)
            ],
            "teacher_forced_error": [
                _interval_dict(mean_interval([r.teacher_forced_error[h] for r in runs])) for h in range(horizon)
            ],
            "ece": _interval_dict(mean_interval([r.ece[-1] for r in runs])),
            "brier": _interval_dict(mean_interval([r.brier[-1] for r in runs])),
            "mean_confidence": _interval_dict(mean_interval([r.mean_confidence for r in runs])),
            "accuracy": _interval_dict(mean_interval([r.accuracy for r in runs])),
            "reliability": _pooled_reliability(runs),
        }
        if tools.get(variant):
            budgets = range(len(settings["tool_budgets"]))
            variants[variant]["tools"] = {
                field: [_interval_dict(mean_interval([getattr(t, field)[b] for t in tools[variant]])) for b in budgets]
                for field in TOOL_FIELDS
            }
    lines = kill_numbers(reports, horizon) + [tool_kill_number(tools, settings.get("tool_budgets", []))]
    return {"settings": settings, "horizon": horizon, "variants": variants, "kill_numbers": lines}


def _pooled_reliability(runs: list[ChainReport]) -> dict:
    count = np.sum([r.reliability["count"] for r in runs], axis=0)
    hits = np.sum([np.nan_to_num(r.reliability["accuracy"]) * r.reliability["count"] for r in runs], axis=0)
    confidence = np.sum([np.nan_to_num(r.reliability["confidence"]) * r.reliability["count"] for r in runs], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": runs[0].reliability["edges"],
            "accuracy": (hits / count).tolist(),
            "confidence": (confidence / count).tolist(),
            "count": count.tolist(),
        }


def kill_numbers(reports: dict[str, list[ChainReport]], horizon: int) -> list[dict]:
    lines = []
    cascade, calibration, _ = KILL_NUMBERS
    if "full" in reports and "plain" in reports:
        reductions = [
            (p.cascade_fail[-1] - f.cascade_fail[-1]) / p.cascade_fail[-1] if p.cascade_fail[-1] > 0 else float("nan")
            for f, p in zip(reports["full"], reports["plain"])  # paired by seed
        ]
        interval = mean_interval(reductions)
        lines.append(_kill_line(cascade, interval, f"paired by seed at horizon {horizon}"))
    else:
        lines.append({"name": cascade.name, "claim": cascade.claim, "verdict": "not measured (needs full and plain)"})
    if "full" in reports:
        interval = mean_interval([r.ece[-1] for r in reports["full"]])
        line = _kill_line(calibration, interval, f"over steps 1..{horizon}")
        if "no-gate" in reports:
            gaps = [f.ece[-1] - g.ece[-1] for f, g in zip(reports["full"], reports["no-gate"])]
            line["gap_to_no_gate"] = _interval_dict(mean_interval(gaps))
        if any(r.temperature >= TEMPERATURE_BOUND for r in reports["full"]):
            line["note"] = (
                "the fitted temperature is at its bound: the confidence is uniform over the candidates, "
                "so this ECE only says a flat forecast matches a low accuracy"
            )
        lines.append(line)
    else:
        lines.append({"name": calibration.name, "claim": calibration.claim, "verdict": "not measured (needs full)"})
    return lines


def tight(budgets: list[float]) -> list[int]:
    """The indices of the tight budgets: every swept budget but the largest (one budget: that one)."""
    return list(range(max(len(budgets) - 1, 1)))


def tool_kill_number(tools: dict[str, list[ToolReport]], budgets: list[float]) -> dict:
    """Full against plain, paired by seed: (success_full - success_plain) / success_plain, success being a
    run's mean over the tight budgets; a seed where plain never succeeds has no ratio and is left out."""
    kill = KILL_NUMBERS[2]
    if not budgets:
        return {"name": kill.name, "claim": kill.claim, "verdict": "not measured (--tool-budgets is empty)"}
    if not tools.get("full") or not tools.get("plain"):
        return {"name": kill.name, "claim": kill.claim, "verdict": "not measured (needs full and plain)"}
    chosen = tight(budgets)

    def success(report: ToolReport) -> float:
        return float(np.mean([report.success[b] for b in chosen]))

    gains = [
        (success(f) - success(p)) / success(p) if success(p) > 0 else float("nan")
        for f, p in zip(tools["full"], tools["plain"])
    ]
    where = f"paired by seed, success averaged over budgets {', '.join(f'{budgets[b]:g}' for b in chosen)} s"
    line = _kill_line(kill, mean_interval(gains), where)
    if line["measured"]["n"] == 0:
        line["note"] = "plain never succeeded at the tight budgets: a relative gain has no value"
    line["absolute_gain"] = _interval_dict(
        mean_interval([success(f) - success(p) for f, p in zip(tools["full"], tools["plain"])])
    )
    return line


def _kill_line(kill: KillNumber, interval: Interval, where: str) -> dict:
    return {
        "name": kill.name,
        "claim": kill.claim,
        "measured": _interval_dict(interval),
        "where": where,
        "verdict": verdict(interval, kill.threshold, kill.higher_is_better),
    }
