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
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..concepts.kmeans import spherical_kmeans
from ..concepts.store import ConceptStore
from ..config import MeqgConfig
from ..diamond.gate import GateDecision, NullStabilityGate, all_finite, copy_tree
from ..diamond.ledger import block_logprob_mc, phi_mc, sample_codes
from ..diamond.objective import Objective
from ..diamond.view import View
from ..vmm.model import VMM
from .curvature import top_hessian_eigenvalue
from .metrics import nearest_neighbour_baseline, next_concept_metrics
from .regime import RecoveryPolicy
from .sequences import documents, split_documents, tiled_windows, windows


@dataclass
class StepReport:
    step: int
    terms: dict[str, float]
    gate: GateDecision | None
    lr: float
    expert_load: list[int]
    router_entropy: float
    tokens: int
    seconds: float


@dataclass
class TrainState:
    step: int = 0
    accepted: int = 0


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
        self.validation_ids = self._validation_windows()
        schedule = optim.cosine_decay(tc.learning_rate, max(tc.steps, 1))
        if tc.warmup_steps > 0:
            schedule = optim.join_schedules(
                [optim.linear_schedule(1e-7, tc.learning_rate, tc.warmup_steps), schedule], [tc.warmup_steps]
            )
        self.recovery = RecoveryPolicy(config.regime)
        self.optimizer = optim.AdamW(
            learning_rate=lambda step: self.recovery.lr_scale * schedule(step), weight_decay=tc.weight_decay
        )
        self.optimizer.init(self.model.trainable_parameters())
        self.objective = Objective(config.objective, self.args, temperature=tc.temperature)
        self.gate = NullStabilityGate(config.gate) if tc.gate else None
        self.view = View.finest(self.args.rvq_levels)
        self.state = TrainState()
        self.kappa = 0.0  # the last kappa-hat measured (S_geo prices it when lambda_kappa > 0)
        self._gate_gap, self._next_check = 1, 0

    def state_dict(self) -> dict:
        """What an exact resume needs besides weights and optimizer state (JSON-able; checkpoints store it)."""
        return {
            "step": self.state.step,
            "accepted": self.state.accepted,
            "rng": self.rng.bit_generator.state,
            "next_code_id": self.model.rvq.next_code_id,
            "trust_radius": self.gate.trust_radius if self.gate else None,
            "recovery": self.recovery.state(),
            "kappa": self.kappa,
            "gate_schedule": [self._gate_gap, self._next_check],
            "stable": self.recovery.regime != "breakdown",
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.recovery.load_state(state["recovery"])
        self.kappa = state["kappa"]
        self._gate_gap, self._next_check = state["gate_schedule"]
        self.model.rvq.next_code_id = state["next_code_id"]
        if self.gate and state["trust_radius"] is not None:
            self.gate.trust_radius = state["trust_radius"]
        self.state.step, self.state.accepted = state["step"], state["accepted"]
        self.refresh_codes()

    def _fit_rvq(self, steps: int) -> None:
        data = mx.array(self.vectors)
        self.model.rvq.initialize(data, seed=self.config.train.seed)
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
        return self._rows(windows(docs, self.config.train.seq_len, self.rng, count))

    def _validation_windows(self) -> np.ndarray:
        """The same validation windows at every evaluation: up to `validation_windows` of the tiled
        validation documents, picked by the seed (evaluating never advances the training RNG)."""
        tc = self.config.train
        ids = tiled_windows(self.val_docs, tc.seq_len)
        if len(ids) > tc.validation_windows:
            ids = ids[np.sort(np.random.default_rng(tc.seed).choice(len(ids), tc.validation_windows, replace=False))]
        return ids

    def _rows(self, ids: np.ndarray):
        rows = np.where(ids >= 0, self.row_of[np.maximum(ids, 0)], len(self.ids))
        inputs, targets = mx.array(rows[:, :-1]), mx.array(rows[:, 1:])
        mask = mx.array(((rows[:, :-1] < len(self.ids)) & (rows[:, 1:] < len(self.ids))).astype(np.float32))
        return inputs, targets, mask

    @staticmethod
    def seen(inputs: mx.array) -> mx.array:
        """(B, T, T) rows of the concepts seen up to each position (-1 after it): never the next one."""
        steps = inputs.shape[1]
        causal = mx.arange(steps)[None, :] <= mx.arange(steps)[:, None]
        return mx.where(causal[None], inputs[:, None, :], -1)

    def loss_fn(self, inputs, targets, mask, key) -> Callable:
        tc = self.config.train
        negatives = mx.array(self.rng.choice(len(self.ids), tc.store_negatives, replace=False))
        candidates = mx.concatenate([targets.reshape(-1), negatives])
        own = mx.arange(candidates.shape[0])[None] == mx.arange(targets.size)[:, None]
        seen = self.seen(inputs).reshape(targets.size, -1)
        excluded = (candidates[None, :, None] == seen[:, None, :]).any(-1) | (
            (candidates[None] == targets.reshape(-1, 1)) & ~own
        )

        def loss(model: VMM, view: View):
            out = model(self.matrix[inputs])
            flat_mask = mask.reshape(-1)
            codes = self.codes[targets].reshape(-1, self.args.rvq_levels)
            planner_logits = model.planner(out.hidden, self.codes[targets])
            s_mod_value, surrogate = self._ledger(model, out.hidden, mask, view, key)
            terms = self.objective(
                out.next_vector.reshape(-1, self.args.concept_dim),
                self.matrix[targets].reshape(-1, self.args.concept_dim),
                self.matrix[negatives],
                planner_logits.reshape(-1, *planner_logits.shape[-2:]),
                codes,
                sum(s.balance_loss for s in out.router) / len(out.router),
                s_mod_value + surrogate - mx.stop_gradient(surrogate),
                mask=flat_mask,
                excluded=excluded,
                kappa=self.kappa,
            )
            self._last = (terms, out.router)
            return terms.delta, s_mod_value

        return loss

    @staticmethod
    def _valid_positions(mask: mx.array, count: int) -> np.ndarray:
        """The first `count` unpadded positions of a batch (flat indices): where the ledger looks."""
        return np.flatnonzero(np.array(mask).reshape(-1))[:count]

    def _ledger(self, model: VMM, hidden, mask, view: View, key):
        """Monte-Carlo S_mod of the planner at a few valid positions, and its score-function surrogate."""
        tc = self.config.train
        positions = self._valid_positions(mask, tc.ledger_positions)
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
            logq_grad = (
                mx.take_along_axis(logits - mx.logsumexp(logits, axis=-1, keepdims=True), z[..., None], axis=-1)[..., 0]
            ).sum(-1)
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
        self._last_batch, self._last_loss = (inputs, targets, mask), loss
        lr = float(self.optimizer.learning_rate)
        started_terms = []

        def recorded(model, view):
            out = loss(model, view)
            started_terms.append(self._last)
            return out

        if self._gate_due():
            decision = self.gate.step(self.model, self.optimizer, recorded, self.view, tc.grad_clip)
            self._gate_checked(decision)
        else:
            decision = None
            self._plain_step(recorded)
        self.state.accepted += decision.accepted if decision else 1
        terms, router = started_terms[0]  # this batch at the weights the step started from
        load = np.sum([np.array(s.load) for s in router], axis=0).astype(int).tolist()
        entropy = float(np.mean([float(s.entropy) for s in router]))
        self.state.step += 1
        report = StepReport(
            self.state.step,
            terms.report(),
            decision,
            lr,
            load,
            entropy,
            int(mask.sum().item()),
            time.perf_counter() - started,
        )
        return report

    def _gate_due(self) -> bool:
        """Adaptive gate interval: the gap between checks doubles after each clean accept, up to
        gate.check_interval, and falls back to 1 after any backtrack or rejection."""
        return self.gate is not None and self.state.step >= self._next_check

    def _gate_checked(self, decision: GateDecision) -> None:
        clean = decision.accepted and decision.retries == 0
        self._gate_gap = min(2 * self._gate_gap, self.config.gate.check_interval) if clean else 1
        self._next_check = self.state.step + self._gate_gap

    def _plain_step(self, loss) -> None:
        """AdamW without the gate; when the gate is on but not due, non-finite weights are still refused."""
        params, opt_state = copy_tree(self.model.parameters()), copy_tree(self.optimizer.state)
        _, grads = nn.value_and_grad(self.model, lambda m: loss(m, self.view))(self.model)
        self.optimizer.update(self.model, optim.clip_grad_norm(grads, self.config.train.grad_clip)[0])
        if self.gate is not None and not all_finite(self.model.trainable_parameters()):
            self.model.update(params)
            self.optimizer.state = opt_state
            self._next_check = self.state.step

    def measure_phi(self, samples: int = 64, inner: int = 16) -> float:
        """Phi of the planner, averaged over the ledger positions of the last training batch."""
        inputs, _, mask = self._last_batch
        positions = self._valid_positions(mask, max(self.config.train.ledger_positions, 1))
        hidden = self.model(self.matrix[inputs]).hidden.reshape(-1, self.args.d_model)
        keys = mx.random.split(mx.random.key(self.state.step), len(positions))
        return float(
            np.mean(
                [
                    phi_mc(self.model.planner.distribution(hidden[int(p)]), samples, inner, k)
                    for p, k in zip(positions, keys)
                ]
            )
        )

    def measure_kappa(self) -> float:
        """kappa-hat: the top Hessian eigenvalue of Delta on the last training batch."""
        loss = self._last_loss
        self.kappa = top_hessian_eigenvalue(
            self.model, lambda m: loss(m, self.view)[0], self.config.train.kappa_iterations, seed=self.state.step
        )
        return self.kappa

    def perturb(self, scale: float) -> None:
        """Add Gaussian noise of `scale` x each weight array's RMS (the recovery policy's last resort)."""
        weights = tree_flatten(self.model.trainable_parameters())
        keys = mx.random.split(mx.random.key(self.state.step), len(weights))
        self.model.update(
            tree_unflatten(
                [
                    (name, value + scale * mx.sqrt(mx.mean(value * value)) * mx.random.normal(value.shape, key=key))
                    for (name, value), key in zip(weights, keys)
                ]
            )
        )

    def evaluate(self) -> dict[str, dict[str, float]]:
        """LCM metrics on validation documents for the model and the two baselines."""
        inputs, targets, mask = self._rows(self.validation_ids)
        valid = np.array(mask).reshape(-1) > 0
        current = np.array(self.matrix[inputs]).reshape(-1, self.args.concept_dim)[valid]
        target = np.array(self.matrix[targets]).reshape(-1, self.args.concept_dim)[valid]
        current_ids = self.ids[np.array(inputs).reshape(-1)[valid]]
        target_ids = self.ids[np.array(targets).reshape(-1)[valid]]
        seen_rows = np.array(self.seen(inputs)).reshape(-1, inputs.shape[1])[valid]
        seen_ids = np.where(seen_rows >= 0, np.append(self.ids, -1)[seen_rows], -1)
        predicted = np.array(self.model(self.matrix[inputs]).next_vector).reshape(-1, self.args.concept_dim)[valid]
        neighbour = nearest_neighbour_baseline(current, current_ids, self.ids, self.vectors)
        return {
            name: next_concept_metrics(p, target, target_ids, seen_ids, self.ids, self.vectors)
            for name, p in (("model", predicted), ("repeat_last", current), ("nearest_neighbour", neighbour))
        }
