"""Gated training of the VMM on concept sequences from a store.

Each step: a batch of next-concept windows; Delta = S_geo + S_ent + lambda_mod * S_mod
with S_mod the ledger's Monte-Carlo estimate on the planner at a few positions
(its gradient by the score function, same random numbers for the gate's before and
after evaluations); the step goes through the Null-Stability Gate unless disabled.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from ..concepts.kmeans import spherical_kmeans
from ..concepts.store import ConceptStore
from ..config import MeqgConfig
from ..diamond.gate import GateDecision, NullStabilityGate
from ..diamond.ledger import block_logprob_mc, sample_codes
from ..diamond.objective import Objective
from ..diamond.view import View
from ..vmm.model import VMM
from .metrics import nearest_neighbour_baseline, next_concept_metrics
from .sequences import documents, split_documents, windows


@dataclass
class StepReport:
    step: int
    terms: dict[str, float]
    gate: GateDecision | None
    lr: float
    expert_load: list[int]
    seconds: float


@dataclass
class TrainState:
    step: int = 0
    accepted: int = 0
    history: list[StepReport] = field(default_factory=list)


class Trainer:
    def __init__(self, store: ConceptStore, config: MeqgConfig):
        self.store, self.config = store, config
        tc = config.train
        self.rng = np.random.default_rng(tc.seed)
        mx.random.seed(tc.seed)
        ids, vectors = store.all_vectors()
        order = np.argsort(ids)
        self.ids, self.vectors = ids[order], vectors[order]
        self.row_of = np.full(int(self.ids.max()) + 2, -1, dtype=np.int64)
        self.row_of[self.ids] = np.arange(len(self.ids))
        self.matrix = mx.array(np.concatenate([self.vectors, np.zeros((1, store.dim), np.float32)]))
        self.args = dataclasses.replace(config.vmm, concept_dim=store.dim)
        self.model = VMM(self.args)
        self._fit_rvq(tc.rvq_fit_steps)
        self._set_experts()
        self.train_docs, self.val_docs = split_documents(documents(store), tc.validation_fraction)
        schedule = optim.join_schedules([optim.linear_schedule(1e-7, tc.learning_rate, tc.warmup_steps),
                                         optim.cosine_decay(tc.learning_rate, max(tc.steps, 1))],
                                        [tc.warmup_steps])
        self.optimizer = optim.AdamW(learning_rate=schedule, weight_decay=tc.weight_decay)
        self.optimizer.init(self.model.trainable_parameters())
        self.objective = Objective(config.objective, self.args, temperature=tc.temperature)
        self.gate = NullStabilityGate(config.gate) if tc.gate else None
        self.view = View.finest(self.args.rvq_levels)
        self.state = TrainState()

    def _fit_rvq(self, steps: int) -> None:
        data = mx.array(self.vectors)
        for step in range(steps):
            rows = self.rng.choice(len(self.vectors), min(4096, len(self.vectors)), replace=False)
            self.model.rvq.update(data[mx.array(rows)], seed=step)
        self.refresh_codes()

    def refresh_codes(self) -> None:
        """RVQ codes of every store concept (plus a padding row), the planner's targets."""
        codes, _ = self.model.rvq.encode(mx.array(self.vectors))
        self.codes = mx.concatenate([codes, mx.zeros((1, self.args.rvq_levels), dtype=codes.dtype)])

    def _set_experts(self) -> None:
        centroids = self.store.domain_centroids()
        if centroids is None or len(centroids) < self.args.n_experts:
            return
        self.model.set_expert_centroids(mx.array(spherical_kmeans(centroids, self.args.n_experts, seed=0)))

    def batch(self, docs, count: int):
        ids = windows(docs, self.config.train.seq_len, self.rng, count)
        rows = np.where(ids >= 0, self.row_of[np.maximum(ids, 0)], len(self.ids))
        inputs, targets = mx.array(rows[:, :-1]), mx.array(rows[:, 1:])
        mask = mx.array(((rows[:, :-1] < len(self.ids)) & (rows[:, 1:] < len(self.ids))).astype(np.float32))
        return inputs, targets, mask

    def loss_fn(self, inputs, targets, mask, key) -> Callable:
        tc = self.config.train
        negatives = mx.array(self.rng.choice(len(self.ids), tc.store_negatives, replace=False))

        def loss(model: VMM, view: View):
            out = model(self.matrix[inputs])
            flat_mask = mask.reshape(-1)
            codes = self.codes[targets].reshape(-1, self.args.rvq_levels)
            planner_logits = model.planner(out.hidden, self.codes[targets])
            s_mod_value, surrogate = self._ledger(model, out.hidden, mask, view, key)
            terms = self.objective(
                out.next_vector.reshape(-1, self.args.concept_dim),
                self.matrix[targets].reshape(-1, self.args.concept_dim), self.matrix[negatives],
                planner_logits.reshape(-1, *planner_logits.shape[-2:]), codes,
                sum(s.balance_loss for s in out.router) / len(out.router),
                s_mod_value + surrogate - mx.stop_gradient(surrogate), mask=flat_mask)
            self._last = (terms, out.router)
            return terms.delta, s_mod_value

        return loss

    def _ledger(self, model: VMM, hidden, mask, view: View, key):
        """Monte-Carlo S_mod of the planner at a few valid positions, and its score-function surrogate."""
        tc = self.config.train
        positions = np.flatnonzero(np.array(mask).reshape(-1))[:tc.ledger_positions]
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])
        values, surrogates = [], []
        position_keys = mx.random.split(key, max(len(positions), 1))
        for position, position_key in zip(positions, position_keys):
            dist = model.planner.distribution(mx.stop_gradient(flat_hidden[int(position)]))
            k_sample, *k_blocks = mx.random.split(position_key, 1 + view.size)
            z, logq = sample_codes(dist, tc.ledger_samples, k_sample)
            blocks = sum(block_logprob_mc(dist, z, b, tc.ledger_inner, k) for b, k in zip(view.blocks, k_blocks))
            f = mx.stop_gradient(logq - blocks)
            h = mx.broadcast_to(flat_hidden[int(position)], (z.shape[0], flat_hidden.shape[-1]))
            logits = model.planner(h, z)
            logq_grad = (mx.take_along_axis(logits - mx.logsumexp(logits, axis=-1, keepdims=True),
                                            z[..., None], axis=-1)[..., 0]).sum(-1)
            values.append(mx.maximum(f.mean(), 0.0))
            surrogates.append(((f - f.mean()) * logq_grad).mean())
        if not values:
            return mx.array(0.0), mx.array(0.0)
        return mx.stack(values).mean(), mx.stack(surrogates).mean()

    def step(self) -> StepReport:
        tc = self.config.train
        started = time.perf_counter()
        inputs, targets, mask = self.batch(self.train_docs, tc.batch_size)
        key = mx.random.key(int(self.rng.integers(2**31)))
        loss = self.loss_fn(inputs, targets, mask, key)
        lr = float(self.optimizer.learning_rate)
        if self.gate is not None:
            decision = self.gate.step(self.model, self.optimizer, loss, self.view, tc.grad_clip)
            self.state.accepted += decision.accepted
        else:
            decision = None
            _, grads = nn.value_and_grad(self.model, lambda m: loss(m, self.view))(self.model)
            self.optimizer.update(self.model, optim.clip_grad_norm(grads, tc.grad_clip)[0])
            self.state.accepted += 1
        loss(self.model, self.view)  # the terms and expert load of the weights this step ends with
        terms, router = self._last
        load = np.sum([np.array(s.load) for s in router], axis=0).astype(int).tolist()
        self.state.step += 1
        report = StepReport(self.state.step, terms.report(), decision, lr, load, time.perf_counter() - started)
        self.state.history.append(report)
        return report

    def evaluate(self) -> dict[str, dict[str, float]]:
        """LCM metrics on validation documents for the model and the two baselines."""
        tc = self.config.train
        inputs, targets, mask = self.batch(self.val_docs, tc.validation_windows)
        valid = np.array(mask).reshape(-1) > 0
        current = np.array(self.matrix[inputs]).reshape(-1, self.args.concept_dim)[valid]
        target = np.array(self.matrix[targets]).reshape(-1, self.args.concept_dim)[valid]
        current_ids = self.ids[np.array(inputs).reshape(-1)[valid]]
        target_ids = self.ids[np.array(targets).reshape(-1)[valid]]
        predicted = np.array(self.model(self.matrix[inputs]).next_vector).reshape(-1, self.args.concept_dim)[valid]
        neighbour = nearest_neighbour_baseline(current, current_ids, self.ids, self.vectors)
        return {name: next_concept_metrics(p, target, target_ids, self.ids, self.vectors)
                for name, p in (("model", predicted), ("repeat_last", current), ("nearest_neighbour", neighbour))}
