"""The Vector Mamba MoE in PyTorch: the same math and parameter names as `meqg_mlx.vmm.model`.

Used to run meqg weights on CUDA machines, to train them there (meqg_converters.train) and as
the peer in bench/train.py. Parameter names and layouts match the MLX model's safetensors
(weights.py maps the one difference, the depthwise convolution's kernel axis), so a state
dict moves between the two unchanged otherwise. The MoE dispatches per expert (the usual
PyTorch way: each expert runs on the tokens routed to it) where MLX uses `gather_mm`.

This file imports only torch and safetensors: `meqg export torch` ships it as the export's
`modeling_meqg.py`, and `load_pretrained(directory)` there needs nothing else. `args` is
any object with `meqg_mlx.vmm.model.ModelArgs`'s fields (the one definition of them).

Twin of, part by part: meqg_mlx.vmm.model, meqg_mlx.vmm.moe, meqg_mlx.vmm.cache, meqg_mlx.vmm.ssd,
meqg_mlx.vmm.rvq and the scan references in meqg_mlx.kernels.ssd; tests/converters/test_twins.py
fails when a name or a module's attribute is in one and not the other, unless declared there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

RMS_EPS = 1e-5  # mlx.nn.RMSNorm's default
MASKED = 1e4  # subtracted from the logits of what is masked out: exp(-1e4) is 0, and 1e4 fits float16


class WindowCache:
    """The last `size` rows fed along the sequence axis (zeros before the first), for causal windows."""

    def __init__(self, size: int):
        self.size = size
        self.state: torch.Tensor | None = None

    def update_and_fetch(self, x: torch.Tensor) -> torch.Tensor:
        history = self.state if self.state is not None else x.new_zeros(x.shape[0], self.size, x.shape[-1])
        window = torch.cat([history, x], 1)
        self.state = window[:, -self.size :] if self.size else window[:, :0]  # no traced sizes: Core ML export
        return window

    def copy(self) -> "WindowCache":
        new = WindowCache(self.size)
        new.state = self.state
        return new


class MixerCache:
    def __init__(self, conv_kernel: int):
        self.conv = WindowCache(conv_kernel - 1)
        self.ssm: torch.Tensor | None = None

    def copy(self) -> "MixerCache":
        new = MixerCache(self.conv.size + 1)
        new.conv, new.ssm = self.conv.copy(), self.ssm
        return new


class VMMCache:
    """Decoding state (as `meqg_mlx.vmm.cache.VMMCache`): `model(x, cache=cache)` continues a sequence."""

    def __init__(self, n_layers: int, conv_kernel: int, context_lags: int):
        self.layers = [MixerCache(conv_kernel) for _ in range(n_layers)]
        self.concepts = WindowCache(context_lags - 1)
        self.offset = 0

    def copy(self) -> "VMMCache":
        new = VMMCache(0, 1, 1)
        new.layers = [layer.copy() for layer in self.layers]
        new.concepts, new.offset = self.concepts.copy(), self.offset
        return new


def _heads(v: torch.Tensor, heads: int) -> torch.Tensor:
    """(b, l, g, n) -> per head: one group broadcasts over the heads as it is (no repeat in a traced graph);
    otherwise each group serves heads // g consecutive heads."""
    return v if v.shape[2] == 1 else v.repeat_interleave(heads // v.shape[2], dim=2)


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    q = a.shape[-1]
    cumulative = a.cumsum(-1)
    sums = cumulative[..., :, None] - cumulative[..., None, :]
    causal = torch.ones(q, q, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~causal, float("-inf"))


def ssd_step(x, dt, A, B, C, D, state=None):
    """One position of the recurrence (x (b, 1, h, p)), as `meqg_mlx.kernels.ssd.ssd_sequential`."""
    h = x.shape[2]
    Bh, Ch = _heads(B, h)[:, 0], _heads(C, h)[:, 0]
    S = x.new_zeros(x.shape[0], h, x.shape[3], B.shape[-1]) if state is None else state
    S = (dt[:, 0] * A).exp()[..., None, None] * S + (dt[:, 0, :, None, None] * x[:, 0, :, :, None]) * Bh[:, :, None]
    y = (S * Ch[:, :, None]).sum(-1) + D[:, None] * x[:, 0]
    return y[:, None], S


def ssd_chunked(x, dt, A, B, C, D, chunk_size: int = 64, state=None):
    """Mamba-2's chunked scan, as `meqg_mlx.kernels.ssd.ssd_chunked` (shapes in its docstring)."""
    b, length, h, p = x.shape
    n = B.shape[-1]
    pad = (-length) % chunk_size
    if pad:
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    chunks = (length + pad) // chunk_size

    def to_chunks(v):
        return v.reshape(b, chunks, chunk_size, *v.shape[2:])

    xdt = to_chunks(x * dt[..., None]).permute(0, 3, 1, 2, 4)
    Bh = to_chunks(_heads(B, h)).permute(0, 3, 1, 2, 4)
    Ch = to_chunks(_heads(C, h)).permute(0, 3, 1, 2, 4)
    a = to_chunks(dt * A).permute(0, 3, 1, 2)
    a_cum = a.cumsum(-1)

    y = ((Ch @ Bh.transpose(-1, -2)) * segment_sums(a).exp()) @ xdt
    to_end = (a_cum[..., -1:] - a_cum).exp()
    chunk_states = (xdt * to_end[..., None]).transpose(-1, -2) @ Bh
    chunk_decay = a_cum[..., -1].exp()
    S = x.new_zeros(b, h, p, n) if state is None else state
    entering = []
    for c in range(chunks):
        entering.append(S)
        S = chunk_decay[:, :, c, None, None] * S + chunk_states[:, :, c]
    entering = torch.stack(entering, dim=2)
    y = y + (Ch @ entering.transpose(-1, -2)) * a_cum.exp()[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(b, chunks * chunk_size, h, p)[:, :length]
    return y + D[:, None] * x[:, :length], S


class SSDMixer(nn.Module):
    def __init__(self, args, n_groups: int = 1):
        super().__init__()
        self.args, self.n_groups = args, n_groups
        self.d_inner = args.expand * args.d_model
        self.n_heads = self.d_inner // args.head_dim
        conv_dim = self.d_inner + 2 * n_groups * args.d_state
        self.in_proj = nn.Linear(args.d_model, self.d_inner + conv_dim + self.n_heads, bias=False)
        self.conv = nn.Conv1d(conv_dim, conv_dim, args.conv_kernel, groups=conv_dim)  # causal: inputs come left-padded
        self.dt_bias = nn.Parameter(torch.zeros(self.n_heads))
        self.A_log = nn.Parameter(torch.zeros(self.n_heads))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = nn.RMSNorm(self.d_inner, eps=RMS_EPS)
        self.out_proj = nn.Linear(self.d_inner, args.d_model, bias=False)

    def forward(self, u: torch.Tensor, cache: MixerCache | None = None) -> torch.Tensor:
        b, length, _ = u.shape
        a, g = self.args, self.n_groups
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * g * a.d_state, self.n_heads], -1)
        window = (cache.conv if cache is not None else WindowCache(self.conv.kernel_size[0] - 1)).update_and_fetch(xbc)
        xbc = F.silu(self.conv(window.transpose(1, 2)).transpose(1, 2))
        x, B, C = xbc.split([self.d_inner, g * a.d_state, g * a.d_state], -1)
        scan = ssd_step if cache is not None and length == 1 else ssd_chunked
        y, state = scan(
            x.reshape(b, length, self.n_heads, a.head_dim),
            F.softplus(dt + self.dt_bias),
            -self.A_log.exp(),
            B.reshape(b, length, g, a.d_state),
            C.reshape(b, length, g, a.d_state),
            self.D,
            **({"chunk_size": a.chunk_size} if scan is ssd_chunked else {}),
            state=cache.ssm if cache is not None else None,
        )
        if cache is not None:
            cache.ssm = state
        return self.out_proj(self.norm(y.reshape(b, length, self.d_inner) * F.silu(z)))


@dataclass
class RouterStats:
    balance_loss: torch.Tensor
    load: torch.Tensor
    entropy: torch.Tensor
    probs: torch.Tensor  # (E,) mean router probability: with `load`, the balance loss of a batch split over ranks


class ExpertsGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(n_experts, d_ff, d_model))
        self.up = nn.Parameter(torch.zeros(n_experts, d_ff, d_model))
        self.down = nn.Parameter(torch.zeros(n_experts, d_model, d_ff))
        # every expert on every token, weighted by gates scattered over the experts: a static graph
        # (what Core ML needs) and, for a token or two, no slower than dispatching
        self.dense = False

    def forward(self, x: torch.Tensor, indices: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """x (N, d), indices/gates (N, k) -> sum_j gates[n, j] * expert_{indices[n, j]}(x[n])."""
        if self.dense:
            weights = torch.zeros(x.shape[0], self.gate.shape[0], dtype=x.dtype, device=x.device)
            weights = weights.scatter(1, indices, gates)  # (N, E)
            hidden = F.silu(torch.einsum("nd,efd->nef", x, self.gate)) * torch.einsum("nd,efd->nef", x, self.up)
            return torch.einsum("ne,nef,edf->nd", weights, hidden, self.down)
        out = torch.zeros_like(x)
        for e in range(self.gate.shape[0]):  # an expert with no tokens runs on none: every weight gets a gradient
            rows, slots = (indices == e).nonzero(as_tuple=True)
            xe = x[rows]
            ye = (F.silu(xe @ self.gate[e].T) * (xe @ self.up[e].T)) @ self.down[e].T
            out = out.index_add(0, rows, ye * gates[rows, slots, None])
        return out


class MoEFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int, beta: float = 1.0):
        super().__init__()
        self.top_k, self.beta = top_k, beta
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = ExpertsGLU(d_model, d_ff, n_experts)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None) -> tuple[torch.Tensor, RouterStats]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = self.router(flat)
        if prior is not None:
            logits = logits + self.beta * prior.reshape(flat.shape[0], -1)
        top_logits, indices = logits.topk(self.top_k, dim=-1)
        gates = top_logits.softmax(-1)
        probs = logits.softmax(-1)
        y = self.experts(flat, indices, gates)
        n_experts = probs.shape[-1]
        load = F.one_hot(indices.reshape(-1), n_experts).sum(0).to(x.dtype)
        balance = n_experts * (load / (flat.shape[0] * self.top_k) * probs.mean(0)).sum()
        entropy = -(probs * (probs + 1e-12).log()).sum(-1).mean()
        return y.reshape(shape), RouterStats(balance, load, entropy, probs.mean(0))


class Block(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.mixer = SSDMixer(args)
        self.ffn_norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.ffn = MoEFeedForward(args.d_model, args.d_ff, args.n_experts, args.top_k, args.router_beta)

    def forward(
        self, h: torch.Tensor, prior: torch.Tensor | None, cache: MixerCache | None = None
    ) -> tuple[torch.Tensor, RouterStats]:
        h = h + self.mixer(self.mixer_norm(h), cache)
        out, stats = self.ffn(self.ffn_norm(h), prior)
        return h + out, stats


class Memory(NamedTuple):
    """What each position read from the store (`meqg_mlx.vmm.model.Memory`)."""

    values: torch.Tensor  # (B, T, slots, concept_dim)
    similarity: torch.Tensor  # (B, T, slots)
    valid: torch.Tensor  # (B, T, slots) bool, or 1.0 / 0.0


class StoreMemory:
    """A run's memory (an export's memory.safetensors: edges between store concepts, by concept id, and the
    relation of each) over the store's vectors: a read of a concept along a relation returns the targets
    of the `slots` edges of that relation whose sources are most similar to it (meqg_mlx.corpus.memory)."""

    def __init__(self, edges: dict[str, torch.Tensor], ids: torch.Tensor, vectors: torch.Tensor, slots: int):
        """`ids` (N,) and `vectors` (N, dim) unit rows: the store's concepts (every id the edges name)."""
        order = ids.argsort()
        ids, self.vectors, self.slots = ids[order], vectors[order], slots
        source, target = (torch.searchsorted(ids, edges[k]) for k in ("source_id", "target_id"))
        self.by_relation = {
            int(r): (source[edges["relation"] == r], target[edges["relation"] == r]) for r in edges["relation"].unique()
        }

    def read(self, concepts: torch.Tensor, relations: torch.Tensor) -> Memory:
        """concepts (..., dim) along relations (...) -> Memory of shape (..., slots[, dim])."""
        flat, kinds = concepts.reshape(-1, concepts.shape[-1]), relations.reshape(-1)
        values = flat.new_zeros(len(flat), self.slots, flat.shape[-1])
        similarity = flat.new_zeros(len(flat), self.slots)
        valid = torch.zeros(len(flat), self.slots, dtype=torch.bool, device=flat.device)
        for relation, (source, target) in self.by_relation.items():
            asked = (kinds == relation).nonzero()[:, 0]
            k = min(self.slots, len(source))
            if not len(asked) or not k:
                continue
            top = (flat[asked] @ self.vectors[source].T).topk(k, dim=-1)
            values[asked, :k] = self.vectors[target[top.indices]]
            similarity[asked, :k], valid[asked, :k] = top.values, True
        shape = (*concepts.shape[:-1], self.slots)
        return Memory(values.reshape(*shape, -1), similarity.reshape(shape), valid.reshape(shape))


class NextConceptHead(nn.Module):
    def __init__(self, d_model: int, concept_dim: int, lags: int, correction: bool, generator: bool, memory_slots: int):
        super().__init__()
        self.lags = lags
        self.mix = nn.Linear(d_model, lags)
        if generator:
            self.generate_hidden = nn.Linear(d_model, d_model)
            self.generate = nn.Linear(d_model, concept_dim)
        self.generator = generator
        self.memory_query = nn.Linear(d_model, concept_dim) if memory_slots else None
        self.memory_sharpness = nn.Linear(d_model, 1) if memory_slots else None
        self.route = nn.Linear(d_model, 3 if generator else 2) if memory_slots else None
        self.share = nn.Linear(d_model, 1) if generator and not memory_slots else None
        self.correction = nn.Linear(d_model, concept_dim) if correction else None

    def forward(
        self, concepts: torch.Tensor, h: torch.Tensor, cache: WindowCache | None = None, memory: Memory | None = None
    ) -> torch.Tensor:
        padded = (cache if cache is not None else WindowCache(self.lags - 1)).update_and_fetch(concepts)
        # lag j: the window shifted j back; ends counted from the right, so a traced graph holds no sizes
        recent = torch.stack([padded[:, self.lags - 1 - j : (-j or None)] for j in range(self.lags)], 2)
        out = (self.mix(h).softmax(-1)[..., None] * recent).sum(2)
        generated = _unit(self.generate(F.gelu(self.generate_hidden(h)))) if self.generator else None
        if self.route is not None:
            route = self.route(h)
            if memory is not None:
                read = F.softplus(self.memory_sharpness(h)) * memory.similarity
                read = read + (memory.values @ self.memory_query(h)[..., None])[..., 0]
                # masks by arithmetic, no boolean ops: Core ML runs this on the GPU / Neural Engine in float16
                valid = memory.valid.to(read.dtype)
                weights = (read - (1 - valid) * MASKED).softmax(-1)
                retrieved = _unit((weights[..., None] * memory.values).sum(-2))
                found = valid.amax(-1, keepdim=True)
            else:
                retrieved, found = torch.zeros_like(out), torch.zeros_like(route[..., :1])
            route = torch.cat([route[..., :1], route[..., 1:2] - (1 - found) * MASKED, route[..., 2:]], -1)
            route = route.softmax(-1)
            out = route[..., :1] * _unit(out) + route[..., 1:2] * retrieved
            if generated is not None:
                out = out + route[..., 2:] * generated
        elif generated is not None:
            out = _unit(out) + torch.sigmoid(self.share(h)) * (generated - _unit(out))
        if self.correction is not None:
            out = out + self.correction(h)
        return _unit(out)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x**2).sum(-1, keepdim=True) + 1e-12)


class PlannerHead(nn.Module):
    def __init__(self, d_model: int, levels: int, codes: int):
        super().__init__()
        self.levels, self.codes = levels, codes
        self.code_embeddings = nn.ModuleList(nn.Embedding(codes, d_model) for _ in range(levels - 1))
        self.hidden = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(levels))
        self.out = nn.ModuleList(nn.Linear(d_model, codes) for _ in range(levels))

    def level_logits(self, h: torch.Tensor, prefix: torch.Tensor, level: int) -> torch.Tensor:
        """h (..., d), prefix (..., >= level) codes -> (..., C) logits of `level`."""
        x = h
        for j in range(level):
            x = x + self.code_embeddings[j](prefix[..., j])
        return self.out[level](F.gelu(self.hidden[level](x)))

    def forward(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (..., K, C) for the true codes (..., K)."""
        return torch.stack([self.level_logits(h, codes, level) for level in range(self.levels)], -2)


class ResidualVQ(nn.Module):
    """Inference half of the RVQ (encode/decode); codebooks are buffers, as they are frozen in MLX."""

    def __init__(self, dim: int, levels: int, codes: int):
        super().__init__()
        self.register_buffer("codebooks", torch.zeros(levels, codes, dim))
        self.register_buffer("cluster_size", torch.ones(levels, codes))
        self.register_buffer("embed_sum", torch.zeros(levels, codes, dim))
        self.register_buffer("code_ids", torch.arange(levels * codes, dtype=torch.int32).reshape(levels, codes))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        residual, codes = x, []
        for book in self.codebooks:
            index = ((book**2).sum(-1) - 2 * residual @ book.T).argmin(-1)
            residual = residual - book[index]
            codes.append(index)
        return torch.stack(codes, -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return sum(book[codes[..., level]] for level, book in enumerate(self.codebooks))


@dataclass
class VMMOutput:
    next_vector: torch.Tensor
    hidden: torch.Tensor
    router: list[RouterStats] = field(default_factory=list)


class VMM(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.in_proj = nn.Linear(args.concept_dim, args.d_model)
        relations = len(getattr(args, "relations", []))
        self.relation_embedding = nn.Embedding(relations, args.d_model) if relations > 1 else None
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.next_head = NextConceptHead(
            args.d_model,
            args.concept_dim,
            args.context_lags,
            args.next_correction,
            getattr(args, "next_generator", False),  # exports made before the generator lack the key
            getattr(args, "memory_slots", 0),  # or the memory
        )
        self.planner = PlannerHead(args.d_model, args.rvq_levels, args.rvq_codes)
        self.rvq = ResidualVQ(args.concept_dim, args.rvq_levels, args.rvq_codes)
        self.register_buffer("expert_centroids", torch.zeros(args.n_experts, args.concept_dim))

    def make_cache(self) -> VMMCache:
        return VMMCache(self.args.n_layers, self.args.conv_kernel, self.args.context_lags)

    def forward(
        self,
        concepts: torch.Tensor,
        cache: VMMCache | None = None,
        relations: torch.Tensor | None = None,
        memory: Memory | None = None,
    ) -> VMMOutput:
        """concepts (B, T, concept_dim) unit rows -> prediction of each next concept (continuing `cache`);
        `relations` (B, T) the relation id to follow from each position (None: `next`, id 0); `memory`
        what each position read from the store."""
        prior = concepts @ self.expert_centroids.T
        h = self.in_proj(concepts)
        if self.relation_embedding is not None:
            if relations is None:
                relations = torch.zeros(concepts.shape[:2], dtype=torch.long, device=concepts.device)
            h = h + self.relation_embedding(relations)
        stats = []
        for i, block in enumerate(self.blocks):
            h, block_stats = block(h, prior, cache.layers[i] if cache is not None else None)
            stats.append(block_stats)
        h = self.norm(h)
        next_vector = self.next_head(concepts, h, cache.concepts if cache is not None else None, memory)
        if cache is not None:
            cache.offset += concepts.shape[1]
        return VMMOutput(next_vector, h, stats)


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu") -> VMM:
    """The VMM of a `meqg export torch` directory (config.json and model.safetensors)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    model = VMM(SimpleNamespace(**{"conv_kernel": 4, **config["model_args"]}))  # older exports: always 4
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    return model.to(device).eval()
