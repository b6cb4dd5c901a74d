"""One run's multi-step numbers: cascade failure against teacher-forced error, and calibration.

The chains are split by name into a calibration half (teacher-forced, where the
softmax temperature is fitted) and a test half (where everything is reported), so
the confidence is never tuned on the steps it is scored on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .chains import Candidates, Chain, Predict, Rollout, calibration_split, rollout
from .metrics import ECE_BINS, brier, cascade_fail, fit_temperature, reliability

DEFAULT_HORIZON = 8
DEFAULT_PREFIX = 1


@dataclass
class ChainReport:
    chains: int
    calibration_chains: int
    temperature: float
    mean_confidence: float  # free-running, all steps: beside the accuracy, whether the confidence says anything
    accuracy: float  # free-running, all steps
    cascade_fail: list[float]  # free-running, per horizon 1..H
    cascade_fail_top5: list[float]  # the same with "right" meaning the truth is among the 5 nearest
    teacher_forced_error: list[float]  # per step index, from true inputs
    free_running_error: list[float]  # per step index, from the model's own inputs
    ece: list[float]  # free-running, over steps 1..h
    brier: list[float]
    ece_per_step: list[float]  # free-running, at step h alone
    brier_per_step: list[float]
    reliability: dict  # all free-running steps: edges, confidence, accuracy, count
    # the baselines rolled out the same way on the same test chains: name -> cascade-fail per horizon
    baselines: dict[str, list[float]] = field(default_factory=dict)
    snap: bool = False  # free-running steps were fed the concept they decode to, not the vector

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def per_step_error(result: Rollout) -> list[float]:
    valid = result.valid()
    reached = valid.sum(axis=0)
    wrong = (valid & ~result.correct).sum(axis=0)
    return [float(w / r) if r else float("nan") for w, r in zip(wrong, reached)]


def evaluate_chains(
    predict: Predict, candidates: Candidates, chains: list[Chain], prefix: int = DEFAULT_PREFIX, snap: bool = False
) -> ChainReport:
    """Calibrated on one half of the chains, reported on the other (free-running as `chains.rollout`'s `snap`)."""
    calibration, test = calibration_split([c for c in chains if len(c.rows) > prefix])
    if not calibration or not test:
        raise InputError(
            f"{len(chains)} chains are too few to hold some out for calibrating the confidence: give at least 4"
        )
    temperature = fit_temperature(*rollout(predict, candidates, calibration, prefix, True).calibration_scores())
    free = rollout(predict, candidates, test, prefix, teacher_forced=False, snap=snap)
    forced = rollout(predict, candidates, test, prefix, teacher_forced=True)
    valid = free.valid()
    confidence = free.confidence(temperature)
    ece, brier_scores, ece_step, brier_step = [], [], [], []
    for horizon in range(1, valid.shape[1] + 1):
        upto, at = valid[:, :horizon], valid[:, horizon - 1]
        ece.append(reliability(confidence[:, :horizon][upto], free.correct[:, :horizon][upto]).ece)
        brier_scores.append(brier(confidence[:, :horizon][upto], free.correct[:, :horizon][upto]))
        ece_step.append(reliability(confidence[at, horizon - 1], free.correct[at, horizon - 1]).ece)
        brier_step.append(brier(confidence[at, horizon - 1], free.correct[at, horizon - 1]))
    diagram = reliability(confidence[valid], free.correct[valid], ECE_BINS)
    return ChainReport(
        chains=len(test),
        calibration_chains=len(calibration),
        temperature=temperature,
        mean_confidence=float(confidence[valid].mean()),
        accuracy=float(free.correct[valid].mean()),
        cascade_fail=cascade_fail(free.correct, free.lengths).tolist(),
        cascade_fail_top5=cascade_fail(free.in_top_k, free.lengths).tolist(),
        teacher_forced_error=per_step_error(forced),
        free_running_error=per_step_error(free),
        ece=ece,
        brier=brier_scores,
        ece_per_step=ece_step,
        brier_per_step=brier_step,
        reliability={k: getattr(diagram, k).tolist() for k in ("edges", "confidence", "accuracy", "count")},
        snap=snap,
    )


def baseline_cascades(
    predictors: dict[str, Predict],
    candidates: Candidates,
    chains: list[Chain],
    prefix: int = DEFAULT_PREFIX,
    snap: bool = False,
) -> dict[str, list[float]]:
    """Each baseline's free-running cascade-fail on `evaluate_chains`' test chains."""
    _, test = calibration_split([c for c in chains if len(c.rows) > prefix])
    cascades = {}
    for name, predict in predictors.items():
        free = rollout(predict, candidates, test, prefix, teacher_forced=False, snap=snap)
        cascades[name] = cascade_fail(free.correct, free.lengths).tolist()
    return cascades


def baseline_predictors(trained, relations: set[int]) -> dict[str, Predict]:
    """The validation tables' baselines as rollout predictors: each reads the last concept of its context
    (its own previous prediction, free-running) and applies the map fitted on what the run trained on for
    the relation that step follows (`train.baselines.fit_maps`; copy where the run trained on none). The
    transformer (`train.base_lcm`, fitted at the run's budget on its training documents) reads the whole
    context at `next` steps, and copies at the others."""
    from ..train.base_lcm import Budget, fit_base_lcm
    from ..train.baselines import Pairs, fit_maps, unit

    vectors, edges, tc = trained.table.vectors, trained.training_edges, trained.config.train
    fitted = {}
    for relation in sorted(relations):
        pairs = edges.of(relation)
        if len(pairs):
            fitted[relation] = fit_maps(vectors, Pairs(pairs.source, pairs.target), tc.baseline_mlp_steps, tc.seed)

    def mapped(name: str) -> Predict:
        def predict(context: np.ndarray, followed: np.ndarray) -> np.ndarray:
            current = context[:, -1].astype(np.float32)
            out = current.copy()
            for relation, maps in fitted.items():
                at = followed[:, -1] == relation
                if at.any():
                    out[at] = maps[name](current[at])
            return out

        return predict

    names = next(iter(fitted.values())).keys() if fitted else ()
    predictors = {
        "copy_last": lambda context, followed: context[:, -1],
        "context_mean": lambda context, followed: unit(context.sum(1)),
        **{name: mapped(name) for name in names},
    }
    if 0 in relations and trained.split.train_docs:
        lcm = fit_base_lcm(trained.table, trained.split.train_docs, Budget.of(trained.config), tc.seed)

        def transformer(context: np.ndarray, followed: np.ndarray) -> np.ndarray:
            out = context[:, -1].astype(np.float32)
            at = followed[:, -1] == 0
            if at.any():
                out[at] = lcm.last(context[at])
            return out

        predictors["transformer"] = transformer
    return predictors


def evaluate_run(
    run_dir: str | Path,
    chains_file: str | Path | None = None,
    horizon: int = DEFAULT_HORIZON,
    prefix: int = DEFAULT_PREFIX,
    embedder=None,
    snap: bool = False,
    store_path: str | Path | None = None,
) -> ChainReport:
    """The run's latest checkpoint on held-out chains of its store (or the file's chains); `snap` feeds
    each free-running step the concept it decodes to; `store_path`: the run's store, moved."""
    from ..encoder import embedder_from_config
    from ..trained import TrainedRun
    from .tasks import file_chains, held_out_chains, store_candidates

    if horizon < 1 or prefix < 1:
        raise InputError(f"horizon and prefix must be at least 1, got {horizon} and {prefix}")
    trained = TrainedRun.open(run_dir, store_path=store_path)
    store, table, vocabulary = trained.store, trained.table, trained.vocabulary
    candidates = store_candidates(store, table)
    if chains_file is not None:
        embedder = embedder or embedder_from_config(trained.config)
        chains, candidates = file_chains(chains_file, candidates, embedder, vocabulary)
    else:
        validation_fraction = trained.config.train.validation_fraction
        chains = held_out_chains(store, table, validation_fraction, prefix + horizon, vocabulary)
    report = evaluate_chains(trained.next_vectors, candidates, chains, prefix, snap)
    report.baselines = cached_baseline_cascades(trained, candidates, chains, prefix, snap)
    return report


def cached_baseline_cascades(trained, candidates: Candidates, chains: list[Chain], prefix: int, snap: bool) -> dict:
    """`baseline_cascades` of a run's chains, kept per store version, split and chains (the variants and
    seeds of an ablation share them)."""
    import hashlib
    import json

    from ..atomic import write_text
    from ..paths import meqg_home
    from ..train.base_lcm import Budget
    from ..train.validation import cache_path

    digest = hashlib.sha1(str(len(candidates.vectors)).encode())
    for chain in chains:
        digest.update(chain.rows.tobytes() + b"|" + np.asarray(chain.relations, np.int64).tobytes() + b";")
    tc = trained.config.train
    key = {
        "store": trained.store.uri,
        "table_version": trained.store.table.version,
        "relations": list(trained.vocabulary.names),
        "validation_fraction": tc.validation_fraction,
        "chains": digest.hexdigest(),
        "prefix": prefix,
        "snap": snap,
        "mlp_steps": tc.baseline_mlp_steps,
        "transformer": asdict(Budget.of(trained.config)),
        "seed": tc.seed,
    }
    path = cache_path(meqg_home() / "cache", "chain-baselines", key).with_suffix(".json")
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # a damaged entry is recomputed and replaced
    followed = {int(r) for chain in chains for r in chain.relations}
    cascades = baseline_cascades(baseline_predictors(trained, followed), candidates, chains, prefix, snap)
    write_text(path, json.dumps(cascades))
    return cascades
