"""Real training on a small real store: the model beats both baselines; the gate contains a huge LR."""

import math

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from meqg_mlx.config import MeqgConfig, TrainConfig
from meqg_mlx.vmm.model import ModelArgs
from meqg_mlx.train.trainer import Trainer


def small_config(**train):
    config = MeqgConfig()
    config.vmm = ModelArgs(
        d_model=64,
        n_layers=2,
        d_state=16,
        expand=2,
        head_dim=32,
        chunk_size=16,
        n_experts=4,
        d_ff=128,
        top_k=2,
        rvq_levels=2,
        rvq_codes=16,
    )
    config.train = TrainConfig(
        **{
            "steps": 100,
            "batch_size": 8,
            "seq_len": 16,
            "learning_rate": 1e-3,
            "store_negatives": 128,
            "rvq_fit_steps": 10,
            "validation_windows": 256,
            "validation_fraction": 0.2,
            **train,
        }
    )
    config.gate.trust_radius = 0.05
    return config


def test_gated_training_beats_both_baselines_on_held_out_documents(small_store):
    trainer = Trainer(small_store, small_config())
    reports = [trainer.step() for _ in range(100)]
    assert sum(r.gate.accepted for r in reports) > 80
    first = np.mean([r.terms["S_ent"] for r in reports[:10]])
    assert np.mean([r.terms["S_ent"] for r in reports[-10:]]) < 0.8 * first
    metrics = trainer.evaluate()
    print({name: {k: round(v, 3) for k, v in m.items()} for name, m in metrics.items()})
    model, baselines = metrics["model"], [metrics["repeat_last"], metrics["nearest_neighbour"]]
    assert all(model["l2"] < b["l2"] - 0.03 for b in baselines)
    # deterministic since signatures lost their memory addresses (the store differed per process):
    # model 0.196 recall@1 / 0.541 recall@10 against the best baseline's 0.135 / 0.514
    assert all(model["recall@1"] > b["recall@1"] + 0.01 for b in baselines)
    # thin margins here on ~300 held-out transitions; they must at least not lose
    assert all(model["contrastive_accuracy"] > b["contrastive_accuracy"] - 0.01 for b in baselines)
    assert all(model["recall@10"] > b["recall@10"] - 0.02 for b in baselines)


def largest_weight(trainer):
    return max(float(mx.abs(v).max()) for _, v in tree_flatten(trainer.model.trainable_parameters()))


def test_a_huge_learning_rate_is_contained_by_the_gate_and_diverges_without_it(small_store):
    huge = {"learning_rate": 100.0, "warmup_steps": 0, "grad_clip": 1e9, "steps": 8}
    gated = Trainer(small_store, small_config(**huge))
    start = largest_weight(gated)
    reports = [gated.step() for _ in range(8)]
    assert all(math.isfinite(r.terms["Delta"]) for r in reports)
    assert largest_weight(gated) < 2 * start
    radius = max(r.gate.trust_radius for r in reports)
    assert all(not r.gate.accepted or r.gate.trust for r in reports) and radius <= 0.5

    ungated = Trainer(small_store, small_config(**huge, gate=False))
    reports = [ungated.step() for _ in range(8)]
    assert not math.isfinite(reports[-1].terms["Delta"]) or largest_weight(ungated) > 100 * start


def test_adaptive_gate_interval_checks_less_often_after_clean_accepts(small_store):
    config = small_config(steps=16)
    config.gate.check_interval = 4
    trainer = Trainer(small_store, config)
    reports = [trainer.step() for _ in range(16)]
    checked = [r.step for r in reports if r.gate is not None]
    assert checked[:3] == [1, 3, 7] and 4 <= len(checked) < 16  # gaps 2, 4, then at most 4
    assert all(math.isfinite(r.terms["Delta"]) for r in reports)
