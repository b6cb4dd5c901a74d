"""An evaluation's files: report.json (every number), report.md (what a reader looks at first) and
PNGs (cascade failure against horizon, the reliability diagram, tool success against budget),
written atomically into --out."""

from __future__ import annotations

from pathlib import Path

from ..atomic import replaced_dir
from ..errors import InputError
from .evaluate import ChainReport
from .tool_success import ToolReport


def check_new_output(out: str | Path) -> None:
    """Reports go to a new directory: nothing already there is ever overwritten."""
    if Path(out).exists():
        raise InputError(f"{out} exists: choose a new --out directory")


def run_report_json(run: str | Path, report: ChainReport, chains: str, tools: ToolReport | None) -> dict:
    return {"run": str(run), "chains": chains, **report.as_dict(), "tools": tools.as_dict() if tools else None}


def write_run_report(
    out: str | Path, run: str | Path, report: ChainReport, chains: str, tools: ToolReport | None = None
) -> Path:
    """Write one run's report into `out`, which must not exist yet."""
    import json

    out = Path(out)
    check_new_output(out)
    with replaced_dir(out) as tmp:
        (tmp / "report.json").write_text(json.dumps(run_report_json(run, report, chains, tools), indent=1))
        text = markdown(run, report, chains)
        plot_cascade(report, tmp / "cascade.png")
        plot_reliability(report, tmp / "reliability.png")
        if tools is not None:
            series = {Path(run).name: single_tool_series(tools)}
            text += "\n".join(tool_markdown(series, tools.budgets, tools.tasks)) + "\n"
            plot_tool_success(series, tools.budgets, tmp / "tools.png")
        (tmp / "report.md").write_text(text)
    return out


FED = {
    False: "each free-running step is fed the predicted vector",
    True: "each free-running step is fed the store concept its prediction decodes to (--snap)",
}


def markdown(run: str | Path, report: ChainReport, chains: str) -> str:
    rows = [
        f"| {h} | {report.cascade_fail[h - 1]:.3f} | {report.cascade_fail_top5[h - 1]:.3f} | "
        f"{report.free_running_error[h - 1]:.3f} | {report.teacher_forced_error[h - 1]:.3f} | "
        f"{report.ece[h - 1]:.3f} | {report.brier[h - 1]:.3f} | {report.ece_per_step[h - 1]:.3f} |"
        for h in range(1, len(report.cascade_fail) + 1)
    ]
    return "\n".join(
        [
            f"# meqg eval: {run}",
            "",
            f"Chains: {chains}; {report.chains} test chains, {report.calibration_chains} for calibration "
            f"(softmax temperature {report.temperature:.4g}, fitted teacher-forced on those only); "
            f"free-running: mean confidence {report.mean_confidence:.3f}, accuracy {report.accuracy:.3f}; "
            f"{FED[report.snap]}.",
            "",
            "| horizon h | cascade-fail | cascade-fail (top-5) | free-running error at h | "
            "teacher-forced error at h | ECE (steps 1..h) | Brier (steps 1..h) | ECE (step h) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Cascade-fail at h: the share of chains with a wrong step among their first h (free-running).",
            "The gap between the free-running and the teacher-forced error at h is what feeding the model",
            "its own predictions costs.",
            "",
            *baseline_markdown(report),
            "![cascade](cascade.png) ![reliability](reliability.png)",
            "",
        ]
    )


def baseline_markdown(report: ChainReport) -> list[str]:
    """The model's cascade-fail beside each baseline rolled out the same way on the same chains."""
    if not report.baselines:
        return []
    names = list(report.baselines)
    rows = [
        f"| {h} | {report.cascade_fail[h - 1]:.3f} | "
        + " | ".join(f"{report.baselines[n][h - 1]:.3f}" for n in names)
        + " |"
        for h in range(1, len(report.cascade_fail) + 1)
    ]
    return [
        "Cascade-fail (lower is better) of the model and of the validation tables' baselines, each fitted on",
        "what the run trained on and fed its own predictions:",
        "",
        "| h | model | " + " | ".join(names) + " |",
        "|---" * (len(names) + 2) + "|",
        *rows,
        "",
    ]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _draw_reliability(axes, diagram: dict, labels: bool) -> None:
    """Accuracy per confidence bin (empty bins at 0) against the diagonal of perfect calibration."""
    edges = diagram["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    accuracy = [a if c else 0.0 for a, c in zip(diagram["accuracy"], diagram["count"])]
    axes.bar(centres, accuracy, width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    axes.set(xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
    if labels:
        axes.legend(loc="upper left", fontsize=8)


def plot_cascade(report: ChainReport, path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=120)
    horizons = range(1, len(report.cascade_fail) + 1)
    axes.plot(horizons, report.cascade_fail, "o-", label="cascade-fail (free-running)")
    axes.plot(horizons, report.cascade_fail_top5, "s--", label="cascade-fail, top-5")
    axes.plot(horizons, report.teacher_forced_error, "^:", label="teacher-forced error at h")
    axes.set(xlabel="horizon h", ylabel="rate", ylim=(0, 1.02), title="Chains: failure by horizon")
    axes.set_xticks(list(horizons))
    axes.legend(loc="lower right", fontsize=8)
    _save(plt, figure, path)


def plot_reliability(report: ChainReport, path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=120)
    _draw_reliability(axes, report.reliability, labels=True)
    axes.set(ylabel="accuracy", title=f"Reliability (free-running), ECE {report.ece[-1]:.3f}")
    _save(plt, figure, path)


def single_tool_series(tools: ToolReport) -> dict:
    """One run's tool numbers in the shape of a variant's summary (intervals of one run each)."""
    nan = float("nan")
    fields = ("success", "tool_answered", "kept")
    return {f: [{"mean": x, "low": nan, "high": nan, "n": 1} for x in getattr(tools, f)] for f in fields}


def variant_tool_series(summary: dict) -> dict:
    return {name: v["tools"] for name, v in summary["variants"].items() if "tools" in v}


def tool_markdown(series: dict[str, dict], budgets: list[float], tasks: int) -> list[str]:
    """Tool success per budget for each run or variant: success, and beside it how often the tool answered."""
    header = " | ".join(f"{b:g} s" for b in budgets)
    lines = [
        "## Tool success",
        "",
        f"{tasks} generated programs, each in a Diamond episode with the python tool at every budget. Success: "
        "the episode ends within its budget on a concept that decodes to the printed answer. Tool answered: "
        "the sandboxed program printed the answer in time (the tool runs before the rollout, so this is the "
        "same for every variant by construction). Kept: of those, the share the rollout ended on the answer. "
        "Intervals are Student-t over seeds: with few seeds they are wide and may pass 0 or 1.",
        "",
        f"| | {header} |",
        "|---|" + "---|" * len(budgets),
    ]
    for name, tools in series.items():
        for field, label in (("success", "success"), ("tool_answered", "tool answered"), ("kept", "kept")):
            lines.append(f"| {name}: {label} | " + " | ".join(_fmt(i) for i in tools[field]) + " |")
    return lines + ["", "![tool success by budget](tools.png)", ""]


def plot_tool_success(series: dict[str, dict], budgets: list[float], path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=120)
    for offset, (name, tools) in enumerate(series.items()):
        shifted = [b * 1.03 ** (offset - (len(series) - 1) / 2) for b in budgets]  # side by side, bars apart
        _error_bars(axes, shifted, tools["success"], name)
    answered = [sum(t["tool_answered"][b]["mean"] for t in series.values()) / len(series) for b in range(len(budgets))]
    axes.plot(budgets, answered, "k:", label="tool answered (mean)")
    axes.set(xscale="log", xlabel="budget (s)", ylabel="success rate", ylim=(0, 1.02), title="Tool success (95% CI)")
    axes.set_xticks(budgets, [f"{b:g}" for b in budgets])
    axes.legend(loc="upper left", fontsize=8)
    _save(plt, figure, path)


def _error_bars(axes, xs: list[float], intervals: list[dict], label: str) -> None:
    """Means with their 95% intervals (none drawn for a single run)."""
    means = [c["mean"] for c in intervals]
    below = [c["mean"] - c["low"] if c["n"] > 1 else 0 for c in intervals]
    above = [c["high"] - c["mean"] if c["n"] > 1 else 0 for c in intervals]
    axes.errorbar(xs, means, yerr=[below, above], marker="o", capsize=3, label=label)


def _fmt(interval: dict) -> str:
    if interval["n"] == 0:
        return "n/a"
    if interval["n"] == 1 or interval["low"] != interval["low"]:  # NaN: one run has no interval
        return f"{interval['mean']:.3f}"
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def ablation_markdown(summary: dict) -> str:
    settings, variants = summary["settings"], summary["variants"]
    horizon = summary.get("horizon", settings["horizon"])
    reached = f" (asked {settings['horizon']}: the chains end sooner)" if horizon < settings["horizon"] else ""
    lines = [
        "# meqg eval: does the gate, does the ledger help?",
        "",
        f"Store `{settings['store']}`; chains: {settings['chains'] or 'held-out documents and relation paths'}; "
        f"{settings['seeds']} seed(s) per variant; each run may spend the compute of {settings['steps']} "
        f"ungated steps; horizon {horizon}{reached}, prefix {settings['prefix']}; "
        f"{FED[settings.get('snap', False)]}. Means with 95% t-intervals over seeds.",
        "",
        "## Kill-numbers",
        "",
    ]
    for kill in summary["kill_numbers"]:
        measured = f": measured {_fmt(kill['measured'])} ({kill['where']})" if "measured" in kill else ""
        gap = f"; ECE gap to no-gate {_fmt(kill['gap_to_no_gate'])}" if "gap_to_no_gate" in kill else ""
        gap += f"; absolute gain {_fmt(kill['absolute_gain'])}" if "absolute_gain" in kill else ""
        note = f" ({kill['note']})" if "note" in kill else ""
        lines.append(f"- **{kill['name']}** ({kill['claim']}){measured}{gap}: **{kill['verdict']}**{note}")
    lines += [
        "",
        "## Variants",
        "",
        f"| variant | steps | forwards | cascade-fail h=1 | cascade-fail h={horizon} | top-5 h={horizon} | "
        f"teacher-forced error h={horizon} | ECE | Brier | mean confidence | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in variants.items():
        lines.append(
            f"| {name} ({v['description']}) | {_fmt(v['steps'])} | {_fmt(v['forwards'])} | "
            f"{_fmt(v['cascade_fail'][0])} | {_fmt(v['cascade_fail'][-1])} | {_fmt(v['cascade_fail_top5'][-1])} | "
            f"{_fmt(v['teacher_forced_error'][-1])} | {_fmt(v['ece'])} | {_fmt(v['brier'])} | "
            f"{_fmt(v['mean_confidence'])} | {_fmt(v['accuracy'])} |"
        )
    lines += ["", "![cascade-fail by horizon](cascade.png)", "", "![reliability](reliability.png)", ""]
    series = variant_tool_series(summary)
    if series:
        lines += tool_markdown(series, settings["tool_budgets"], settings["tool_tasks"])
    return "\n".join(lines)


def write_ablation_report(out: str | Path, summary: dict) -> None:
    """report.json, report.md and the two PNGs into the eval's OUT, each replaced atomically."""
    import json

    from ..atomic import replaced_file, write_text

    out = Path(out)
    write_text(out / "report.json", json.dumps(summary, indent=1))
    write_text(out / "report.md", ablation_markdown(summary))
    for name, draw in (("cascade.png", plot_variant_cascade), ("reliability.png", plot_variant_reliability)):
        with replaced_file(out / name) as tmp:
            draw(summary, tmp)
    series = variant_tool_series(summary)
    if series:
        with replaced_file(out / "tools.png") as tmp:
            plot_tool_success(series, summary["settings"]["tool_budgets"], tmp)


def plot_variant_cascade(summary: dict, path: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=120)
    for offset, (name, v) in enumerate(summary["variants"].items()):
        horizons = [h + 1 + 0.06 * (offset - 2) for h in range(len(v["cascade_fail"]))]
        _error_bars(axes, horizons, v["cascade_fail"], name)
    axes.set(xlabel="horizon h", ylabel="cascade-fail rate", ylim=(0, 1.02), title="Cascade failure (95% CI)")
    axes.set_xticks(range(1, summary["settings"]["horizon"] + 1))
    axes.legend(loc="lower right", fontsize=8)
    _save(plt, figure, path)


def plot_variant_reliability(summary: dict, path: Path) -> None:
    plt = _pyplot()
    variants = summary["variants"]
    figure, grid = plt.subplots(1, len(variants), figsize=(2.6 * len(variants), 2.8), dpi=120, squeeze=False)
    for axes, (name, v) in zip(grid[0], variants.items()):
        _draw_reliability(axes, v["reliability"], labels=False)
        axes.set_title(f"{name}\nECE {_fmt(v['ece'])}", fontsize=8)
    grid[0][0].set_ylabel("accuracy")
    _save(plt, figure, path)


def read_report(directory: str | Path) -> dict:
    """A report directory's report.json and report.md, as `meqg eval` wrote them."""
    import json

    directory = Path(directory)
    try:
        summary = json.loads((directory / "report.json").read_text())
        markdown_text = (directory / "report.md").read_text()
    except FileNotFoundError as exc:
        raise InputError(f"{directory} holds no eval report ({Path(exc.filename).name} missing)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"corrupt eval report in {directory}: {str(exc).splitlines()[0]}") from None
    return {"directory": str(directory), "summary": summary, "markdown": markdown_text}


def find_reports(*roots: str | Path, depth: int = 3) -> list[Path]:
    """Report directories (with a report.json) at most `depth` levels under each root, newest first
    (then by path)."""
    found = set()
    for root in map(Path, roots):
        for level in range(depth + 1):
            found.update(p.parent for p in root.glob("/".join(["*"] * level + ["report.json"])))
    return sorted(found, key=lambda p: (-(p / "report.json").stat().st_mtime, str(p)))


def verdict_lines(summary: dict) -> list[tuple[str, str]]:
    """An ablation's kill-numbers as (line, verdict): met, not met, inconclusive or not measured (...)."""
    return [
        (f"{kill['name']}: {kill['verdict']} ({kill['claim']})", kill["verdict"])
        for kill in summary.get("kill_numbers", [])
    ]


def cascade_curves(summary: dict) -> dict[str, list[float]]:
    """Cascade failure by horizon: a run report's free-running, top-5 and teacher-forced curves, or
    each ablation variant's mean."""
    if "variants" in summary:
        return {name: [i["mean"] for i in v["cascade_fail"]] for name, v in summary["variants"].items()}
    return {
        "cascade-fail": summary["cascade_fail"],
        "top-5": summary["cascade_fail_top5"],
        "teacher-forced error": summary["teacher_forced_error"],
    }
