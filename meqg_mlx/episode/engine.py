"""A Diamond episode (docs/design.md, Episode): a prompt rolled out as gated concept steps under a budget.

The prompt's sentences become concepts; tools run first and their results join the
context as observation concepts; store concepts near the current one are put in the
context as view slots. Each step the VMM proposes the next concept and the gate checks
it on the concept trajectory the way training checks a weight step, with s the step
from the last concept:
  finite; trust ||s|| <= episode.trust_radius;
  Armijo-like: Delta(new) <= Delta(last accepted) + alpha * ||s|| (inference has no
      gradient, so the allowance grows with the step length instead of the slope);
  KL-smooth: |S_mod(new) - S_mod(last)| <= l_mod * ||s||.
The episode converges when a step barely moves (episode.converge_cosine) or lands on the
store concept the last step decoded to. A failing step backtracks towards the last concept;
then the view widens (ledger blocks joined, twice the retrieved slots); then the episode stops.
With episode.gate false (`meqg eval`'s ungated variants) every finite proposal is accepted as it
stands. Delta = S_geo + S_ent + lambda_mod S_mod, where S_ent is the planner's NLL of the proposal's own codes plus its
cosine distance to the nearest store concept, and S_geo prices the analytic FLOPs of the
concepts the step feeds the VMM, its state bytes and the tools' latency. The VMM reads the
context through its cache (docs/design.md, Decoding): a step feeds the retrieved slots and the
last concept into a fork of the cache holding the context before it, so it costs the same
at any context length. Accepted concepts are decoded by store lookup;
when the run has an inverter and 0.3 s of budget is left, the misses get its first-pass text
(cut short where the budget ends) where that text is closer than the nearest store text. Each
concept's `cosine` is the shown text's own.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..concepts.store import ConceptStore
from ..concepts.text import split_sentences
from ..config import MeqgConfig
from ..corpus.memory import RelationMemory
from ..corpus.relations import NEXT, RelationVocabulary
from ..diamond.gate import GateDecision, GatePolicy
from ..diamond.ledger import s_mod_mc
from ..diamond.objective import Objective
from ..diamond.view import View
from ..encoder.base import Embedder
from ..inversion.corrector import Corrector
from ..inversion.decode import RunDecoder
from ..inversion.lookup import StoreLookup
from ..trained import TrainedRun
from ..vmm.model import BYTES_PER_FLOAT, VMM
from .budget import Budget, BudgetMeter
from .request import check_prompt
from .tools import make_tools

_CODE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)


def code_in(prompt: str) -> str | None:
    """The program a prompt hands to the python tool: its fenced code blocks."""
    blocks = _CODE.findall(prompt)
    return "\n".join(blocks) if blocks else None


@dataclasses.dataclass
class EpisodeResult:
    response: dict
    final: np.ndarray  # the trajectory's last concept: the last accepted step, else the last observation
    concept_vectors: list[np.ndarray]  # each of response["concepts"]' vector: what its text was decoded from


class DiamondEngine:
    INVERT_SECONDS = 0.3  # budget left that an inverter pass over the episode's store misses needs to start
    EMBED_SECONDS = 0.1  # kept back from the inverter's deadline for re-embedding its texts

    def __init__(
        self,
        model: VMM,
        store: ConceptStore,
        embedder: Embedder,
        config: MeqgConfig,
        corrector: Corrector | None = None,
        memory: RelationMemory | None = None,
    ):
        self.model, self.store, self.embedder, self.config = model, store, embedder, config
        self.corrector, self.memory = corrector, memory
        self.args = model.args
        self.lookup = StoreLookup(store, config.inversion.lookup_threshold)
        self.objective = Objective(config.objective, self.args)
        self.gate = GatePolicy(config.gate)
        self.vocabulary = RelationVocabulary.of_model(self.args.relations)
        self.flops_per_concept = self.args.flops_per_token()
        self.state_bytes = self.args.state_bytes()

    @classmethod
    def from_run(
        cls, run_dir: str | Path, embedder: Embedder | None = None, store_path: str | Path | None = None
    ) -> "DiamondEngine":
        """The run's latest checkpoint on its store (or at `store_path`: moved), decoding with its inverter
        when it has one."""
        trained = TrainedRun.open(run_dir, store_path=store_path)
        decoder = RunDecoder.for_run(trained.run, trained.meta, trained.config, embedder=embedder, store=trained.store)
        return cls(trained.model, trained.store, decoder.embedder, trained.config, decoder.corrector, trained.memory)

    def with_config(self, config: MeqgConfig) -> "DiamondEngine":
        """The same model, store and inverter under another config (a request's overrides)."""
        return type(self)(self.model, self.store, self.embedder, config, self.corrector, self.memory)

    def run(
        self,
        prompt: str,
        tools: list[str] | tuple = (),
        budget: Budget | None = None,
        telemetry: bool = True,
        allow_unsafe_python: bool = False,
        relation: str = NEXT,
        cancelled: threading.Event | None = None,
    ) -> dict:
        """{text, concepts, telemetry{objective, gate, budget, steps, tools, stopped_by}}.

        The python tool needs OS isolation unless `allow_unsafe_python` (see `meqg_mlx.sandbox`); every
        step follows `relation` from the concept before it (one of the run's, `meqg_mlx.corpus.relations`).
        Once `cancelled` is set no further step starts and nothing is inverted (stopped_by "cancelled").
        """
        return self.episode(prompt, tools, budget, telemetry, allow_unsafe_python, relation, cancelled).response

    def episode(
        self,
        prompt: str,
        tools: list[str] | tuple = (),
        budget: Budget | None = None,
        telemetry: bool = True,
        allow_unsafe_python: bool = False,
        relation: str = NEXT,
        cancelled: threading.Event | None = None,
    ) -> EpisodeResult:
        """`run`'s response together with the vector the episode ended on (what `meqg eval` decodes)."""
        check_prompt(prompt, self.config.episode.max_prompt_chars)
        meter = BudgetMeter(budget or Budget(), cancelled=cancelled)
        episode = _Episode(self, meter, self.vocabulary.id(relation))
        chosen = make_tools(list(tools), self.store, self.embedder, allow_unsafe_python)
        with meter.unit():
            context = list(self.embedder.encode(split_sentences(prompt) or [prompt.strip()]))
        encode_seconds = meter.seconds
        for name, tool in chosen.items():
            query = code_in(prompt) if name == "python" else prompt
            remaining = meter.budget.seconds - meter.seconds - 2 * encode_seconds  # the tool's and its result's
            if query is None or remaining < 0.05:
                episode.tools.append({"tool": name, "skipped": "no code block" if query is None else "no time left"})
                continue
            if name == "python":
                tool.timeout_s = min(tool.timeout_s, remaining)
            with meter.unit():
                observation = tool(query)
                context.append(self.embedder.encode([observation.text])[0])
            episode.latency_ms += observation.latency_ms
            episode.tools.append(dataclasses.asdict(observation))
        stopped_by = episode.roll_out(context)
        inverting = stopped_by != "cancelled" and meter.budget.seconds - meter.seconds >= self.INVERT_SECONDS
        if self.corrector is not None and inverting:
            with meter.unit():
                episode.invert_misses(self.corrector, meter.started + meter.budget.seconds - self.EMBED_SECONDS)
        response = {
            "text": "\n".join(c["text"] or f"[~ {c['nearest_text']}]" for c in episode.concepts),
            "concepts": episode.concepts,
        }
        if telemetry:
            last = episode.steps[-1] if episode.steps else {}
            response["telemetry"] = {
                "objective": last.get("objective"),
                "gate": last.get("gate"),
                "budget": meter.report(),
                "steps": episode.steps,
                "tools": episode.tools,
                "stopped_by": stopped_by,
            }
        return EpisodeResult(response, context[-1], episode.vectors)


class _Episode:
    """One rollout's state: the trajectory, what was accepted, and the gate's memory."""

    def __init__(self, engine: DiamondEngine, meter: BudgetMeter, relation: int = 0):
        self.engine, self.meter = engine, meter
        self.relation = relation  # followed from the last concept of the prompt (and its tools) on
        self.walk_from = 0  # the context position the steps start from
        self.config = engine.config
        self.concepts: list[dict] = []
        self.vectors: list[np.ndarray] = []
        self.steps: list[dict] = []
        self.tools: list[dict] = []
        self.latency_ms = 0.0
        self.step_seconds = 0.0  # the longest step so far: what the next one is expected to cost
        self.last_delta = self.last_s_mod = None
        self.key = mx.random.key(0)
        self.cache = engine.model.make_cache()  # the context before its last concept, as the VMM has read it

    def roll_out(self, context: list[np.ndarray]) -> str:
        ec = self.config.episode
        self.walk_from = len(context) - 1
        for index in range(ec.max_steps):
            view, slots = View.finest(self.engine.args.rvq_levels), ec.retrieve_k
            charged = fed = 0
            while True:
                started = time.perf_counter()
                retrieved = self._retrieve(context[-1], slots)
                feeding = len(context) - 1 - self.cache.offset + len(retrieved) + 1  # what this proposal computes
                flops = feeding * self.engine.flops_per_concept
                held = len(context) + len(retrieved)
                kv_bytes = self.engine.state_bytes + held * self.engine.args.concept_dim * BYTES_PER_FLOAT
                refused = self.meter.refuse(flops, kv_bytes, self.step_seconds)
                if refused:
                    self.meter.note(time.perf_counter() - started)
                    return refused
                self.meter.charge(flops, kv_bytes)
                charged, fed = charged + flops, fed + feeding
                candidate, record = self._propose(context, retrieved, feeding, view)
                self.step_seconds = max(self.step_seconds, time.perf_counter() - started)
                self.meter.note(self.step_seconds)
                wider = view.widened()
                if record["gate"]["accepted"] or wider is None:
                    break
                view, slots = wider, 2 * slots
            record["index"], record["flops"], record["fed"] = index, charged, fed  # every view this step tried
            self.steps.append(record)
            if not record["gate"]["accepted"]:
                return "rejected"
            if float(candidate @ context[-1]) >= ec.converge_cosine:
                return "converged"
            decoded = self.engine.lookup.decode(candidate)[0]
            if self.concepts and decoded.concept_id == self.concepts[-1]["concept_id"]:
                return "converged"  # the same store concept again: nothing new to say
            context.append(candidate)
            self.vectors.append(candidate)
            self.concepts.append(
                {
                    "step": index,
                    "concept_id": decoded.concept_id,
                    "score": decoded.score,
                    "cosine": decoded.score,  # of the text shown: the store concept's, or the nearest's on a miss
                    "hit": decoded.hit,
                    "source": decoded.source,
                    "text": decoded.text,
                    "nearest_text": decoded.nearest_text,
                }
            )
            self.last_delta, self.last_s_mod = record["objective"]["Delta"], record["objective"]["S_mod"]
        return "max_steps"

    def invert_misses(self, corrector: Corrector, deadline: float) -> None:
        """Concepts no store concept stands for get the inverter's first-pass text (cut short at the
        deadline) where it comes closer than the nearest store text, which they show otherwise."""
        misses = [i for i, c in enumerate(self.concepts) if not c["hit"]]
        if not misses:
            return
        vectors = np.stack([self.vectors[i] for i in misses])
        nearest = [self.concepts[i]["nearest_text"] or "" for i in misses]
        for i, inversion in zip(misses, corrector.invert(vectors, 0, deadline=deadline, seed_texts=nearest)):
            if inversion.text.strip() and not inversion.from_seed:
                self.concepts[i].update(text=inversion.text, source="inversion", cosine=inversion.cosine)

    def _retrieve(self, last: np.ndarray, slots: int) -> list[np.ndarray]:
        """The store concepts nearest the last one, which the proposal sees just before it (view slots)."""
        found, scores = self.engine.store.nearest(last, slots + 1)
        ids = [int(i) for i, score in zip(found, scores) if score < 0.9999][:slots]
        return list(self.engine.store.vectors(ids)) if ids else []

    def _propose(
        self, context: list[np.ndarray], retrieved: list[np.ndarray], fed: int, view: View
    ) -> tuple[np.ndarray, dict]:
        """The model's next concept after context[:-1] + retrieved + context[-1], backtracked towards the
        last concept until the gate's policy passes it (or gives up).

        The cache holds context[:-1] (the part new here is fed first); the retrieved slots and the last
        concept go into a fork of it, since the next step retrieves other slots. `fed`: how many concepts
        that is (what S_geo prices).
        """
        engine, ec = self.engine, self.config.episode
        last = context[-1]
        if self.cache.offset < len(context) - 1:
            positions = range(self.cache.offset, len(context) - 1)
            relations = mx.array([[self.relation if i >= self.walk_from else 0 for i in positions]], dtype=mx.int32)
            engine.model(mx.array(np.stack(context[self.cache.offset : -1]))[None], self.cache, relations)
        relations = mx.array([[0] * len(retrieved) + [self.relation]], dtype=mx.int32)  # slots: store neighbours
        memory = None
        if engine.memory is not None:
            memory = engine.memory.read_last(last[None], np.array([self.relation]), len(retrieved) + 1)
        out = engine.model(mx.array(np.stack(retrieved + [last]))[None], self.cache.copy(), relations, memory)
        hidden = out.hidden[0, -1]
        proposal = np.array(out.next_vector[0, -1], dtype=np.float32)
        self.key, key = mx.random.split(self.key)
        s_mod = s_mod_mc(engine.model.planner.distribution(hidden), view, ec.ledger_samples, ec.ledger_inner, key).s_mod
        step, tried = proposal - last, {}

        def evaluate(scale: float) -> GateDecision:
            candidate = last + scale * step
            candidate = candidate / max(float(np.linalg.norm(candidate)), 1e-12)
            norm = float(np.linalg.norm(candidate - last))
            finite = bool(np.isfinite(candidate).all())
            tried["candidate"], tried["terms"] = (
                candidate,
                self._terms(candidate, hidden, fed, s_mod) if finite else None,
            )
            return engine.gate.decide(
                finite=finite,
                within_trust=norm <= ec.trust_radius,
                delta=self.last_delta,
                delta_new=tried["terms"]["Delta"] if finite else math.nan,
                s_mod=self.last_s_mod,
                s_mod_new=s_mod,
                step_norm=norm,
                allowance=norm,  # no gradient at inference: the allowance grows with the step length
                view_size=view.size,
                trust_radius=ec.trust_radius,
            )

        if ec.gate:
            decision, _ = engine.gate.backtrack(evaluate)
        else:  # the ungated ablation: every finite proposal is taken as it stands
            decision = evaluate(1.0)
            decision.accepted = decision.finite
        context_length = len(context) + len(retrieved)
        record = {**dataclasses.asdict(decision), "failed": decision.failed, "context": context_length}
        return tried["candidate"], {"objective": tried["terms"], "gate": record}

    def _terms(self, candidate: np.ndarray, hidden: mx.array, tokens: int, s_mod: float) -> dict:
        engine = self.engine
        codes, _ = engine.model.rvq.encode(mx.array(candidate)[None])
        logits = engine.model.planner(hidden[None], codes)
        nll = float(nn.losses.cross_entropy(logits, codes).sum())
        _, scores = engine.store.nearest(candidate, 1)
        off_store = 1.0 - (float(scores[0]) if len(scores) else 0.0)
        s_geo = engine.objective.s_geo(tokens, self.latency_ms)
        s_ent = nll + off_store
        return {
            "Delta": s_geo + s_ent + self.config.objective.lambda_mod * s_mod,
            "S_geo": s_geo,
            "S_ent": s_ent,
            "S_mod": s_mod,
        }
