"""Training the inverter on a store's texts and vectors (`meqg inverter train`).

Each example is a store concept of at most `max_tokens` tokens. A third of the time
the model sees no hypothesis (the first pass); otherwise the hypothesis is a near
miss, as the corrector loop will see: the nearest other concept, the concept's own
text with a fifth of its tokens replaced, or (vec2text's corrector data) the inverter's
own first-pass text for it, regenerated for `own_hypotheses` random training texts every
`own_hypotheses_every` steps, so the corrector learns to mend the mistakes it makes now.
All are embedded by the same embedder.
Concepts with id % held_out_every == 0 are never trained on: bench/inversion.py
measures on them. A batch holds texts of one length bucket (multiples of 8 tokens),
so it computes no more padding than its longest text needs: a third less work per
step than padding every batch to max_tokens on the stores meqg builds.

A run resumes exactly (`resume=True`: weights, optimizer, data RNG and step from the
inverter's last checkpoint) and never silently replaces an inverter (`force=True` does,
with its telemetry).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..concepts.store import ConceptStore
from ..config import MeqgConfig, to_yaml
from ..encoder.base import Embedder, load_tokenizer
from ..errors import InputError
from ..runs import OPTIMIZER, STATE, RunDir
from ..schedules import warmup_cosine
from ..telemetry import TelemetryWriter
from .checkpoint import TrainedInverter
from .inverter import Inverter
from .tokens import PAD, InverterVocab
from ..progress import Progress, no_progress

EVAL_TEXTS = 256
OWN_HYPOTHESES = "own_hypotheses.npz"  # the rows and vectors of the inverter's own texts, in a checkpoint
BUCKET = 8  # tokens: a batch is padded to the next multiple of this above its bucket's texts


@dataclass
class Examples:
    ids: np.ndarray
    texts: list[str]
    vectors: np.ndarray


@dataclass
class InverterSummary:
    directory: Path
    steps: int
    trained_texts: int
    held_out_texts: int
    first_loss: float
    last_loss: float
    held_out_loss: float
    seconds: float
    interrupted: bool


def split_examples(
    store: ConceptStore, tokenizer_path: str | Path, max_tokens: int, held_out_every: int
) -> tuple[Examples, Examples]:
    """(training, held-out) store concepts whose texts fit in max_tokens (BOS and EOS included)."""
    table = store.columns(["concept_id", "text"])
    ids = table["concept_id"].to_numpy().astype(np.int64)
    texts = table["text"].to_pylist()
    encoded = load_tokenizer(tokenizer_path).encode_batch(texts, add_special_tokens=False)
    fits = np.array([0 < len(e.ids) <= max_tokens - 2 for e in encoded], dtype=bool)
    ids = ids[fits]
    vectors = store.vectors(ids.tolist())
    held = ids % held_out_every == 0
    return tuple(
        Examples(ids[mask], [texts[i] for i in np.flatnonzero(fits)[mask]], vectors[mask]) for mask in (~held, held)
    )


def nearest_others(vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Index of each row's most similar other row."""
    out = np.empty(len(vectors), np.int64)
    for start in range(0, len(vectors), chunk):
        scores = vectors[start : start + chunk] @ vectors.T
        scores[np.arange(len(scores)), np.arange(start, start + len(scores))] = -np.inf
        out[start : start + chunk] = scores.argmax(axis=1)
    return out


def corrupt(texts: list[str], vocab: InverterVocab, rng: np.random.Generator, rate: float = 0.2) -> list[str]:
    """Each text with `rate` of its tokens (at least one) replaced by random vocabulary tokens."""
    out = []
    for text, enc in zip(texts, vocab.tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = np.array(enc.ids, np.int64)
        hit = rng.choice(len(ids), size=max(1, round(rate * len(ids))), replace=False)
        ids[hit] = rng.choice(vocab.token_ids, size=len(hit))
        noisy = vocab.tokenizer.decode(ids.tolist())
        out.append(noisy if noisy.strip() else text)
    return out


def embed(embedder: Embedder, texts: list[str], stage: str, progress: Progress, batch: int = 512) -> np.ndarray:
    out = np.empty((len(texts), embedder.dim), np.float32)
    for start in range(0, len(texts), batch):
        out[start : start + batch] = embedder.encode(texts[start : start + batch])
        progress(stage, min(start + batch, len(texts)), len(texts))
    return out


def token_loss(model: Inverter, targets: mx.array, hypotheses: mx.array, tokens: mx.array) -> tuple[mx.array, mx.array]:
    """Mean cross-entropy of each next token after BOS, and the fraction predicted right."""
    logits = model(tokens[:, :-1], model.prefix(targets, hypotheses))
    labels = tokens[:, 1:]
    mask = labels != PAD
    count = mask.sum()
    loss = (nn.losses.cross_entropy(logits, labels) * mask).sum() / count
    correct = ((logits.argmax(-1) == labels) & mask).sum() / count
    return loss, correct


class InverterTraining:
    """Prepares the data once, then `train()` steps AdamW with telemetry, evals and atomic saves."""

    def __init__(
        self,
        store: ConceptStore,
        run_dir: str | Path,
        embedder: Embedder,
        config: MeqgConfig,
        progress: Progress | None = None,
        seed: int = 0,
        resume: bool = False,
        force: bool = False,
    ):
        if not hasattr(embedder, "tokenizer_path"):
            raise InputError(f"the inverter needs its embedder's tokenizer.json; {embedder.name} has none")
        store.check_model(embedder.name, embedder.dim)
        run = RunDir(run_dir)
        self.inverter = run.inverter
        self.run_id = run.for_store(store.uri, to_yaml(config), store.record())["run_id"]
        self.resumed = self._resume_state() if resume else None
        if not resume:
            self._make_room(force)
        self.store, self.embedder, self.config = store, embedder, config
        self.inversion = config.inversion
        self.progress = progress or no_progress
        self.rng = np.random.default_rng(seed)
        args = config.inverter
        self.train_set, self.held_out = split_examples(
            store, embedder.tokenizer_path, args.max_tokens, self.inversion.held_out_every
        )
        if len(self.train_set.ids) < 2:
            raise InputError(
                f"{store.uri} has {len(self.train_set.ids)} concepts of <= {args.max_tokens} tokens "
                f"outside the held-out set: too few to train an inverter"
            )
        self.vocab = InverterVocab.from_texts(embedder.tokenizer_path, self.train_set.texts)
        self.tokens = self.vocab.encode(self.train_set.texts, args.max_tokens)
        self.buckets = length_buckets((self.tokens != PAD).sum(axis=1), BUCKET)
        self.held_tokens = (
            self.vocab.encode(self.held_out.texts[:EVAL_TEXTS], args.max_tokens) if len(self.held_out.ids) else None
        )
        self.neighbours = nearest_others(self.train_set.vectors)
        self.corrupted = embed(
            embedder, corrupt(self.train_set.texts, self.vocab, self.rng), "embedding near misses", self.progress
        )
        self.own = np.zeros_like(self.train_set.vectors)  # row i: the embedding of the inverter's text for it
        self.has_own = np.zeros(len(self.own), bool)
        mx.random.seed(seed)  # the same store, config and seed train the same inverter
        self.model = Inverter(replace(args, concept_dim=store.dim, vocab_size=self.vocab.size))
        table = embedder.word_embeddings() if hasattr(embedder, "word_embeddings") else None
        if table is not None and table.shape[1] == args.hidden:
            self.model.embed.weight = mx.array(self.vocab.word_embeddings(table))
        mx.eval(self.model.parameters())

    def _make_room(self, force: bool) -> None:
        """Refuse to replace an inverter unless `force`; with it, the old one and its telemetry go."""
        if not any(p.exists() for p in (self.inverter.model_dir, self.inverter.telemetry_path)):
            return
        if not force:
            step = saved_step(self.inverter.model_dir)
            raise InputError(
                f"{self.inverter.path} already holds an inverter"
                f"{f' (step {step})' if step is not None else ''}: pass --resume to continue it "
                f"or --force to replace it"
            )
        shutil.rmtree(self.inverter.path)

    def _resume_state(self) -> dict:
        path = resumable(self.inverter) / STATE
        try:
            state = json.loads(path.read_text())
            if not {"step", "rng", "telemetry_run"} <= set(state):
                raise ValueError(f"{STATE} lacks the training state")
            return state
        except (OSError, ValueError) as exc:
            raise InputError(f"corrupt inverter training state {path}: {exc}") from exc

    def batch(self, size: int) -> tuple[mx.array, mx.array, mx.array]:
        """A batch from one length bucket (chosen in proportion to its texts), padded to that bucket."""
        bucket = self.rng.choice(len(self.buckets.widths), p=self.buckets.shares)
        rows = self.rng.choice(self.buckets.rows[bucket], size)
        kind = self.rng.choice(4, size, p=[3 / 9, 2 / 9, 2 / 9, 2 / 9])
        kind[(kind == 3) & ~self.has_own[rows]] = 2  # no own text for the row yet: a corrupted one
        hypotheses = np.where((kind == 1)[:, None], self.train_set.vectors[self.neighbours[rows]], self.corrupted[rows])
        hypotheses[kind == 3] = self.own[rows[kind == 3]]
        hypotheses[kind == 0] = 0.0
        tokens = self.tokens[rows, : self.buckets.widths[bucket]]
        return mx.array(self.train_set.vectors[rows]), mx.array(hypotheses), mx.array(tokens)

    def regenerate_own_hypotheses(self, chunk: int = 256) -> None:
        """The inverter's greedy first-pass texts for `own_hypotheses` random training rows, embedded."""
        count = min(self.inversion.own_hypotheses, len(self.own))
        if count == 0:
            return
        rows = self.rng.choice(len(self.own), count, replace=False)
        inverter, texts = TrainedInverter(self.model, self.vocab, {}), []
        for start in range(0, count, chunk):
            texts += inverter.generate(self.train_set.vectors[rows[start : start + chunk]])
            self.progress("writing own hypotheses", min(start + chunk, count), count)
        self.own[rows] = embed(
            self.embedder, [t if t.strip() else "." for t in texts], "embedding own hypotheses", self.progress
        )
        self.has_own[rows] = True

    def held_out_loss(self) -> tuple[float, float]:
        if self.held_tokens is None:
            return float("nan"), float("nan")
        targets = mx.array(self.held_out.vectors[: len(self.held_tokens)])
        loss, correct = token_loss(self.model, targets, mx.zeros_like(targets), mx.array(self.held_tokens))
        return loss.item(), correct.item()

    def train(self, should_stop: Callable[[], bool] = lambda: False) -> InverterSummary:
        s = self.inversion
        schedule = warmup_cosine(
            s.learning_rate,
            s.warmup_steps,
            s.steps - s.warmup_steps,
            start=s.learning_rate * 0.01,
            end=s.learning_rate * 0.05,
        )
        optimizer = optim.AdamW(schedule, weight_decay=0.01)
        first = 1
        if self.resumed is not None:
            first = self._restore(optimizer)
            if first > s.steps:
                raise InputError(
                    f"the inverter in {self.inverter.path} is already at step {first - 1}, so --steps "
                    f"{s.steps} leaves nothing to train: give --steps above {first - 1}"
                )
        state = [self.model.state, optimizer.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(targets, hypotheses, tokens):
            (loss, _), grads = nn.value_and_grad(self.model, token_loss)(self.model, targets, hypotheses, tokens)
            grads, _ = optim.clip_grad_norm(grads, 1.0)
            optimizer.update(self.model, grads)
            return loss

        self.inverter.path.mkdir(parents=True, exist_ok=True)
        self.inverter.write_config(to_yaml(self.config))
        telemetry_run = (self.resumed or {}).get("telemetry_run") or f"{self.run_id}-inverter-{uuid.uuid4().hex[:6]}"
        telemetry = TelemetryWriter(self.inverter, telemetry_run, first - 1 if self.resumed else None)
        start = time.perf_counter()
        losses, held, done, interrupted = [], (float("nan"), float("nan")), first - 1, False
        for done in range(first, s.steps + 1):
            if should_stop():
                interrupted, done = True, done - 1
                break
            tick = time.perf_counter()
            batch = self.batch(s.batch_size)
            loss = step(*batch).item()
            losses.append(loss)
            telemetry.emit(
                "step",
                done,
                loss=loss,
                lr=optimizer.learning_rate.item(),
                tokens_per_s=batch[2].shape[0] * (batch[2].shape[1] - 1) / (time.perf_counter() - tick),
                seconds=time.perf_counter() - start,
            )
            self.progress(f"inverter loss {loss:.3f}", done, s.steps)
            if s.own_hypotheses and done % s.own_hypotheses_every == 0 and done < s.steps:
                self.regenerate_own_hypotheses()
            if done % s.eval_every == 0 or done == s.steps:
                held = self.checkpoint(telemetry, done, losses, optimizer)
        if interrupted and done >= first:
            held = self.checkpoint(telemetry, done, losses, optimizer)
        seconds = time.perf_counter() - start
        telemetry.emit(
            "run", done, status="interrupted" if interrupted else "finished", target=s.steps, seconds=seconds
        )
        telemetry.close()
        return InverterSummary(
            self.inverter.model_dir,
            done,
            len(self.train_set.ids),
            len(self.held_out.ids),
            losses[0] if losses else float("nan"),
            float(np.mean(losses[-20:])) if losses else float("nan"),
            held[0],
            seconds,
            interrupted,
        )

    def _restore(self, optimizer: optim.Optimizer) -> int:
        """Weights, optimizer state and data RNG of the last checkpoint; returns the next step."""
        directory = self.inverter.model_dir
        trained = TrainedInverter.load(directory)
        if trained.vocab.token_ids.tolist() != self.vocab.token_ids.tolist() or trained.model.args != self.model.args:
            raise InputError(
                f"the inverter in {self.inverter.path} was trained on other texts or another shape than "
                f"this store and config give: resume it with its own store, or --force a new one"
            )
        self.model.update(trained.model.parameters())
        try:
            optimizer.state = tree_unflatten(list(mx.load(str(directory / OPTIMIZER)).items()))
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"corrupt inverter optimizer state in {directory}: {exc}") from exc
        self.rng.bit_generator.state = self.resumed["rng"]
        if (directory / OWN_HYPOTHESES).exists():
            with np.load(directory / OWN_HYPOTHESES) as own:
                self.own[own["rows"]], self.has_own[own["rows"]] = own["vectors"], True
        return int(self.resumed["step"]) + 1

    def checkpoint(
        self, telemetry: TelemetryWriter, step: int, losses: list[float], optimizer: optim.Optimizer
    ) -> tuple[float, float]:
        held = self.held_out_loss()
        telemetry.emit(
            "eval",
            step,
            train_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
            held_out_loss=held[0],
            held_out_token_accuracy=held[1],
        )
        training_state = {"step": step, "rng": self.rng.bit_generator.state, "telemetry_run": telemetry.run_id}
        TrainedInverter(self.model, self.vocab, {}).save(
            self.inverter.model_dir,
            {
                "embedder": self.embedder.name,
                "store": self.store.uri,
                "step": step,
                "held_out_every": self.inversion.held_out_every,
                "trained_texts": len(self.train_set.ids),
                "held_out_loss": held[0],
            },
            {
                OPTIMIZER: lambda path: mx.save_safetensors(str(path), dict(tree_flatten(optimizer.state))),
                STATE: lambda path: path.write_text(json.dumps(training_state)),
                OWN_HYPOTHESES: self._save_own_hypotheses,
            },
        )
        telemetry.emit("checkpoint", step, action="saved", path=str(self.inverter.model_dir))
        return held

    def _save_own_hypotheses(self, path: Path) -> None:
        rows = np.flatnonzero(self.has_own)
        with path.open("wb") as f:
            np.savez(f, rows=rows, vectors=self.own[rows])


@dataclass
class LengthBuckets:
    rows: list[np.ndarray]  # the texts of each bucket
    widths: np.ndarray  # the tokens each bucket's batches are padded to
    shares: np.ndarray  # the fraction of texts in each bucket


def length_buckets(lengths: np.ndarray, width: int) -> LengthBuckets:
    """Texts grouped by their token count rounded up to a multiple of `width`."""
    padded = -(-lengths // width) * width
    widths = np.unique(padded)
    rows = [np.flatnonzero(padded == w) for w in widths]
    return LengthBuckets(rows, np.minimum(widths, lengths.max()), np.array([len(r) for r in rows]) / len(lengths))


def resumable(inverter: RunDir) -> Path:
    """The model directory of a run's inverter that can be resumed; none is a one-line error."""
    if not (inverter.model_dir / STATE).exists():
        raise InputError(f"no inverter to resume in {inverter.path}: train one first (without --resume)")
    return inverter.model_dir


def saved_step(model_dir: Path) -> int | None:
    """The step of the inverter saved in `model_dir`, when it can be read."""
    try:
        return int(json.loads((model_dir / "inverter.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
