"""Real training on a small real store: the model beats both baselines; the gate contains a huge LR."""

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from meqg_mlx.config import MeqgConfig, TrainConfig
from meqg_mlx.vmm.model import ModelArgs
from meqg_mlx.diamond.gate import TRUST_FLOOR_RMS
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
            "baseline_mlp_steps": 50,
            **train,
        }
    )
    config.gate.trust_radius = 0.05
    return config


def test_gated_training_beats_copying_on_held_out_relations(small_store):
    trainer = Trainer(small_store, small_config())
    reports = [trainer.step() for _ in range(100)]
    assert sum(r.gate.accepted for r in reports) > 80
    first = np.mean([r.terms["S_ent"] for r in reports[:10]])
    assert np.mean([r.terms["S_ent"] for r in reports[-10:]]) < 0.8 * first
    validation = trainer.evaluate()
    for relation, table in validation.tables.items():
        print(relation, {name: {k: round(v, 3) for k, v in m.items()} for name, m in table.items()})
    model = validation.tables["next"]["model"]
    # at 100 steps, half of them relation walks, seed 0: each relation's recall@1 0 to +0.29 over copying
    # (0 on `uses`, 5 queries); on documents within +-0.03 of copying (148 queries), so that is printed only
    leads = [t["model"]["recall@1"] - t["copy_last"]["recall@1"] for r, t in validation.tables.items() if r != "next"]
    assert np.mean(leads) > 0.05 and min(leads) >= 0 and model["copy_rate"] < 1.0
    assert {"ridge", "knn_successor@8", "mlp", "transformer"} <= set(validation.tables["next"])
    assert "transformer" not in validation.tables["defined_in"]  # it reads documents: `next` alone
    assert {"contains", "defined_in", "describes"} <= set(validation.tables)  # every relation held out
    assert validation.candidates == len(trainer.table.ids)


def test_compiled_losses_read_each_batch_and_match_the_op_by_op_loss(small_store):
    """The compiled graphs take every array of a step as an input: a second batch (and a new kappa-hat)
    through the graph traced for the first gives that batch's loss and gradient, not the first's."""
    config = small_config()
    config.objective.lambda_kappa = 1.0
    trainer = Trainer(small_store, config)
    view, deltas = trainer.view, []
    for kappa in (0.0, 0.0, 2.0):
        trainer.kappa = kappa
        inputs, targets, mask, relations = trainer.draw_batch()  # documents or walks
        loss = trainer.loss_fn(inputs, targets, mask, mx.random.key(3), np.arange(128), relations)
        delta, s_mod = loss(trainer.model, view)
        (grad_delta, _), grads = loss.value_and_grad(view)
        reference = loss.evaluate(trainer.model, view)
        ref_grads = nn.value_and_grad(trainer.model, lambda m: loss.evaluate(m, view)[0])(trainer.model)[1]
        assert float(delta) == pytest.approx(float(reference[0]), rel=1e-5)
        assert float(grad_delta) == pytest.approx(float(reference[0]), rel=1e-5)
        assert float(s_mod) == pytest.approx(float(reference[1]), rel=1e-4, abs=1e-6)
        for (name, g), (_, r) in zip(tree_flatten(grads), tree_flatten(ref_grads)):
            assert np.allclose(np.array(g), np.array(r), rtol=1e-3, atol=1e-6), name
        deltas.append(float(delta))
        if kappa:  # the same batch again, kappa-hat priced in S_geo
            trainer.kappa = 0.0
            again = trainer.loss_fn(inputs, targets, mask, mx.random.key(3), negatives=np.arange(128))
            assert deltas[-1] - float(again(trainer.model, view)[0]) == pytest.approx(2.0, rel=1e-4)
    assert deltas[0] != deltas[1]
    assert trainer.compiled(view, gradient=True) is trainer.compiled(view, gradient=True)


def test_compiled_update_is_adamw_and_follows_the_learning_rate_scale(small_store):
    """apply_update (one compiled graph) takes AdamW's step on the clipped gradient, and a new
    learning-rate scale from the recovery policy reaches it (the trace would keep the old number)."""
    compiled, eager = Trainer(small_store, small_config()), Trainer(small_store, small_config())
    grads = tree_map(lambda w: mx.full(w.shape, 0.01), compiled.model.trainable_parameters())
    for scale in (1.0, 1.0, 0.25):
        compiled.recovery.lr_scale = eager.recovery.lr_scale = scale
        compiled.apply_update(grads)
        eager.optimizer.update(eager.model, optim.clip_grad_norm(grads, eager.config.train.grad_clip)[0])
        for (name, a), (_, b) in zip(tree_flatten(compiled.model.parameters()), tree_flatten(eager.model.parameters())):
            assert np.allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-7), (scale, name)
        assert float(compiled.optimizer.learning_rate) == pytest.approx(float(eager.optimizer.learning_rate))


def largest_weight(trainer):
    return max(float(mx.abs(v).max()) for _, v in tree_flatten(trainer.model.trainable_parameters()))


def trainable(trainer) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(trainer.model.trainable_parameters())}


def test_a_huge_learning_rate_is_contained_by_the_gate_and_diverges_without_it(small_store):
    """Each accepted step moves every array by at most its trust bound; each rejected one not at all."""
    huge = {"learning_rate": 100.0, "warmup_steps": 0, "grad_clip": 1e9, "steps": 8}
    gated = Trainer(small_store, small_config(**huge))
    start = largest_weight(gated)
    accepted = 0
    for _ in range(8):
        radius, before = gated.gate.trust_radius, trainable(gated)
        report = gated.step()
        after = trainable(gated)
        assert math.isfinite(report.terms["Delta"])
        for key in before:
            moved = np.linalg.norm(after[key] - before[key])
            if not report.gate.accepted:
                assert moved == 0, key
            else:
                bound = radius * max(np.linalg.norm(before[key]), TRUST_FLOOR_RMS * np.sqrt(before[key].size))
                assert moved <= bound * (1 + 1e-4), (key, moved, bound)
        accepted += report.gate.accepted
    assert accepted >= 2 and largest_weight(gated) < 2 * start

    ungated = Trainer(small_store, small_config(**huge, gate=False))
    reports = [ungated.step() for _ in range(8)]
    assert not math.isfinite(reports[-1].terms["Delta"]) or largest_weight(ungated) > 100 * start


def test_a_rejected_step_leaves_weights_rvq_codes_and_optimizer_state_bit_identical(small_store):
    trainer = Trainer(small_store, small_config(steps=4))
    trainer.step()  # an accepted step: the optimizer state is no longer empty
    trainer.gate.config.alpha = 1e6  # from here Armijo cannot hold
    params = {k: np.array(v) for k, v in tree_flatten(trainer.model.parameters())}
    state = {k: np.array(v) for k, v in tree_flatten(trainer.optimizer.state)}
    codes, next_code = np.array(trainer.codes), trainer.model.rvq.next_code_id
    report = trainer.step()
    assert not report.gate.accepted and report.gate.failed == "armijo"
    after = {k: np.array(v) for k, v in tree_flatten(trainer.model.parameters())}
    assert after.keys() == params.keys() and all(np.array_equal(params[k], after[k]) for k in params)
    after_state = {k: np.array(v) for k, v in tree_flatten(trainer.optimizer.state)}
    assert after_state.keys() == state.keys() and all(np.array_equal(state[k], after_state[k]) for k in state)
    assert np.array_equal(codes, np.array(trainer.codes)) and trainer.model.rvq.next_code_id == next_code
    assert len(state) > 2 and trainer.state.step == 2 and trainer.state.accepted == 1


def test_adaptive_gate_interval_doubles_to_its_cap_and_falls_back_to_every_step(small_store):
    """Gaps 2, 4, 4 while checks pass cleanly (check_interval 4 caps them); after a rejection, every step."""
    config = small_config(steps=18)
    config.gate.check_interval = 4
    trainer = Trainer(small_store, config)
    clean = [trainer.step() for _ in range(12)]
    assert [r.step for r in clean if r.gate is not None] == [1, 3, 7, 11]
    assert all(r.gate.accepted and r.gate.retries == 0 for r in clean if r.gate is not None)
    trainer.gate.config.alpha = 1e6  # from here Armijo cannot hold: every check rejects
    rejected = [trainer.step() for _ in range(6)]  # steps 13-18: the next check is due at 15
    assert [r.step for r in rejected if r.gate is not None] == [15, 16, 17, 18]
    assert not any(r.gate.accepted for r in rejected if r.gate is not None)
    assert all(math.isfinite(r.terms["Delta"]) for r in clean + rejected)


def test_compute_is_counted_in_forwards_and_gate_checks_cost_more(small_store):
    plain = Trainer(small_store, small_config(steps=3, gate=False))
    for _ in range(3):
        plain.step()
    assert plain.state.forwards == 3 * 3  # a forward and a backward (two forwards) per step
    gated = Trainer(small_store, small_config(steps=3))
    reports = [gated.step() for _ in range(3)]
    checks = sum(1 + r.gate.retries for r in reports)  # each candidate the gate looked at is one forward
    assert gated.state.forwards == 3 * 3 + checks


def test_training_stops_at_its_compute_budget(small_store_path, tmp_path):
    from meqg_mlx.train.run import TrainingRun

    config = small_config(steps=50, eval_every=0, checkpoint_every=0, phi_every=0, kappa_every=0)
    config.train.compute = 30.0
    summary = TrainingRun(tmp_path / "run", small_store_path, config).train()
    trainer_forwards = TrainingRun(tmp_path / "run", resume=True).trainer.state.forwards
    assert summary.step < 10 and trainer_forwards >= 30.0 and trainer_forwards - 30.0 < 3 + 2 * 4
