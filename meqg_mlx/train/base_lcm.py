"""The sequence baseline for `next`: a small causal transformer concept regressor (LCM's Base-LCM at toy size).

A PreNet maps each concept into the model width, learned positions are added, pre-norm
transformer layers with causal self-attention read the window so far, and a PostNet maps
back to a unit concept vector. It is trained on the training documents' windows with the
VMM's next-concept loss (squared distance + InfoNCE over in-batch targets and store
negatives + the context penalty) at the VMM's budget: `train.steps` batches of
`train.batch_size` windows of `train.seq_len`, the same learning-rate schedule. Unlike the
other baselines it reads the whole context, so it is the yardstick for what a sequence
model learns from documents beyond a map of the current concept.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from ..corpus.sequences import ConceptTable, Document, context_counts, excluded_candidates, windows
from ..diamond.objective import context_penalty, next_concept_losses
from ..progress import Progress, no_progress
from ..schedules import warmup_cosine
from .metrics import CHUNK, Queries


@dataclass
class ModelArgs:
    concept_dim: int
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 32  # the training windows' length: longer contexts are read from their last max_len


class BaseLCM(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.prenet = nn.Linear(args.concept_dim, args.d_model)
        self.positions = nn.Embedding(args.max_len, args.d_model)
        self.layers = [
            nn.TransformerEncoderLayer(args.d_model, args.n_heads, 4 * args.d_model, norm_first=True)
            for _ in range(args.n_layers)
        ]
        self.norm = nn.LayerNorm(args.d_model)
        self.postnet = nn.Linear(args.d_model, args.concept_dim)

    def __call__(self, concepts: mx.array) -> mx.array:
        """(B, T, concept_dim) concepts -> (B, T, concept_dim) unit predictions of each next one."""
        steps = concepts.shape[1]
        x = self.prenet(concepts) + self.positions(mx.arange(steps))
        mask = nn.MultiHeadAttention.create_additive_causal_mask(steps)
        for layer in self.layers:
            x = layer(x, mask)
        out = self.postnet(self.norm(x))
        return out * mx.rsqrt(mx.square(out).sum(-1, keepdims=True) + 1e-12)

    def last(self, context: np.ndarray) -> np.ndarray:
        """(N, T, concept_dim) contexts -> (N, concept_dim) the prediction after each one's last concept."""
        context = context[:, -self.args.max_len :].astype(np.float32)
        return np.concatenate(
            [np.array(self(mx.array(context[i : i + CHUNK]))[:, -1]) for i in range(0, len(context), CHUNK)]
        )


@dataclass
class Budget:
    """The VMM's: its width, `steps` batches of `batch_size` windows of `seq_len`, its optimiser settings
    (all a fit depends on: what the baselines' caches are keyed by)."""

    d_model: int
    steps: int
    batch_size: int
    seq_len: int
    store_negatives: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    temperature: float

    @classmethod
    def of(cls, config) -> "Budget":
        """The budget of a run's config (`config.MeqgConfig`): `vmm.d_model` and the `train` settings."""
        names = [name for name in cls.__dataclass_fields__ if name != "d_model"]
        return cls(config.vmm.d_model, **{name: getattr(config.train, name) for name in names})


def fit_base_lcm(
    table: ConceptTable,
    train_docs: list[Document],
    budget: Budget,
    seed: int = 0,
    progress: Progress = no_progress,
) -> BaseLCM:
    """A BaseLCM trained on windows of the training documents (drawn by `seed`, never the trainer's RNG)."""
    rng = np.random.default_rng(seed)
    mx.random.seed(seed)
    model = BaseLCM(ModelArgs(table.matrix.shape[1], budget.d_model, max_len=budget.seq_len))
    schedule = warmup_cosine(budget.learning_rate, budget.warmup_steps, budget.steps, start=1e-7)
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=budget.weight_decay)
    matrix, pad_row = table.matrix, table.pad_row

    def loss(model, inputs, targets, mask, negatives):
        concepts, wanted = matrix[inputs], matrix[targets]
        predicted = model(concepts)
        distance, contrastive = next_concept_losses(
            predicted.reshape(-1, predicted.shape[-1]),
            wanted.reshape(-1, wanted.shape[-1]),
            matrix[negatives],
            budget.temperature,
            mask.reshape(-1),
            excluded_candidates(inputs, targets, negatives),
        )
        counts = context_counts(inputs, targets, pad_row)
        return distance + contrastive + context_penalty(predicted, wanted, concepts, counts, mask)

    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(inputs, targets, mask, negatives):
        value, grads = nn.value_and_grad(model, loss)(model, inputs, targets, mask, negatives)
        optimizer.update(model, grads)
        return value

    for done in range(budget.steps):
        inputs, targets, mask = table.rows(windows(train_docs, budget.seq_len, rng, budget.batch_size))
        negatives = mx.array(rng.integers(0, len(table.ids), budget.store_negatives))
        step(inputs, targets, mask, negatives)
        mx.eval(state)
        progress("fitting the transformer baseline", done + 1, budget.steps)
    return model


def document_predictor(model: BaseLCM, vectors: np.ndarray):
    """The validation tables' predictor: each query's prediction after its context (rows, -1 padded)."""

    def predict(queries: Queries) -> np.ndarray:
        steps = (queries.context >= 0).sum(1)
        out = np.empty((len(steps), vectors.shape[1]), np.float32)
        for length in np.unique(steps):
            at = np.flatnonzero(steps == length)
            out[at] = model.last(vectors[queries.context[at, :length]])
        return out

    return predict
