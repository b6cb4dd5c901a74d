"""A training run on disk: RUN_DIR/{run.json, config.yaml, telemetry.jsonl, checkpoints/}.

`TrainingRun.train()` steps the gated trainer, writes one telemetry record per step
(flushed), measures Phi and kappa-hat on their intervals, applies the recovery
policy, evaluates against the baselines and checkpoints. It stops at the step
target or when `should_stop()` says so, always leaving a checkpoint to resume from.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..concepts.store import ConceptStore
from ..config import MeqgConfig, load_run, to_yaml
from ..errors import ConfigError, MeqgError
from ..paths import meqg_home
from ..runs import RunDir
from ..telemetry import TelemetryWriter
from .checkpoint import last_stable_checkpoint, load_checkpoint, save_checkpoint
from .trainer import StepReport, Trainer
from .validation import Validation


@dataclass
class RunSummary:
    run_dir: Path
    step: int
    accepted: int
    validation: Validation | None
    interrupted: bool
    seconds: float


class TrainingRun:
    def __init__(
        self,
        run_dir: str | Path,
        store_path: str | Path | None = None,
        config: MeqgConfig | None = None,
        resume: bool = False,
        steps: int | None = None,
        make_trainer: Callable[[ConceptStore, MeqgConfig], Trainer] = Trainer,
    ):
        """A new run (`config`, default settings when None) or, with `resume`, the run saved in
        `run_dir` with its own config; `steps` overrides the step target either way. `make_trainer`
        builds the trainer (the PyTorch engine passes its own, with the same interface)."""
        run = self.run = RunDir(run_dir)
        self.created = not resume  # this call makes the run directory (a failure before any checkpoint removes it)
        if steps is not None and steps < 1:
            raise ConfigError(f"steps must be at least 1, got {steps}")
        if resume:
            meta, config = load_run(run, "no run to resume in")
            self.store = ConceptStore.of_run(meta, config.store, store_path)
        else:
            run.ensure_new()
            if store_path is None:
                raise MeqgError("a new run needs a store (--store)")
            config = copy.deepcopy(config) if config else MeqgConfig()
            self.store = ConceptStore.open(store_path, config.store)
        if steps is not None:
            config.train.steps = steps
        self.config = config
        self.trainer = make_trainer(self.store, config)
        self.trainer.cache_dir = meqg_home() / "cache"
        checkpoint = run.latest_checkpoint() if resume else None
        if resume and checkpoint is None:
            raise MeqgError(f"nothing to resume in {run}: it has no checkpoint yet (remove it to start over)")
        discarded = []
        if checkpoint is not None:
            load_checkpoint(checkpoint, self.trainer)
            discarded = run.discard_after(self.trainer.state.step)
        if resume and steps is not None and self.trainer.state.step >= steps:
            raise MeqgError(
                f"{run} is already at step {self.trainer.state.step}, so --steps {steps} leaves nothing to train: "
                f"give --steps above {self.trainer.state.step}"
            )
        if resume:
            run.write_config(to_yaml(config))  # a resume may have a new step target
        else:
            meta = run.create(store_path, to_yaml(config), self.store.record())
        self.run_id = meta["run_id"]
        self.telemetry = TelemetryWriter(run, self.run_id, self.trainer.state.step if resume else None)
        self.phi: float | None = None
        self.kappa: float | None = None
        if resume:
            self.telemetry.emit(
                "checkpoint",
                self.trainer.state.step,
                action="resumed",
                path=str(checkpoint),
                superseded=self.telemetry.superseded,
                discarded=discarded,
            )

    def train(
        self, on_step: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] = lambda: False
    ) -> RunSummary:
        tc, trainer = self.config.train, self.trainer
        started, validation, interrupted = time.perf_counter(), None, False
        if trainer.state.step == 0:
            bands = {"geometric": self.config.regime.phi_geometric, "breakdown": self.config.regime.phi_breakdown}
            self.telemetry.emit(
                "checkpoint",
                0,
                action="started",
                parameters=trainer.model.parameter_count(),
                rvq=self.rvq_usage(),
                config_steps=tc.steps,
                bands=bands,
            )
        ended = "failed"  # what the final `run` record says if the loop raises
        try:
            while trainer.state.step < tc.steps and not (tc.compute and trainer.state.forwards >= tc.compute):
                record = self._record(trainer.step())
                step = trainer.state.step
                self.telemetry.emit("step", step, **record)
                if record["gate"] and not record["gate"]["accepted"]:
                    self.telemetry.emit("gate", step, gate=record["gate"])
                if tc.eval_every and step % tc.eval_every == 0:
                    validation = self.evaluate()
                if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    self.checkpoint()
                if on_step:
                    on_step(record | {"step": step})
                if should_stop():
                    interrupted = True
                    break
            ended = "interrupted" if interrupted else "finished"
        except KeyboardInterrupt:
            ended = "aborted"
            raise
        finally:
            step = trainer.state.step
            if step and self.run.latest_checkpoint() != self.run.checkpoint(step):
                self.checkpoint()
            if ended in ("failed", "aborted"):
                self._end(ended, started)
                if self.created and self.run.latest_checkpoint() is None:
                    shutil.rmtree(self.run.path, ignore_errors=True)  # nothing to resume: leave nothing behind
        if not interrupted and (validation is None or trainer.state.step % max(tc.eval_every, 1)):
            validation = self.evaluate()
        self._end(ended, started)
        return RunSummary(
            self.run.path,
            trainer.state.step,
            trainer.state.accepted,
            validation,
            interrupted,
            time.perf_counter() - started,
        )

    def _end(self, status: str, started: float) -> None:
        """The last record of a `train()` call: how it ended (the monitor's finished/stopped status)."""
        self.telemetry.emit(
            "run",
            self.trainer.state.step,
            status=status,
            accepted=self.trainer.state.accepted,
            target=self.config.train.steps,
            seconds=time.perf_counter() - started,
        )
        self.telemetry.close()

    def _record(self, report: StepReport) -> dict:
        tc, trainer = self.config.train, self.trainer
        step = trainer.state.step
        terms = report.terms
        record = {
            "loss": terms["distance"] + terms["contrastive"],  # the next-concept loss the monitor plots
            "batch": report.batch,
            "objective": {k: terms[k] for k in ("Delta", "S_geo", "S_ent", "S_mod")},
            "terms": {k: terms[k] for k in ("distance", "contrastive", "planner_nll", "balance", "context")},
            "gate": _gate_record(report),
            "lr": report.lr,
            "lr_scale": trainer.recovery.lr_scale,
            "experts": {"load": report.expert_load, "entropy": report.router_entropy},
            "throughput": report.tokens / max(report.seconds, 1e-9),
            "accept_rate": trainer.state.accepted / step,
            "forwards": trainer.state.forwards,
        }
        if tc.phi_every and step % tc.phi_every == 0:
            self.phi = trainer.measure_phi(trainer.last_batch)
            self._recover(step, self.phi)
        if tc.kappa_every and step % tc.kappa_every == 0:
            self.kappa = trainer.measure_kappa(trainer.last_batch_loss())
        record.update(phi=self.phi, kappa=self.kappa, regime=trainer.recovery.regime)
        return record

    def _recover(self, step: int, phi: float) -> None:
        trainer = self.trainer
        changed, actions = trainer.recovery.observe(phi)
        if changed:
            self.telemetry.emit("regime", step, regime=trainer.recovery.regime, phi=phi)
        for action in actions:
            detail = {}
            if action == "revert":
                stable = last_stable_checkpoint(self.run)
                if stable is None:
                    detail["skipped"] = "no stable checkpoint yet"
                else:
                    load_checkpoint(stable, trainer, weights_only=True)
                    detail["checkpoint"] = stable.name
            elif action == "perturb":
                trainer.perturb(self.config.regime.perturb_scale)
                detail["scale"] = self.config.regime.perturb_scale
            self.telemetry.emit("recovery", step, action=action, phi=phi, lr_scale=trainer.recovery.lr_scale, **detail)

    def checkpoint(self) -> Path:
        path = save_checkpoint(self.run, self.trainer)
        self.telemetry.emit(
            "checkpoint",
            self.trainer.state.step,
            action="saved",
            path=str(path),
            stable=self.trainer.recovery.regime != "breakdown",
        )
        return path

    def evaluate(self) -> Validation:
        validation = self.trainer.evaluate()
        self.telemetry.emit("eval", self.trainer.state.step, **validation.as_record(), rvq=self.rvq_usage())
        return validation

    def rvq_usage(self) -> dict:
        counts, perplexity = self.trainer.model.rvq.usage(self.trainer.codes[:-1])
        return {
            "perplexity": np.array(perplexity).round(3).tolist(),
            "used": (np.array(counts) > 0).sum(axis=1).tolist(),
            "codes": self.config.vmm.rvq_codes,
        }


def _gate_record(report: StepReport) -> dict | None:
    if report.gate is None:
        return None
    return {**dataclasses.asdict(report.gate), "failed": report.gate.failed}
