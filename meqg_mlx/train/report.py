"""What a training run tells its user, as text: a progress line per step and the closing summary with
the validation tables. Both engines print these (`meqg train`, and rank 0 under `--engine torch`), so a
run reads the same whichever trained it."""

from __future__ import annotations

from ..telemetry import step_loss

COLUMNS = (  # (metric, header, better): what each validation column says and which way is better
    ("recall@1", "r@1", "high"),
    ("recall@10", "r@10", "high"),
    ("mrr", "mrr", "high"),
    ("l2", "l2", "low"),
    ("contrastive_accuracy", "CA", "high"),
    ("par", "PAR", "low"),
    ("copy_rate", "copy", "low"),
)


def progress_line(record: dict) -> str:
    """A step record (`TrainingRun.train`'s on_step) in one line."""
    objective, phi, gate = record["objective"], record["phi"], record["gate"]
    decision = "" if gate is None else (" ok" if gate["accepted"] else f" rejected:{gate['failed']}")
    return (
        f"loss {step_loss(record):.3f} "
        f"Delta {objective['Delta']:.3f} accept {record['accept_rate']:.0%}{decision} "
        f"Phi {'n/a' if phi is None else f'{phi:.2f}'} {record['regime'] or '-'} "
        f"{record['throughput']:.0f} concepts/s"
    )


def summary_lines(summary) -> list[str]:
    """A `RunSummary`: how the run ended, then its last validation tables."""
    state = "stopped" if summary.interrupted else "finished"
    lines = [
        f"{summary.run_dir}: {state} at step {summary.step}, {summary.accepted} steps accepted, "
        f"{summary.seconds:.0f} s; checkpoint in {summary.run_dir / 'checkpoints'}"
    ]
    return lines + (validation_lines(summary.validation) if summary.validation else [])


def validation_lines(validation) -> list[str]:
    """One table per relation (model first, then the baselines), and the model against the best baseline."""
    lines = [
        f"validation on held-out concepts; {validation.candidates:,} candidates (the context excluded); "
        + ", ".join(f"{header} {'higher' if better == 'high' else 'lower'} is better" for _, header, better in COLUMNS)
    ]
    for relation, table in validation.tables.items():
        lines.append(f"{relation:<21}" + "".join(f"{header:>8}" for _, header, _ in COLUMNS))
        for method, values in table.items():
            lines.append(f"  {method:<19}" + "".join(f"{values[name]:>8.3f}" for name, _, _ in COLUMNS))
        versus = validation.versus.get(relation)
        if versus:
            lines.append(
                f"  model - {versus['baseline']} recall@1: {versus['recall@1']:+.3f} "
                f"(95% paired bootstrap {versus['low']:+.3f} to {versus['high']:+.3f})"
            )
    return lines
