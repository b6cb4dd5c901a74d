"""A trained inverter on disk: RUN/inverter/model/{model.safetensors, inverter.json, tokenizer.json}.

The model directory is written beside the old one and swapped in by rename, so a
crash mid-save leaves the previous inverter whole.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..atomic import replaced_dir
from ..errors import MeqgError
from ..runs import WEIGHTS
from .inverter import Inverter, ModelArgs
from .tokens import BOS, EOS, InverterVocab, SurfaceForms

FORMAT = 1


class TrainedInverter:
    """An inverter with its vocabulary: vectors in, texts out."""

    def __init__(self, model: Inverter, vocab: InverterVocab, meta: dict):
        self.model, self.vocab, self.meta = model, vocab, meta

    @property
    def dim(self) -> int:
        return self.model.args.concept_dim

    def generate(
        self,
        targets: np.ndarray,
        hypotheses: np.ndarray | None = None,
        temperature: float = 0.0,
        seeds: np.ndarray | None = None,
        deadline: float | None = None,
        hypothesis_texts: list[str] | None = None,
    ) -> list[str]:
        """Texts for unit target rows; hypotheses are the embeddings of earlier texts (None: first pass).

        Sampling (temperature > 0) takes one seed per row. Past `deadline` (time.perf_counter()) the
        texts end where they are. This inverter reads hypotheses as vectors only; `hypothesis_texts` is
        for vec2text correctors, which read tokens too.
        """
        targets = mx.array(np.asarray(targets, np.float32))
        hypotheses = mx.zeros_like(targets) if hypotheses is None else mx.array(np.asarray(hypotheses, np.float32))
        ids = self.model.generate(targets, hypotheses, BOS, EOS, temperature, seeds, deadline)
        return self.vocab.decode(np.array(ids))

    def save(
        self, directory: str | Path, extra: dict | None = None, files: dict[str, Callable[[Path], None]] | None = None
    ) -> Path:
        """Weights, tokenizer and inverter.json (meta plus `extra`); `files` name more files and how to
        write each (a training run's optimizer and RNG state), all swapped in together."""
        directory = Path(directory)
        with replaced_dir(directory) as tmp:
            for name, write in (files or {}).items():
                write(tmp / name)
            self.model.save_weights(str(tmp / WEIGHTS))
            shutil.copyfile(self.vocab.tokenizer_path, tmp / "tokenizer.json")
            self.meta = {
                **self.meta,
                **(extra or {}),
                "format": FORMAT,
                "args": dataclasses.asdict(self.model.args),
                "token_ids": self.vocab.token_ids.tolist(),
                **({"surface": self.vocab.surface.to_json()} if self.vocab.surface else {}),
            }
            (tmp / "inverter.json").write_text(json.dumps(self.meta))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "TrainedInverter":
        directory = Path(directory)
        try:
            meta = json.loads((directory / "inverter.json").read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            model = Inverter(ModelArgs(**meta["args"]))
            model.load_weights(str(directory / WEIGHTS), strict=True)
            surface = SurfaceForms.from_json(meta["surface"]) if "surface" in meta else None
            vocab = InverterVocab(directory / "tokenizer.json", np.array(meta["token_ids"], np.int64), surface)
        except FileNotFoundError as exc:
            raise MeqgError(
                f"no trained inverter in {directory} ({Path(exc.filename or '').name} missing): "
                f"train one with `meqg inverter train`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise MeqgError(f"corrupt inverter {directory}: {str(exc).splitlines()[0]}") from exc
        mx.eval(model.parameters())
        return cls(model, vocab, meta)
