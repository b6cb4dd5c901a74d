"""Pretrained vec2text models (Morris et al. 2023) from local directories, run by transformers' T5.

A vec2text inversion checkpoint is an MLP (`embedding_transform`: Linear, Dropout, GELU,
Linear) that turns an embedding into `num_repeat_tokens` T5 input embeddings, and a
T5ForConditionalGeneration under `encoder_decoder.`. A corrector checkpoint has three such
MLPs (target, difference, hypothesis), a LayerNorm, and reads
[eos, target x R, eos, hypothesis x R, eos, difference x R, eos, hypothesis tokens].
The vec2text package itself is not needed (it does not load offline and pins 768 dims):
the T5 shape, the embedder width and R are read from the weights. GTR-base inverters
expect unnormalised mean-pooled T5-encoder vectors: `MLXSentenceEncoder(gtr, output="mean")`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from ..encoder.base import load_tokenizer
from ..errors import InputError, MeqgError

TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight")
PAD, EOS = 0, 1  # T5's ids; generation starts from PAD


def read_weights(directory: Path) -> dict:
    import torch

    try:
        if (directory / "model.safetensors").is_file():
            from safetensors.torch import load_file

            return load_file(str(directory / "model.safetensors"))
        if (directory / "pytorch_model.bin").is_file():
            return torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (safetensors and torch raise many types for damaged files)
        raise MeqgError(f"corrupt vec2text weights in {directory}: {str(exc).splitlines()[0]}") from exc
    raise InputError(f"no model.safetensors or pytorch_model.bin in {directory}")


def t5_config_from_weights(weights: dict, max_distance: int = 128):
    """The T5 shape a state dict implies (names without the `encoder_decoder.` prefix)."""
    from transformers import T5Config

    def count(stack: str) -> int:
        return 1 + max(int(m.group(1)) for name in weights if (m := re.match(rf"{stack}\.block\.(\d+)\.", name)))

    bias = weights["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    heads = bias.shape[1]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in weights
    wi = weights["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"]
    shared = weights["shared.weight"]
    tied = "lm_head.weight" not in weights or bool((weights["lm_head.weight"] == shared).all())
    return T5Config(
        vocab_size=shared.shape[0],
        d_model=shared.shape[1],
        num_heads=heads,
        d_kv=weights["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
        d_ff=wi.shape[0],
        num_layers=count("encoder"),
        num_decoder_layers=count("decoder"),
        relative_attention_num_buckets=bias.shape[0],
        relative_attention_max_distance=max_distance,
        feed_forward_proj="gated-gelu" if gated else "relu",
        tie_word_embeddings=tied,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )


def embedding_transform(weights: dict, name: str):
    """vec2text's Sequential(Linear, Dropout, GELU, Linear), loaded from `name`.0 / `name`.3."""
    import torch.nn as nn

    first, last = weights[f"{name}.0.weight"], weights[f"{name}.3.weight"]
    module = nn.Sequential(
        nn.Linear(first.shape[1], first.shape[0]), nn.Dropout(0.0), nn.GELU(), nn.Linear(last.shape[1], last.shape[0])
    )
    module.load_state_dict({k.removeprefix(f"{name}."): v for k, v in weights.items() if k.startswith(f"{name}.")})
    return module.eval()


class Vec2TextCheckpoint:
    """One vec2text checkpoint directory: an inversion model or a corrector."""

    def __init__(self, directory: str | Path):
        import torch
        from transformers import T5ForConditionalGeneration

        directory = Path(directory)
        if not directory.is_dir():
            raise InputError(f"vec2text model directory not found: {directory}")
        config = json.loads((directory / "config.json").read_text()) if (directory / "config.json").is_file() else {}
        weights = {k: v.float() for k, v in read_weights(directory).items() if not k.startswith("embedder.")}
        self.kind = "corrector" if "embedding_transform_1.0.weight" in weights else "inversion"
        names = (
            ["embedding_transform_1", "embedding_transform_2", "embedding_transform_3"]
            if self.kind == "corrector"
            else ["embedding_transform"]
        )
        t5_weights = {
            k.removeprefix("encoder_decoder."): v for k, v in weights.items() if k.startswith("encoder_decoder.")
        }
        try:
            self.t5 = T5ForConditionalGeneration(
                t5_config_from_weights(t5_weights, config.get("relative_attention_max_distance", 128))
            ).eval()
            missing, unexpected = self.t5.load_state_dict(t5_weights, strict=False)
            if unexpected or set(missing) - set(TIED):
                raise ValueError(f"unexpected {unexpected[:3]}, missing {sorted(set(missing) - set(TIED))[:3]}")
            self.t5.tie_weights()
            self.transforms = [embedding_transform(weights, name) for name in names]
            self.layernorm = None
            if self.kind == "corrector":
                width = weights["layernorm.weight"].shape[0]
                self.layernorm = torch.nn.LayerNorm(width).eval()
                self.layernorm.load_state_dict(
                    {"weight": weights["layernorm.weight"], "bias": weights["layernorm.bias"]}
                )
        except (KeyError, ValueError, RuntimeError) as exc:
            raise MeqgError(
                f"{directory} is not a vec2text checkpoint this loader knows: {str(exc).splitlines()[0]}"
            ) from exc
        self.d_model = self.t5.config.d_model
        self.embedder_dim = self.transforms[0][0].in_features
        self.repeat = self.transforms[0][3].out_features // self.d_model

    def project(self, transform, vectors):
        return transform(vectors).reshape(len(vectors), self.repeat, self.d_model)

    def inputs(self, targets, hypotheses=None, hypothesis_ids=None, hypothesis_mask=None):
        """T5 encoder inputs_embeds and attention mask, laid out as vec2text does."""
        import torch

        if self.kind == "inversion":
            embeds = self.project(self.transforms[0], targets)
            return embeds, torch.ones(embeds.shape[:2], dtype=torch.long)
        n = len(targets)
        sep = self.t5.get_input_embeddings()(torch.full((n, 1), EOS, dtype=torch.long))
        parts = [
            sep,
            self.project(self.transforms[0], targets),
            sep,
            self.project(self.transforms[2], hypotheses),
            sep,
            self.project(self.transforms[1], targets - hypotheses),
            sep,
            self.t5.get_input_embeddings()(hypothesis_ids),
        ]
        embeds = self.layernorm(torch.cat(parts, dim=1))
        mask = torch.cat([torch.ones((n, 4 + 3 * self.repeat), dtype=torch.long), hypothesis_mask], dim=1)
        return embeds, mask


class Vec2TextInverter:
    """vec2text's inversion model for the first pass and its corrector for the steps after it.

    `generate` has TrainedInverter's signature, so `Corrector` runs vec2text's loop
    (hypotheses re-embedded, best kept) with these models.
    """

    def __init__(
        self,
        inversion_dir: str | Path,
        tokenizer_path: str | Path,
        corrector_dir: str | Path | None = None,
        max_tokens: int = 32,
        num_beams: int = 1,
    ):
        if num_beams < 1 or max_tokens < 1:
            raise InputError(f"vec2text needs num_beams >= 1 and max_tokens >= 1, got {num_beams} and {max_tokens}")
        self.inversion = Vec2TextCheckpoint(inversion_dir)
        self.corrector = Vec2TextCheckpoint(corrector_dir) if corrector_dir else None
        if self.inversion.kind != "inversion" or self.corrector is not None and self.corrector.kind != "corrector":
            raise InputError("give a vec2text inversion model, and a corrector as the corrector")
        self.dim = self.inversion.embedder_dim
        if self.corrector is not None and self.corrector.embedder_dim != self.dim:
            raise InputError(f"the corrector reads {self.corrector.embedder_dim}-d vectors, the inverter {self.dim}-d")
        self.tokenizer = load_tokenizer(tokenizer_path)
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.max_tokens, self.num_beams = max_tokens, num_beams
        self.normalized_inputs = False

    def generate(
        self,
        targets: np.ndarray,
        hypotheses: np.ndarray | None = None,
        temperature: float = 0.0,
        seeds: np.ndarray | None = None,
        deadline: float | None = None,
        hypothesis_texts: list[str] | None = None,
    ) -> list[str]:
        """Greedy (or beam) texts for the whole batch; sampled ones row by row, each from its own seed."""
        if temperature <= 0:
            return self._generate(
                targets, hypotheses, {"do_sample": False, "num_beams": self.num_beams}, deadline, hypothesis_texts
            )
        if seeds is None or len(seeds) != len(targets):
            raise ValueError("sampling needs one seed per row")
        texts = []
        for row, seed in enumerate(seeds):
            pick = slice(row, row + 1)
            texts += self._generate(
                targets[pick],
                None if hypotheses is None else hypotheses[pick],
                {"do_sample": True, "temperature": temperature},
                deadline,
                None if hypothesis_texts is None else hypothesis_texts[pick],
                int(seed) % 2**63,
            )
        return texts

    def _generate(self, targets, hypotheses, options: dict, deadline: float | None, hypothesis_texts, seed: int = 0):
        import torch

        model = self.inversion if hypotheses is None or self.corrector is None else self.corrector
        with torch.no_grad():
            targets_t = torch.from_numpy(np.asarray(targets, np.float32))
            if model is self.corrector:
                ids, mask = self.token_batch(hypothesis_texts or [""] * len(targets))
                embeds, attention = model.inputs(
                    targets_t, torch.from_numpy(np.asarray(hypotheses, np.float32)), ids, mask
                )
            else:
                embeds, attention = model.inputs(targets_t)
            if deadline is not None:
                options = {**options, "max_time": max(deadline - time.perf_counter(), 0.01)}
            torch.manual_seed(seed)
            out = model.t5.generate(
                inputs_embeds=embeds,
                attention_mask=attention,
                max_new_tokens=self.max_tokens,
                decoder_start_token_id=PAD,
                eos_token_id=EOS,
                pad_token_id=PAD,
                **options,
            )
        return [self.tokenizer.decode(row.tolist(), skip_special_tokens=True).strip() for row in out]

    def token_batch(self, texts: list[str]):
        import torch

        encodings = self.tokenizer.encode_batch(texts)
        width = max(max(len(e.ids) for e in encodings), 1)
        ids = torch.zeros((len(texts), width), dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids, dtype=torch.long)
            mask[row, : len(encoding.ids)] = 1
        return ids, mask
