"""The Vector Mamba MoE in PyTorch: the same math and parameter names as `meqg_mlx.vmm.model`.

Used to run meqg weights on CUDA machines and as the peer in bench/train.py. Parameter
names and layouts match the MLX model's safetensors (weights.py maps the one
difference, the depthwise convolution's kernel axis), so a state dict moves between
the two unchanged otherwise. The MoE dispatches per expert (the usual PyTorch way:
each expert runs on the tokens routed to it) where MLX uses `gather_mm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from meqg_mlx.vmm.model import ModelArgs

RMS_EPS = 1e-5  # mlx.nn.RMSNorm's default


def _heads(v: torch.Tensor, heads: int) -> torch.Tensor:
    return v.repeat_interleave(heads // v.shape[2], dim=2)


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    q = a.shape[-1]
    cumulative = a.cumsum(-1)
    sums = cumulative[..., :, None] - cumulative[..., None, :]
    causal = torch.ones(q, q, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~causal, float("-inf"))


def ssd_chunked(x, dt, A, B, C, D, chunk_size: int = 64):
    """Mamba-2's chunked scan, as `meqg_mlx.vmm.ssd.ssd_chunked` (shapes in its docstring)."""
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
    S = x.new_zeros(b, h, p, n)
    entering = []
    for c in range(chunks):
        entering.append(S)
        S = chunk_decay[:, :, c, None, None] * S + chunk_states[:, :, c]
    entering = torch.stack(entering, dim=2)
    y = y + (Ch @ entering.transpose(-1, -2)) * a_cum.exp()[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(b, chunks * chunk_size, h, p)[:, :length]
    return y + D[:, None] * x[:, :length], S


class SSDMixer(nn.Module):
    def __init__(self, args: ModelArgs, n_groups: int = 1, conv_kernel: int = 4):
        super().__init__()
        self.args, self.n_groups = args, n_groups
        self.d_inner = args.expand * args.d_model
        self.n_heads = self.d_inner // args.head_dim
        conv_dim = self.d_inner + 2 * n_groups * args.d_state
        self.in_proj = nn.Linear(args.d_model, self.d_inner + conv_dim + self.n_heads, bias=False)
        self.conv = nn.Conv1d(conv_dim, conv_dim, conv_kernel, groups=conv_dim, padding=conv_kernel - 1)
        self.dt_bias = nn.Parameter(torch.zeros(self.n_heads))
        self.A_log = nn.Parameter(torch.zeros(self.n_heads))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = nn.RMSNorm(self.d_inner, eps=RMS_EPS)
        self.out_proj = nn.Linear(self.d_inner, args.d_model, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, length, _ = u.shape
        a, g = self.args, self.n_groups
        z, xbc, dt = self.in_proj(u).split([self.d_inner, self.d_inner + 2 * g * a.d_state, self.n_heads], -1)
        xbc = F.silu(self.conv(xbc.transpose(1, 2))[..., :length].transpose(1, 2))
        x, B, C = xbc.split([self.d_inner, g * a.d_state, g * a.d_state], -1)
        y, _ = ssd_chunked(
            x.reshape(b, length, self.n_heads, a.head_dim),
            F.softplus(dt + self.dt_bias),
            -self.A_log.exp(),
            B.reshape(b, length, g, a.d_state),
            C.reshape(b, length, g, a.d_state),
            self.D,
            a.chunk_size,
        )
        return self.out_proj(self.norm(y.reshape(b, length, self.d_inner) * F.silu(z)))


@dataclass
class RouterStats:
    balance_loss: torch.Tensor
    load: torch.Tensor
    entropy: torch.Tensor


class ExpertsGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, n_experts: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(n_experts, d_ff, d_model))
        self.up = nn.Parameter(torch.zeros(n_experts, d_ff, d_model))
        self.down = nn.Parameter(torch.zeros(n_experts, d_model, d_ff))

    def forward(self, x: torch.Tensor, indices: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """x (N, d), indices/gates (N, k) -> sum_j gates[n, j] * expert_{indices[n, j]}(x[n])."""
        out = torch.zeros_like(x)
        for e in range(self.gate.shape[0]):
            rows, slots = (indices == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
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
        load = torch.bincount(indices.reshape(-1), minlength=n_experts).to(x.dtype)
        balance = n_experts * (load / (flat.shape[0] * self.top_k) * probs.mean(0)).sum()
        entropy = -(probs * (probs + 1e-12).log()).sum(-1).mean()
        return y.reshape(shape), RouterStats(balance, load, entropy)


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.mixer = SSDMixer(args)
        self.ffn_norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.ffn = MoEFeedForward(args.d_model, args.d_ff, args.n_experts, args.top_k, args.router_beta)

    def forward(self, h: torch.Tensor, prior: torch.Tensor | None) -> tuple[torch.Tensor, RouterStats]:
        h = h + self.mixer(self.mixer_norm(h))
        out, stats = self.ffn(self.ffn_norm(h), prior)
        return h + out, stats


class NextConceptHead(nn.Module):
    def __init__(self, d_model: int, concept_dim: int, lags: int, correction: bool):
        super().__init__()
        self.lags = lags
        self.mix = nn.Linear(d_model, lags)
        self.correction = nn.Linear(d_model, concept_dim) if correction else None

    def forward(self, concepts: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        steps = concepts.shape[1]
        padded = F.pad(concepts, (0, 0, self.lags - 1, 0))
        recent = torch.stack([padded[:, self.lags - 1 - j : self.lags - 1 - j + steps] for j in range(self.lags)], 2)
        out = (self.mix(h).softmax(-1)[..., None] * recent).sum(2)
        if self.correction is not None:
            out = out + self.correction(h)
        return out * torch.rsqrt((out**2).sum(-1, keepdim=True) + 1e-12)


class PlannerHead(nn.Module):
    def __init__(self, d_model: int, levels: int, codes: int):
        super().__init__()
        self.levels = levels
        self.code_embeddings = nn.ModuleList(nn.Embedding(codes, d_model) for _ in range(levels - 1))
        self.hidden = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(levels))
        self.out = nn.ModuleList(nn.Linear(d_model, codes) for _ in range(levels))

    def forward(self, h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (..., K, C) for the true codes (..., K)."""
        logits = []
        for level in range(self.levels):
            x = h
            for j in range(level):
                x = x + self.code_embeddings[j](codes[..., j])
            logits.append(self.out[level](F.gelu(self.hidden[level](x))))
        return torch.stack(logits, -2)


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
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.in_proj = nn.Linear(args.concept_dim, args.d_model)
        self.blocks = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = nn.RMSNorm(args.d_model, eps=RMS_EPS)
        self.next_head = NextConceptHead(args.d_model, args.concept_dim, args.context_lags, args.next_correction)
        self.planner = PlannerHead(args.d_model, args.rvq_levels, args.rvq_codes)
        self.rvq = ResidualVQ(args.concept_dim, args.rvq_levels, args.rvq_codes)
        self.register_buffer("expert_centroids", torch.zeros(args.n_experts, args.concept_dim))

    def forward(self, concepts: torch.Tensor) -> VMMOutput:
        prior = concepts @ self.expert_centroids.T
        h = self.in_proj(concepts)
        stats = []
        for block in self.blocks:
            h, block_stats = block(h, prior)
            stats.append(block_stats)
        h = self.norm(h)
        return VMMOutput(self.next_head(concepts, h), h, stats)
