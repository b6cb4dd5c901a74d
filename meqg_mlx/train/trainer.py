"""Gated training of the VMM on concept sequences from a store.

Each step: a batch of next-concept windows; Delta = S_geo + S_ent + lambda_mod * S_mod
with S_mod the ledger's Monte-Carlo estimate on the planner at a few positions
(its gradient by the score function, same random numbers for the gate's before and
after evaluations); the step goes through the Null-Stability Gate unless disabled.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..concepts.kmeans import spherical_kmeans
from ..concepts.store import ConceptStore
from ..config import MeqgConfig
from ..corpus.memory import RelationMemory
from ..corpus.relations import NEXT, RelationVocabulary, TrainingSplit, WalkSampler, document_groups
from ..corpus.sequences import ConceptTable, context_counts, documents, excluded_candidates, tiled_windows, windows
from ..diamond.gate import GateDecision, GateSchedule, NullStabilityGate, all_finite, copy_tree
from ..diamond.ledger import phi_mc, s_mod_surrogate
from ..diamond.objective import Objective, ObjectiveTerms, context_penalty
from ..diamond.view import View
from ..progress import Progress, no_progress
from ..schedules import warmup_cosine
from ..vmm.model import VMM, Memory
from ..vmm.moe import RouterStats
from .base_lcm import Budget, document_predictor, fit_base_lcm
from .baselines import Pairs, Predictor
from .curvature import top_hessian_eigenvalue
from .metrics import score
from .regime import RecoveryPolicy
from .validation import (
    QuerySet,
    Validation,
    baseline_scores,
    cache_path,
    compare,
    document_queries,
    relation_queries,
)


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
    batch: str = "documents"  # what the batch was drawn from: documents or walks


@dataclass
class TrainState:
    step: int = 0
    accepted: int = 0
    forwards: float = 0.0  # compute spent on steps, in forward-equivalents (TrainConfig.compute)


BACKWARD_COST = 2.0  # a backward pass costs about two forwards


class Trainer:
    def __init__(self, store: ConceptStore, config: MeqgConfig):
        self.store, self.config = store, config
        tc = config.train
        self.rng = np.random.default_rng(tc.seed)
        mx.random.seed(tc.seed)
        self.table = ConceptTable(store)
        self._read_relations(store, config)
        config.vmm.concept_dim = store.dim  # the store decides it: the run's config.yaml says what the model uses
        self.args = dataclasses.replace(config.vmm)
        self.model = VMM(self.args)
        self._fit_rvq(tc.rvq_fit_steps)
        self._set_experts()
        self.validation_ids = self._validation_windows()
        self.cache_dir: Path | None = (
            None  # where baselines and memory reads are kept per store version (None: not kept)
        )
        self.progress: Progress = no_progress  # how long setup work (memory reads, baseline fits) reports progress
        self._baselines: dict | None = None
        self.schedule = warmup_cosine(tc.learning_rate, tc.warmup_steps, tc.steps, start=1e-7)
        self.recovery = RecoveryPolicy(config.regime)
        self.optimizer = optim.AdamW(learning_rate=self.learning_rate, weight_decay=tc.weight_decay)
        self.optimizer.init(self.model.trainable_parameters())
        self.objective = Objective(config.objective, self.args, temperature=tc.temperature)
        self.gate = NullStabilityGate(config.gate) if tc.gate else None
        self.view = View.finest(self.args.rvq_levels)
        self.state = TrainState()
        self.kappa = 0.0  # the last kappa-hat measured (S_geo prices it when lambda_kappa > 0)
        self.gate_schedule = GateSchedule(config.gate.check_interval)
        self._graphs: dict[tuple[View, bool], Callable] = {}  # compiled batch losses (Trainer.compiled)
        self._update_graph: tuple[float, Callable] | None = None  # (lr scale, compiled AdamW step)

    def learning_rate(self, step) -> mx.array:
        """The learning rate of optimizer step `step`: the schedule under the recovery policy's scale."""
        return self.recovery.lr_scale * self.schedule(step)

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
            "gate_schedule": self.gate_schedule.state(),
            "stable": self.recovery.regime != "breakdown",
            "forwards": self.state.forwards,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.recovery.load_state(state["recovery"])
        self.kappa = state["kappa"]
        self.gate_schedule.load_state(state["gate_schedule"])
        self.model.rvq.next_code_id = state["next_code_id"]
        if self.gate and state["trust_radius"] is not None:
            self.gate.trust_radius = state["trust_radius"]
        self.state.step, self.state.accepted = state["step"], state["accepted"]
        self.state.forwards = float(state.get("forwards", 0.0))  # checkpoints before compute accounting

    def _fit_rvq(self, steps: int) -> None:
        vectors = self.table.vectors
        data = mx.array(vectors)
        self.model.rvq.initialize(data, seed=self.config.train.seed)
        for step in range(steps):
            rows = self.rng.choice(len(vectors), min(4096, len(vectors)), replace=False)
            self.model.rvq.update(data[mx.array(rows)], seed=step)
        self.refresh_codes()

    def refresh_codes(self) -> None:
        """RVQ codes of every store concept (plus a padding row), the planner's targets."""
        codes, _ = self.model.rvq.encode(mx.array(self.table.vectors))
        self.codes = mx.concatenate([codes, mx.zeros((1, self.args.rvq_levels), dtype=codes.dtype)])

    def _set_experts(self) -> None:
        centroids = self.store.domain_centroids()
        if centroids is None or len(centroids) < self.args.n_experts:
            return
        self.model.set_expert_centroids(mx.array(spherical_kmeans(centroids, self.args.n_experts, seed=0)))

    def _read_relations(self, store: ConceptStore, config: MeqgConfig) -> None:
        """The relation vocabulary (the run's, or the store's for a new run, then recorded in the config so
        every reader uses the same ids), the training split and the walk sampler."""
        tc = config.train
        names = config.vmm.relations or RelationVocabulary.of_store(store).names
        self.vocabulary = RelationVocabulary(tuple(names))
        config.vmm.relations = list(self.vocabulary.names)
        self.split = split = TrainingSplit.of(store, self.table, self.vocabulary, tc.validation_fraction)
        self.walks, self.batch_source = None, "documents"
        walked = np.isin(split.edges.relation, self.vocabulary.ids(tc.walk_relations or self.vocabulary.names))
        if tc.walk_share > 0 and (split.trainable & walked).any():
            self.walks = WalkSampler(split.edges.where(split.trainable & walked))
        elif not split.train_docs:
            documents(store, required=True)  # the one-line error: nothing to train on

    def draw_batch(self) -> tuple[mx.array, mx.array, mx.array, mx.array]:
        """(inputs, targets, mask, relations) of one training batch: document windows (`next` throughout), or
        with probability `train.walk_share` (always, when the store has no documents) relation walks, as
        many rows of `walk_length` steps as give the documents' token count."""
        tc = self.config.train
        if self.walks is not None and (not self.split.train_docs or self.rng.random() < tc.walk_share):
            count = max(1, tc.batch_size * tc.seq_len // tc.walk_length)
            rows, relations = self.walks.walks(self.rng, count, tc.walk_length)
            self.batch_source = "walks"
            return (*self.table.batch(rows), mx.array(np.maximum(relations, 0).astype(np.int32)))
        self.batch_source = "documents"
        inputs, targets, mask = self.table.rows(windows(self.split.train_docs, tc.seq_len, self.rng, tc.batch_size))
        return inputs, targets, mask, mx.zeros(inputs.shape, dtype=mx.int32)

    def _validation_windows(self) -> np.ndarray:
        """The same validation windows at every evaluation: up to `validation_windows` of the tiled
        validation documents, picked by the seed (evaluating never advances the training RNG)."""
        tc = self.config.train
        if not self.split.val_docs:
            return np.zeros((0, tc.seq_len + 1), np.int64)
        ids = tiled_windows(self.split.val_docs, tc.seq_len)
        if len(ids) > tc.validation_windows:
            ids = ids[np.sort(np.random.default_rng(tc.seed).choice(len(ids), tc.validation_windows, replace=False))]
        return ids

    def loss_fn(self, inputs, targets, mask, key, negatives: np.ndarray | None = None, relations=None) -> "BatchLoss":
        """The batch's loss (BatchLoss): what the gate evaluates and differentiates.

        `negatives` (store rows) are drawn from the training RNG when not given."""
        tc = self.config.train
        if negatives is None:
            negatives = self.draw_negatives()
        negatives = mx.array(negatives)
        excluded = excluded_candidates(inputs, targets, negatives)
        positions = mx.array(self._valid_positions(mask, tc.ledger_positions))
        kappa = mx.array(self.kappa)
        relations = relations if relations is not None else mx.zeros(inputs.shape, dtype=mx.int32)
        counts = context_counts(inputs, targets, self.table.pad_row)
        memory_targets, memory_similarity = self.memory_arrays(inputs, relations, mask)
        arrays = StepArrays(
            inputs,
            targets,
            mask,
            key,
            negatives,
            excluded,
            positions,
            self.codes,
            kappa,
            relations,
            counts,
            memory_targets,
            memory_similarity,
        )
        return BatchLoss(self, arrays)

    def batch_loss(self, model: VMM, view: View, arrays: "StepArrays", surrogate: bool = True):
        """(Delta, S_mod, terms, router stats) of one batch. `surrogate` adds the score-function term
        that carries S_mod's gradient (its value is exactly 0): value-only evaluations leave it out."""
        tc, table, a = self.config.train, self.table, arrays
        concepts = table.matrix[a.inputs]
        out = model(concepts, relations=a.relations, memory=self.memory_of(a.memory_targets, a.memory_similarity))
        codes = a.codes[a.targets].reshape(-1, self.args.rvq_levels)
        planner_logits = model.planner(out.hidden, a.codes[a.targets])
        hidden = out.hidden.reshape(-1, out.hidden.shape[-1])[a.positions]
        s_mod_value, score = s_mod_surrogate(
            model.planner, hidden, view, tc.ledger_samples, tc.ledger_inner, a.key, surrogate=surrogate
        )
        terms = self.objective(
            out.next_vector.reshape(-1, self.args.concept_dim),
            table.matrix[a.targets].reshape(-1, self.args.concept_dim),
            table.matrix[a.negatives],
            planner_logits.reshape(-1, *planner_logits.shape[-2:]),
            codes,
            sum(s.balance_loss for s in out.router) / len(out.router),
            s_mod_value + (score - mx.stop_gradient(score)) if surrogate else s_mod_value,
            mask=a.mask.reshape(-1),
            excluded=a.excluded,
            kappa=a.kappa,
            context=context_penalty(out.next_vector, table.matrix[a.targets], concepts, a.counts, a.mask),
        )
        return terms.delta, s_mod_value, terms, out.router

    def compiled(self, view: View, gradient: bool) -> Callable:
        """The batch loss at `view` as one compiled graph, with its gradient or value-only; the model's
        arrays and the batch's are its inputs, so one trace serves every step with the same shapes."""
        graph = self._graphs.get((view, gradient))
        if graph is None:
            state = [self.model.state]
            if gradient:

                def run(*arrays):
                    def loss(model):
                        return _as_tree(self.batch_loss(model, view, StepArrays(*arrays)))

                    return nn.value_and_grad(self.model, loss)(self.model)

                # value_and_grad puts its traced weights into the model: they come back out as outputs
                graph = mx.compile(run, inputs=state, outputs=state)
            else:
                graph = mx.compile(
                    lambda *arrays: _as_tree(self.batch_loss(self.model, view, StepArrays(*arrays), surrogate=False)),
                    inputs=state,
                )
            self._graphs[(view, gradient)] = graph
        return graph

    def apply_update(self, grads: dict) -> None:
        """Clip the gradient and take the AdamW step, as one compiled graph (weights, gradient and
        optimizer state in; weights and state out). The recovery policy's learning-rate scale is a
        number the trace keeps, so a new scale is a new trace."""
        scale = self.recovery.lr_scale
        if self._update_graph is None or self._update_graph[0] != scale:
            self._update_graph = (scale, mx.compile(self._adamw_step))
        weights, self.optimizer.state = self._update_graph[1](
            self.model.trainable_parameters(), grads, self.optimizer.state
        )
        self.model.update(weights)

    def _adamw_step(self, weights: dict, grads: dict, state: dict) -> tuple[dict, dict]:
        self.optimizer.state = state
        clipped, _ = optim.clip_grad_norm(grads, self.config.train.grad_clip)
        return self.optimizer.apply_gradients(clipped, weights), self.optimizer.state

    def draw_negatives(self) -> np.ndarray:
        return self.rng.choice(len(self.table.ids), self.config.train.store_negatives, replace=False)

    @staticmethod
    def _valid_positions(mask: mx.array, count: int) -> np.ndarray:
        """The first `count` unpadded positions of a batch (flat indices): where the ledger looks."""
        return np.flatnonzero(np.array(mask).reshape(-1))[:count]

    def step(self) -> StepReport:
        started = time.perf_counter()
        inputs, targets, mask, relations = self.draw_batch()
        key = mx.random.key(int(self.rng.integers(2**31)))
        loss = self.loss_fn(inputs, targets, mask, key, relations=relations)
        self.last_batch, self._last_loss = (inputs, targets, mask, relations), loss
        lr = float(self.optimizer.learning_rate)
        if self.gate_due():
            decision = self.gate.step(
                self.model,
                self.optimizer,
                loss,
                self.view,
                value_and_grad=loss.value_and_grad,
                update=self.apply_update,
            )
            self.gate_schedule.checked(self.state.step, decision)
        else:
            decision = None
            self._plain_step(loss)
        self.state.accepted += decision.accepted if decision else 1
        self.state.forwards += len(loss.evaluations) + BACKWARD_COST  # every loss evaluation, one backward
        terms, router = loss.evaluations[0]  # this batch at the weights the step started from
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
            self.batch_source,
        )
        return report

    def gate_due(self) -> bool:
        """Whether the gate checks this step (`GateSchedule`); never without a gate."""
        return self.gate is not None and self.gate_schedule.due(self.state.step)

    def _plain_step(self, loss: "BatchLoss") -> None:
        """AdamW without the gate; when the gate is on but not due, non-finite weights are still refused."""
        params, opt_state = copy_tree(self.model.parameters()), copy_tree(self.optimizer.state)
        _, grads = loss.value_and_grad(self.view)
        self.apply_update(grads)
        if self.gate is not None and not all_finite(self.model.trainable_parameters()):
            self.model.update(params)
            self.optimizer.state = opt_state
            self.gate_schedule.check_next(self.state.step)

    def measure_phi(self, batch: tuple, samples: int = 64, inner: int = 16) -> float:
        """Phi of the planner, averaged over the ledger positions of `batch` (inputs, targets, mask,
        relations: a step's, such as `last_batch`)."""
        inputs, _, mask, relations = batch
        positions = self._valid_positions(mask, max(self.config.train.ledger_positions, 1))
        memory = self.memory_of(*self.memory_arrays(inputs, relations, mask))
        hidden = self.model(self.table.matrix[inputs], relations=relations, memory=memory).hidden
        hidden = hidden.reshape(-1, self.args.d_model)
        keys = mx.random.split(mx.random.key(self.state.step), len(positions))
        return float(
            np.mean(
                [
                    phi_mc(self.model.planner.distribution(hidden[int(p)]), samples, inner, k)
                    for p, k in zip(positions, keys)
                ]
            )
        )

    def last_batch_loss(self) -> "BatchLoss":
        """The loss of the last training batch, what `measure_kappa` differentiates."""
        return self._last_loss

    def measure_kappa(self, loss: "BatchLoss") -> float:
        """kappa-hat: the top Hessian eigenvalue of Delta on `loss`'s batch; kept for S_geo's price."""
        iterations = self.config.train.kappa_iterations
        self.kappa = top_hessian_eigenvalue(
            self.model, lambda m: loss.evaluate(m, self.view)[0], iterations, seed=self.state.step
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

    @functools.cached_property
    def validation_sets(self) -> list[QuerySet]:
        """What the validation tables ask, the same at every evaluation: held-out documents' next concepts,
        then each relation's targets of held-out sources, with the training pairs the baselines are fitted on."""
        tc, split = self.config.train, self.split
        edges = relation_queries(
            split.edges, split.held_out, split.trainable, self.vocabulary, tc.validation_edges, tc.seed
        )
        if not len(self.validation_ids) or not split.train_docs:
            return edges
        transitions = split.training_edges(self.table).of(0)
        pairs = Pairs(transitions.source, transitions.target)
        return [document_queries(self.table.window_rows(self.validation_ids), pairs), *edges]

    def evaluate(self) -> Validation:
        """The validation tables: the model and every baseline, per relation (train.validation)."""
        tc, table = self.config.train, self.table
        sets = self.validation_sets
        if self._baselines is None:
            budget = Budget.of(self.config)
            key = {
                **self._split_key(),
                **{name: getattr(tc, name) for name in ("seed", "seq_len", "validation_windows", "validation_edges")},
                "mlp_steps": tc.baseline_mlp_steps,
                "transformer": dataclasses.asdict(budget),
            }

            def transformer() -> Predictor:
                fitted = fit_base_lcm(table, self.split.train_docs, budget, tc.seed, self.progress)
                return document_predictor(fitted, table.vectors)

            path = cache_path(self.cache_dir, "baselines", key)
            self._baselines = baseline_scores(table.vectors, sets, path, tc.baseline_mlp_steps, tc.seed, transformer)
        model = {s.relation: score(self.predict(s), s.queries, table.vectors) for s in sets}
        return compare(model, self._baselines, len(table.ids))

    def predict(self, query_set: QuerySet) -> np.ndarray:
        """The model's next-concept vectors for a query set: documents through their validation windows,
        relation queries from their source alone."""
        table = self.table
        if query_set.relation == NEXT:
            inputs, _, mask = table.rows(self.validation_ids)
            relations = mx.zeros(inputs.shape, dtype=mx.int32)
            memory = self.memory_of(*self.memory_arrays(inputs, relations, mask))
            predicted = np.array(self.model(table.matrix[inputs], relations=relations, memory=memory).next_vector)
            return predicted.reshape(-1, self.args.concept_dim)[np.array(mask).reshape(-1) > 0]
        sources = mx.array(query_set.queries.context[:, :1])
        relations = mx.full(sources.shape, self.vocabulary.id(query_set.relation), dtype=mx.int32)
        memory = self.memory_of(*self.memory_arrays(sources, relations, mx.ones(sources.shape)))
        return np.array(self.model(table.matrix[sources], relations=relations, memory=memory).next_vector[:, 0])

    def _split_key(self) -> dict:
        """What fixes the store's split into training and held-out concepts (cache keys start from it)."""
        return {
            "store": self.store.uri,
            "table_version": self.store.table.version,
            "relations": list(self.vocabulary.names),
            "validation_fraction": self.config.train.validation_fraction,
        }

    @functools.cached_property
    def memory(self) -> RelationMemory:
        """The store as the model's memory: the edges training may read (documents' transitions for `next`),
        with every store concept's read along each relation it has edges of computed once (and kept in the
        cache directory per store version and split)."""
        split, table = self.split, self.table
        groups = document_groups(self.store, table)
        edges = split.training_edges(table)
        memory = RelationMemory(table.vectors, edges, len(self.vocabulary), self.args.memory_slots, groups)
        doc_rows = [table.row_of[d.ids] for d in (*split.train_docs, *split.val_docs)]
        rows = np.concatenate([*doc_rows, split.edges.source])
        relations = np.concatenate([np.zeros(sum(map(len, doc_rows)), np.int64), split.edges.relation])
        path = cache_path(self.cache_dir, "memory", {**self._split_key(), "slots": self.args.memory_slots})
        memory.prepare(rows, relations, path, self.progress)
        return memory

    def memory_arrays(self, inputs: mx.array, relations: mx.array, mask: mx.array) -> tuple[mx.array, mx.array]:
        """(targets (B, T, slots) rows, the padding row where none; similarity) read at each position with a
        next concept (`mask`: a walk's last concept has none, and no relation to follow)."""
        if not self.args.memory_slots:
            return mx.zeros((*inputs.shape, 0), dtype=mx.int32), mx.zeros((*inputs.shape, 0))
        rows = np.where(np.array(mask) > 0, np.array(inputs), -1)
        read = self.memory.read_rows(rows, np.array(relations))
        targets = np.where(read.targets >= 0, read.targets, self.table.pad_row)
        return mx.array(targets.astype(np.int32)), mx.array(read.similarity)

    def memory_of(self, targets: mx.array, similarity: mx.array) -> Memory | None:
        """The model's `Memory` from read rows (inside compiled graphs too)."""
        if not self.args.memory_slots:
            return None
        return Memory(self.table.matrix[targets], similarity, targets != self.table.pad_row)


class StepArrays(NamedTuple):
    """Every array one step's loss reads, passed to its compiled graph as inputs: an array the
    graph captured instead would stay fixed at its value when traced."""

    inputs: mx.array  # (B, T) store rows fed in
    targets: mx.array  # (B, T) the rows that come next
    mask: mx.array  # (B, T) 1 at real positions, 0 at padding
    key: mx.array  # the ledger's random numbers: the same before and after the step
    negatives: mx.array  # (M,) store rows drawn as InfoNCE negatives
    excluded: mx.array  # (B*T, B*T + M) candidates that are no negatives for a row
    positions: mx.array  # the flat positions where the ledger looks
    codes: mx.array  # the store's RVQ codes, the planner's targets (refresh_codes replaces them)
    kappa: mx.array  # the last kappa-hat, which S_geo prices
    relations: mx.array  # (B, T) the relation followed from each position (0: next)
    counts: mx.array  # (B, T, T) the context concepts a prediction must not rank above its target
    memory_targets: mx.array  # (B, T, slots) rows each position read from the store (the padding row: none)
    memory_similarity: mx.array  # (B, T, slots) their sources' similarity to the position's concept


class BatchLoss:
    """One batch's loss, as the gate sees it: `loss(model, view)` -> (Delta, S_mod) and
    `value_and_grad(view)`, each one compiled graph of the trainer's model; `evaluations`
    keeps (terms, router stats) of every evaluation, the first at the step's start."""

    def __init__(self, trainer: Trainer, arrays: StepArrays):
        self.trainer, self.arrays = trainer, arrays
        self.evaluations: list[tuple[ObjectiveTerms, list[RouterStats]]] = []

    def __call__(self, model: VMM, view: View) -> tuple[mx.array, mx.array]:
        if model is not self.trainer.model:
            raise ValueError("a BatchLoss evaluates its trainer's model only")
        return self._recorded(self.trainer.compiled(view, gradient=False)(*self.arrays))

    def value_and_grad(self, view: View) -> tuple[tuple[mx.array, mx.array], dict]:
        outputs, grads = self.trainer.compiled(view, gradient=True)(*self.arrays)
        return self._recorded(outputs), grads

    def evaluate(self, model: nn.Module, view: View):
        """The loss as plain MLX ops, for transforms past the gradient (curvature's Hessian-vector products)."""
        return self.trainer.batch_loss(model, view, self.arrays)

    def _recorded(self, outputs) -> tuple[mx.array, mx.array]:
        delta, s_mod, terms, router = outputs
        self.evaluations.append((ObjectiveTerms(*terms), [RouterStats(*stats) for stats in router]))
        return delta, s_mod


def _as_tree(loss: tuple) -> tuple:
    """(Delta, S_mod, terms, router stats) with the dataclasses as lists: what compiled graphs return."""
    delta, s_mod, terms, router = loss
    return delta, s_mod, _fields(terms), [_fields(stats) for stats in router]


def _fields(record) -> list:
    return [getattr(record, field.name) for field in dataclasses.fields(record)]
