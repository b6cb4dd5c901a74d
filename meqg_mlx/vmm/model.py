"""The Vector Mamba MoE: concept vectors in, next concept vector and planner codes out.

in_proj -> L x [RMSNorm -> SSD mixer, RMSNorm -> MoE FFN] -> RMSNorm ->
  next-concept head and planner head q(z | h) over the RVQ codes of the next
  concept, autoregressive over levels so it can express their coupling.
Each position also carries the relation to follow next (`next` in documents; a typed
edge in relation walks): a learned embedding per relation joins the input.
The next-concept head mixes the last few input concepts with weights computed from
h (mixing in concept space generalizes to concepts never seen in training) and blends
that mixture with a vector generated from h by a learned share, so it can name a
concept outside its context (a pointer-generator's copy-or-generate gate). The store is
its memory: with `memory_slots`, each position also reads where the edges of its
concept's nearest neighbours lead along its relation (`corpus.memory`), and the mixture
weighs those targets beside the context, by their similarity and by h.
Expert routing gets a prior: the cosine of the input concept to each expert's
domain centroid (taken from the concept store's domains).

PyTorch twin: converters/torch_vmm.py (tests/converters/test_twins.py keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from ..kernels.activations import gelu
from ..kernels.mix import context_mix
from ..kernels.softmax import logsumexp
from .cache import MixerCache, VMMCache, WindowCache
from .moe import MoEFeedForward, RouterStats
from .rvq import ResidualVQ, RVQArgs
from .ssd import SSDArgs, SSDMixer

BYTES_PER_FLOAT = 4  # float32 state and vectors


@dataclass
class ModelArgs:
    """The VMM's shape; also the `vmm` section of meqg's config (concept_dim comes from the store). The
    defaults train `train.steps` in about 11 minutes on 2 CPU cores (162 ms a gated step with memory)."""

    concept_dim: int = 384
    d_model: int = 128
    n_layers: int = 2
    d_state: int = 32
    expand: int = 2
    head_dim: int = 32
    chunk_size: int = 32
    conv_kernel: int = SSDArgs.conv_kernel  # the mixer's causal convolution width (set there once)
    n_experts: int = 4
    top_k: int = 2
    d_ff: int = 256
    router_beta: float = 1.0
    rvq_levels: int = 4
    rvq_codes: int = 256
    context_lags: int = 8
    next_correction: bool = False  # a free correction on top of the context mixture; overfits small stores
    next_generator: bool = True  # blend a generated vector into the context mixture (false: copies only)
    # relation names by id, `next` first (the trainer records the store's); with more than `next` each
    # position reads the relation it follows
    relations: list[str] = field(default_factory=list)
    memory_slots: int = 16  # store edges read per position (corpus/memory.py); 0 reads none

    def flops_per_token(self) -> float:
        """Forward multiply-adds x2 of one token through the VMM (analytic): S_geo's compute price."""
        d, di = self.d_model, self.expand * self.d_model
        heads = di // self.head_dim
        conv_dim = di + 2 * self.d_state
        mixer = 2 * d * (di + conv_dim + heads) + 2 * self.conv_kernel * conv_dim
        scan = 2 * self.chunk_size * heads * (self.d_state + self.head_dim) + 4 * heads * self.head_dim * self.d_state
        mixer += scan + 2 * di * d
        moe = 2 * d * self.n_experts + self.top_k * 6 * d * self.d_ff
        heads_out = 2 * self.concept_dim * d * 2 + self.rvq_levels * (2 * d * d + 2 * d * self.rvq_codes)
        return float(self.n_layers * (mixer + moe) + heads_out)

    def state_bytes(self, batch: int = 1) -> float:
        """Recurrent state carried between tokens: SSM states and conv windows of every layer."""
        di = self.expand * self.d_model
        ssm = (di // self.head_dim) * self.head_dim * self.d_state
        conv = (self.conv_kernel - 1) * (di + 2 * self.d_state)
        return float(batch * self.n_layers * (ssm + conv) * BYTES_PER_FLOAT)


class Memory(NamedTuple):
    """What each position read from the store: the targets of its neighbours' edges."""

    values: mx.array  # (B, T, slots, concept_dim) unit target vectors (zeros where none)
    similarity: mx.array  # (B, T, slots) cosine of the position's concept to each edge's source
    valid: mx.array  # (B, T, slots) bool: a slot holds an edge


@dataclass
class VMMOutput:
    next_vector: mx.array  # (B, T, concept_dim), unit rows
    hidden: mx.array  # (B, T, d_model), input to the heads
    router: list[RouterStats] = field(default_factory=list)


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(args.d_model)
        self.mixer = SSDMixer(
            SSDArgs(
                args.d_model,
                args.d_state,
                args.expand,
                args.head_dim,
                conv_kernel=args.conv_kernel,
                chunk_size=args.chunk_size,
            )
        )
        self.ffn_norm = nn.RMSNorm(args.d_model)
        self.ffn = MoEFeedForward(args.d_model, args.d_ff, args.n_experts, args.top_k, args.router_beta)

    def __call__(
        self, h: mx.array, prior: mx.array | None, cache: MixerCache | None = None
    ) -> tuple[mx.array, RouterStats]:
        h = h + self.mixer(self.mixer_norm(h), cache)
        out, stats = self.ffn(self.ffn_norm(h), prior)
        return h + out, stats


class NextConceptHead(nn.Module):
    """Without memory: normalize(m + s(h) (g(h) - m) + W h), m the unit softmax mixture of the last `lags`
    concepts, g(h) a generated unit vector, s(h) in (0, 1) its learned share; the correction W h is
    optional. With memory slots: normalize(r_c m + r_r M + r_g g(h) + W h), M the unit mixture of the
    memory's targets (a slot's weight grows with its source's similarity, at a learned sharpness, and
    with its target's agreement with a query q(h)), and r = softmax over copy, retrieve and generate
    (absent sources left out): the relation in h decides which of them answers."""

    def __init__(
        self,
        d_model: int,
        concept_dim: int,
        lags: int,
        correction: bool = True,
        generator: bool = True,
        memory_slots: int = 0,
    ):
        super().__init__()
        self.lags = lags
        self.mix = nn.Linear(d_model, lags)
        self.mix.weight = mx.zeros_like(self.mix.weight)
        self.mix.bias = mx.array([8.0] + [0.0] * (lags - 1))  # ~all weight on the current concept
        if generator:
            self.generate_hidden = nn.Linear(d_model, d_model)
            self.generate = nn.Linear(d_model, concept_dim)
        if memory_slots:
            self.memory_query = nn.Linear(d_model, concept_dim)
            self.memory_query.weight = mx.zeros_like(self.memory_query.weight)  # to start, similarity alone
            self.memory_query.bias = mx.zeros_like(self.memory_query.bias)
            self.memory_sharpness = nn.Linear(d_model, 1)
            self.memory_sharpness.bias = mx.array([10.0])  # softplus: weights ~ exp(10 cosine) to start
            self.route = nn.Linear(d_model, 3 if generator else 2)
            self.route.bias = mx.array([0.0, 0.0, -1.0][: 3 if generator else 2])
        elif generator:
            self.share = nn.Linear(d_model, 1)
            self.share.bias = mx.array([-2.0])  # starts near the copy (12% generated), a baseline to improve on
        if correction:
            self.correction = nn.Linear(d_model, concept_dim)
            self.correction.weight = mx.zeros_like(self.correction.weight)
            self.correction.bias = mx.zeros_like(self.correction.bias)

    def __call__(
        self, concepts: mx.array, h: mx.array, cache: WindowCache | None = None, memory: Memory | None = None
    ) -> mx.array:
        """`cache` holds the concepts fed before `concepts` (zeros before the first); a model with memory
        slots given no `memory` reads none (as a position whose relation has no edges)."""
        padded = (cache if cache is not None else WindowCache(self.lags - 1)).update_and_fetch(concepts)
        out = context_mix(padded, mx.softmax(self.mix(h), axis=-1))
        generated = _unit(self.generate(gelu(self.generate_hidden(h)))) if "generate_hidden" in self else None
        if "route" in self:
            route = self.route(h)
            if memory is not None:
                read = nn.softplus(self.memory_sharpness(h)) * memory.similarity
                read = read + (memory.values @ self.memory_query(h)[..., None])[..., 0]
                weights = mx.softmax(mx.where(memory.valid, read, -1e9), axis=-1)
                retrieved = _unit((weights[..., None] * memory.values).sum(-2))
                found = memory.valid.any(-1, keepdims=True)
            else:
                retrieved, found = mx.zeros_like(out), mx.zeros((*h.shape[:-1], 1), dtype=mx.bool_)
            route = mx.concatenate([route[..., :1], mx.where(found, route[..., 1:2], -1e9), route[..., 2:]], -1)
            route = mx.softmax(route, axis=-1)
            out = route[..., :1] * _unit(out) + route[..., 1:2] * retrieved
            if generated is not None:
                out = out + route[..., 2:] * generated
        elif generated is not None:
            out = _unit(out) + mx.sigmoid(self.share(h)) * (generated - _unit(out))
        if "correction" in self:
            out = out + self.correction(h)
        return _unit(out)


def _unit(x: mx.array) -> mx.array:
    return x * mx.rsqrt(mx.square(x).sum(-1, keepdims=True) + 1e-12)  # finite gradient at 0 (padding)


class PlannerHead(nn.Module):
    """q(z_1..z_K | h) = prod_k q(z_k | h, z_<k): level k sees h plus embeddings of the codes before it."""

    def __init__(self, d_model: int, levels: int, codes: int):
        super().__init__()
        self.levels, self.codes = levels, codes
        self.code_embeddings = [nn.Embedding(codes, d_model) for _ in range(levels - 1)]
        self.hidden = [nn.Linear(d_model, d_model) for _ in range(levels)]
        self.out = [nn.Linear(d_model, codes) for _ in range(levels)]

    def level_logits(self, h: mx.array, prefix: mx.array, level: int) -> mx.array:
        """h (..., d), prefix (..., >= level) codes -> (..., C) logits of `level`."""
        x = h
        for j in range(level):
            x = x + self.code_embeddings[j](prefix[..., j])
        return self.out[level](gelu(self.hidden[level](x)))

    def __call__(self, h: mx.array, codes: mx.array) -> mx.array:
        """Teacher-forced logits (..., K, C) for the true codes (..., K)."""
        return mx.stack([self.level_logits(h, codes, k) for k in range(self.levels)], axis=-2)

    def distribution(self, hidden: mx.array) -> "PlannerDistribution":
        return PlannerDistribution(self, hidden)


class PlannerDistribution:
    """The planner at one position (h (d,)) or at several at once (h (P, d)), as the ledger's
    `AutoregressiveCodes`."""

    def __init__(self, head: PlannerHead, hidden: mx.array):
        self.head, self.h = head, hidden
        self.levels, self.codes = head.levels, head.codes

    def conditional_logprobs(self, prefix: mx.array) -> mx.array:
        """prefix (N, k) for one position's h (d,), or (P, N, k) for P positions' h (P, d)."""
        level, rows = prefix.shape[-1], prefix.shape[:-1]
        # the first level sees h alone: one row per position, broadcast over the samples
        h = self.h if level == 0 else mx.broadcast_to(mx.expand_dims(self.h, -2), (*rows, self.h.shape[-1]))
        logits = self.head.level_logits(h, prefix, level)
        logprobs = logits - logsumexp(logits, keepdims=True)
        return mx.broadcast_to(mx.expand_dims(logprobs, -2), (*rows, self.codes)) if level == 0 else logprobs

    def log_joint(self) -> mx.array:
        """The whole (C,)*K table of log q (only for small C**K: tests and the exact ledger)."""
        grid = mx.array(
            [[int(i) for i in _digits(n, self.codes, self.levels)] for n in range(self.codes**self.levels)],
            dtype=mx.int32,
        )
        h = mx.broadcast_to(self.h, (grid.shape[0], self.h.shape[-1]))
        logits = self.head(h, grid)
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        picked = mx.take_along_axis(logp, grid[..., None], axis=-1)[..., 0].sum(-1)
        return picked.reshape((self.codes,) * self.levels)


def _digits(n: int, base: int, width: int) -> list[int]:
    out = []
    for _ in range(width):
        n, r = divmod(n, base)
        out.append(r)
    return out[::-1]


class VMM(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.in_proj = nn.Linear(args.concept_dim, args.d_model)
        if len(args.relations) > 1:  # `next` alone needs no input: it is the same at every position
            self.relation_embedding = nn.Embedding(len(args.relations), args.d_model)
        self.blocks = [Block(args) for _ in range(args.n_layers)]
        self.norm = nn.RMSNorm(args.d_model)
        self.next_head = NextConceptHead(
            args.d_model,
            args.concept_dim,
            args.context_lags,
            args.next_correction,
            args.next_generator,
            args.memory_slots,
        )
        self.planner = PlannerHead(args.d_model, args.rvq_levels, args.rvq_codes)
        self.rvq = ResidualVQ(RVQArgs(args.concept_dim, args.rvq_levels, args.rvq_codes))
        self.expert_centroids = mx.zeros((args.n_experts, args.concept_dim))
        self.freeze(keys=["expert_centroids"], strict=False)

    def set_expert_centroids(self, centroids: mx.array) -> None:
        """(n_experts, concept_dim) unit rows: the domain each expert is nudged towards."""
        if centroids.shape != self.expert_centroids.shape:
            raise ValueError(f"expert centroids must be {self.expert_centroids.shape}, got {centroids.shape}")
        self.expert_centroids = centroids

    def make_cache(self) -> VMMCache:
        return VMMCache(self.args.n_layers, self.args.conv_kernel, self.args.context_lags)

    def __call__(
        self,
        concepts: mx.array,
        cache: VMMCache | None = None,
        relations: mx.array | None = None,
        memory: Memory | None = None,
    ) -> VMMOutput:
        """concepts (B, T, concept_dim) unit rows -> prediction of each next concept; `relations` (B, T)
        the relation id to follow from each position (None: `next`, id 0, everywhere); `memory` what each
        position read from the store along its relation (`corpus.memory.RelationMemory`).

        With `cache` (from `make_cache`), the concepts continue the sequence fed into it so far, and
        the outputs are those of the whole sequence's forward at these positions.
        """
        prior = concepts @ self.expert_centroids.T
        h = self.in_proj(concepts)
        if "relation_embedding" in self:
            h = h + self.relation_embedding(
                relations if relations is not None else mx.zeros(concepts.shape[:2], dtype=mx.int32)
            )
        stats = []
        for i, block in enumerate(self.blocks):
            h, block_stats = block(h, prior, cache.layers[i] if cache is not None else None)
            stats.append(block_stats)
        h = self.norm(h)
        next_vector = self.next_head(concepts, h, cache.concepts if cache is not None else None, memory)
        if cache is not None:
            cache.offset += concepts.shape[1]
        return VMMOutput(next_vector, h, stats)

    def parameter_count(self, trainable_only: bool = True) -> int:
        tree = self.trainable_parameters() if trainable_only else self.parameters()
        return sum(v.size for _, v in tree_flatten(tree))
