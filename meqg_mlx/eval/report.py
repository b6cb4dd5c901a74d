"""An evaluation's files: report.json (every number), report.md (what a reader looks at first) and
PNGs (cascade failure against horizon, the reliability diagram), written atomically into --out."""

from __future__ import annotations

from pathlib import Path

from ..atomic import replaced_dir
from ..errors import InputError
from .evaluate import ChainReport

FILES = ("report.json", "report.md", "cascade.png", "reliability.png")


def check_new_output(out: str | Path) -> None:
    """Reports go to a new directory: nothing already there is ever overwritten."""
    if Path(out).exists():
        raise InputError(f"{out} exists: choose a new --out directory")


def write_run_report(out: str | Path, run: str | Path, report: ChainReport, chains: str) -> Path:
    """Write one run's report into `out`, which must not exist yet."""
    import json

    out = Path(out)
    check_new_output(out)
    with replaced_dir(out) as tmp:
        data = {"run": str(run), "chains": chains, **report.as_dict()}
        (tmp / "report.json").write_text(json.dumps(data, indent=1))
        (tmp / "report.md").write_text(markdown(run, report, chains))
        plot_cascade(report, tmp / "cascade.png")
        plot_reliability(report, tmp / "reliability.png")
    return out


def markdown(run: str | Path, report: ChainReport, chains: str) -> str:
    rows = [
        f"| {h} | {report.cascade_fail[h - 1]:.3f} | {report.cascade_fail_top5[h - 1]:.3f} | "
        f"{report.free_running_error[h - 1]:.3f} | {report.teacher_forced_error[h - 1]:.3f} | "
        f"{report.ece[h - 1]:.3f} | {report.brier[h - 1]:.3f} |"
        for h in range(1, len(report.cascade_fail) + 1)
    ]
    return "\n".join(
        [
            f"# meqg eval: {run}",
            "",
            f"Chains: {chains}; {report.chains} test chains, {report.calibration_chains} for calibration "
            f"(softmax temperature {report.temperature:.4g}, fitted teacher-forced on those only).",
            "",
            "| horizon h | cascade-fail | cascade-fail (top-5) | free-running error at h | "
            "teacher-forced error at h | ECE (steps 1..h) | Brier (steps 1..h) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Cascade-fail at h: the share of chains with a wrong step among their first h (free-running).",
            "The gap between the free-running and the teacher-forced error at h is what feeding the model",
            "its own predictions costs.",
            "",
            "![cascade](cascade.png) ![reliability](reliability.png)",
            "",
        ]
    )


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(figsize=(5.5, 4), dpi=120)


def plot_cascade(report: ChainReport, path: Path) -> None:
    plt, (figure, axes) = _figure()
    horizons = range(1, len(report.cascade_fail) + 1)
    axes.plot(horizons, report.cascade_fail, "o-", label="cascade-fail (free-running)")
    axes.plot(horizons, report.cascade_fail_top5, "s--", label="cascade-fail, top-5")
    axes.plot(horizons, report.teacher_forced_error, "^:", label="teacher-forced error at h")
    axes.set(xlabel="horizon h", ylabel="rate", ylim=(0, 1.02), title="Chains: failure by horizon")
    axes.set_xticks(list(horizons))
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_reliability(report: ChainReport, path: Path) -> None:
    plt, (figure, axes) = _figure()
    diagram = report.reliability
    edges = diagram["edges"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    accuracy = [a if c else 0.0 for a, c in zip(diagram["accuracy"], diagram["count"])]
    axes.bar(centres, accuracy, width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
    axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    axes.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    axes.set_title(f"Reliability (free-running), ECE {report.ece[-1]:.3f}")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
