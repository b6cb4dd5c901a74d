"""Training the PyTorch twin on many processes: torchrun + DistributedDataParallel (gloo on CPU, NCCL on CUDA).

    torchrun --nproc-per-node N -m meqg_converters.train --store DIR --run-dir DIR [--steps N] [--config F] [--resume]
    (or `-m meqg_converters.train -- --store DIR --run DIR ...`: torchrun would read a bare --run as its --run-path)

`TorchTrainer` is the MLX `Trainer` with its steps taken by the twin: the same data (windows
from the training RNG), objective (distance + InfoNCE + planner NLL + balance + the ledger's
S_mod), schedule, AdamW update (MLX's form), Null-Stability Gate (`NullStabilityGate.judge`),
recovery policy and checkpoints. Rank 0 runs the usual `TrainingRun` (telemetry.jsonl,
checkpoints in the run-directory layout, Phi, kappa-hat and evaluations through the MLX
model it keeps in step); every other rank follows it step for step.

Each step the global batch (`train.batch_size` windows, drawn alike on every rank) is split by
rows over the ranks. Every term is a sum over positions divided by the global count, so each
rank's share adds up to the one-process loss exactly, in-batch InfoNCE candidates, the MoE
balance (from all-reduced expert loads) and the ledger positions included; DDP averages the
gradients of `world x share`. The gate's numbers (Delta, S_mod at each candidate) are
all-reduced, so every rank takes the same accept / backtrack / reject decision, and a rejected
step restores weights and optimizer state everywhere. At the start of each step rank 0
broadcasts its trainer state (weights, optimizer, RNG, counters): what happened between
steps (a resume, a recovery revert or perturbation, a new learning-rate scale) happened there.
Every rank reads the store itself from LanceDB (the same path on every node).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
import torch
import torch.distributed as dist
from mlx.utils import tree_flatten, tree_unflatten
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from meqg_mlx.concepts.store import ConceptStore
from meqg_mlx.config import MeqgConfig, load_config, to_yaml
from meqg_mlx.corpus.sequences import context_counts, excluded_candidates
from meqg_mlx.diamond.gate import GateDecision
from meqg_mlx.diamond.view import View
from meqg_mlx.errors import MeqgError
from meqg_mlx.train.report import progress_line, summary_lines
from meqg_mlx.train.run import TrainingRun
from meqg_mlx.train.trainer import BACKWARD_COST, BatchLoss, StepReport, Trainer

from .torch_ledger import s_mod_surrogate
from .torch_objective import context_penalty, next_concept_losses, planner_nll
from .torch_vmm import VMM, Memory
from .weights import mlx_to_torch, torch_to_mlx

COLLECTIVE_TIMEOUT_S = float(os.environ.get("MEQG_COLLECTIVE_TIMEOUT_S", "120"))  # a lost rank ends a wait
BETAS, EPS = (0.9, 0.999), 1e-8  # mlx.optimizers.AdamW's defaults (no bias correction)


class TrainingObjective(nn.Module):
    """Everything differentiable of a step in one forward, so DDP sees every parameter it uses."""

    def __init__(self, vmm: VMM):
        super().__init__()
        self.vmm = vmm

    def forward(self, concepts, relations, memory, codes, ledger_rows, seeds, view: View, samples: int, inner: int):
        out = self.vmm(concepts, relations=relations, memory=memory)
        planner_logits = self.vmm.planner(out.hidden, codes)
        hidden = out.hidden.reshape(-1, out.hidden.shape[-1])[ledger_rows]
        s_mod, surrogate = s_mod_surrogate(self.vmm.planner, hidden, seeds, view, samples, inner)
        return out, planner_logits, s_mod, surrogate


@dataclass
class Evaluation:
    """One loss evaluation: global numbers (the same on every rank) and this rank's differentiable share."""

    delta: float
    s_mod: float
    terms: dict[str, float]
    load: list[int]
    entropy: float
    share: torch.Tensor | None  # world x this rank's share of Delta's weight-dependent part


class TorchTrainer(Trainer):
    def __init__(self, store: ConceptStore, config: MeqgConfig, device: str | torch.device | None = None):
        super().__init__(store, config)
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if device is None:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
        self.device = torch.device(device)
        self.twin = VMM(self.args).to(self.device)
        self.params = dict(self.twin.named_parameters())
        self.moments = {k: (torch.zeros_like(p), torch.zeros_like(p)) for k, p in self.params.items()}
        self.optimizer_step = 0
        self.decisions = hashlib.sha1()  # every gate decision this rank took: ranks compare digests
        self._pushed: list[mx.array] = []  # what rank 0's MLX trainer held after the last step
        self._pull()
        objective = TrainingObjective(self.twin)
        self.objective_module = objective
        if self.world > 1:
            with warnings.catch_warnings():  # torch 2.13 renames it; older torch (>= 2.4 is allowed) lacks the new name
                warnings.simplefilter("ignore", FutureWarning)
                # the buffers (RVQ codebooks, expert centroids) never change while training: no sync per forward
                self.objective_module = DistributedDataParallel(objective, broadcast_buffers=False)
        self.matrix = torch.from_numpy(np.array(self.table.matrix)).to(self.device)

    # ----- rank 0's MLX trainer <-> the twin ---------------------------------------------------
    def _pull(self) -> None:
        """The MLX model's weights and optimizer state into the twin (rank 0 keeps both in step)."""
        weights = mlx_to_torch({k: torch.from_numpy(np.array(v)) for k, v in tree_flatten(self.model.parameters())})
        self.twin.load_state_dict(weights, strict=True)
        self.codes_matrix = torch.from_numpy(np.array(self.codes).astype(np.int64)).to(self.device)
        state = dict(tree_flatten(self.optimizer.state))
        self.optimizer_step = int(state["step"].item()) if "step" in state else 0
        with torch.no_grad():
            for name, pair in self.moments.items():
                for slot, tensor in zip("mv", pair):
                    value = state.get(f"{name}.{slot}")
                    if value is None:  # before the first MLX step the state is empty
                        tensor.zero_()
                    else:
                        tensor.copy_(mlx_to_torch({name: torch.from_numpy(np.array(value))})[name])

    def _push(self) -> None:
        """The twin's weights and optimizer state back into the MLX trainer (checkpoints, Phi, evaluation)."""
        trained = torch_to_mlx({k: p.detach() for k, p in self.params.items()})
        self.model.load_weights([(k, mx.array(v.numpy())) for k, v in trained.items()], strict=False)
        flat = [("step", mx.array(self.optimizer_step, dtype=mx.uint64))]
        flat.append(("learning_rate", mx.array(self._lr(max(self.optimizer_step - 1, 0)), dtype=mx.float32)))
        for name, (m, v) in self.moments.items():
            for slot, tensor in zip("mv", (m, v)):
                flat.append((f"{name}.{slot}", mx.array(torch_to_mlx({name: tensor})[name].numpy())))
        self.optimizer.state = tree_unflatten(flat)
        self._pushed = [v for _, v in tree_flatten(self.model.parameters())]  # held: their ids stay unique
        self._pushed += [v for _, v in tree_flatten(self.optimizer.state)]

    def _lr(self, step: int) -> float:
        return float(self.learning_rate(mx.array(step, dtype=mx.uint64)))

    # ----- rank 0 leads --------------------------------------------------------------------------
    def _sync(self) -> bool:
        """Rank 0's state on every rank at the start of a step; False when rank 0 says training is over.

        Weights and optimizer state travel only when something between steps replaced rank 0's
        (the counters, RNG included, always do): most steps move a few hundred bytes.
        """
        changed = self.rank == 0 and not self._unchanged_since_push()
        if changed:
            self._pull()
        if self.world == 1:
            return True
        control = [
            {"stop": False, "state": self.state_dict(), "optimizer_step": self.optimizer_step, "changed": changed}
        ]
        dist.broadcast_object_list(control, src=0)
        if control[0]["stop"]:
            return False
        if self.rank != 0:
            self.load_state_dict(control[0]["state"])
            self.optimizer_step = control[0]["optimizer_step"]
        if control[0]["changed"]:  # weights, optimizer, codebooks and the planner targets they give
            moments = [t for pair in self.moments.values() for t in pair]
            with torch.no_grad():
                for tensor in [*self.twin.state_dict().values(), *moments, self.codes_matrix]:
                    dist.broadcast(tensor, src=0)
        return True

    def _unchanged_since_push(self) -> bool:
        """Whether the MLX model and optimizer still hold the very arrays the last `_push` gave them."""
        current = [v for _, v in tree_flatten(self.model.parameters())]
        current += [v for _, v in tree_flatten(self.optimizer.state)]
        return len(current) == len(self._pushed) and all(a is b for a, b in zip(current, self._pushed))

    def finish(self) -> None:
        """Rank 0: tell the other ranks that training is over."""
        if self.rank == 0 and self.world > 1:
            dist.broadcast_object_list([{"stop": True}], src=0)

    def follow(self) -> int:
        """Ranks > 0: take rank 0's steps until it says stop; the number of steps taken."""
        taken = 0
        while self.step() is not None:
            taken += 1
        return taken

    # ----- the loss of a batch, split over ranks -------------------------------------------------
    def _loss(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        mask: np.ndarray,
        key: int,
        negatives: np.ndarray,
        relations: np.ndarray,
    ):
        """(view, grad) -> Evaluation for the global batch; this rank computes its rows."""
        tc, device = self.config.train, self.device
        batch, steps = inputs.shape
        rows = np.arange(self.rank, batch, self.world)
        count = max(float(mask.sum()), 1.0)
        candidates = np.concatenate([targets.reshape(-1), negatives])
        positions = (rows[:, None] * steps + np.arange(steps)).reshape(-1)  # this rank's flat positions
        local_targets = targets[rows].reshape(-1)
        # the whole batch's, as the MLX trainer computes them, then this rank's rows
        batch_inputs, batch_targets = mx.array(inputs), mx.array(targets)
        excluded = np.array(excluded_candidates(batch_inputs, batch_targets, mx.array(negatives)))[positions]
        counts = np.array(context_counts(batch_inputs, batch_targets, self.table.pad_row))[rows]
        keep = np.concatenate([mask.reshape(-1), np.ones(len(negatives), dtype=np.float32)])
        ledger = np.flatnonzero(mask.reshape(-1))[: tc.ledger_positions]
        row_of = {int(p): row for row, p in enumerate(positions)}  # this rank's row of a global position
        ledger_rows = [row_of[int(p)] for p in ledger if int(p) in row_of]
        seeds = [(key * 1_000_003 + int(positions[r])) % 2**63 for r in ledger_rows]
        tokens_total = float(inputs.size)

        def tensor(x, dtype=None):
            return torch.as_tensor(x, dtype=dtype, device=device)

        concepts = self.matrix[tensor(inputs[rows], torch.long)]
        relation_ids = tensor(relations[rows], torch.long)
        memory = None
        if self.args.memory_slots:
            read, similarity = self.memory_arrays(
                mx.array(inputs[rows]), mx.array(relations[rows]), mx.array(mask[rows])
            )
            read = tensor(np.array(read), torch.long)
            memory = Memory(self.matrix[read], tensor(np.array(similarity)), read != self.table.pad_row)
        codes = self.codes_matrix[tensor(targets[rows], torch.long)]
        target_vectors = self.matrix[tensor(local_targets, torch.long)]
        candidate_vectors = self.matrix[tensor(candidates, torch.long)]
        log_keep = torch.log(tensor(keep, torch.float32) + 1e-9)[None]
        excluded_t, own_index = tensor(excluded), tensor(positions, torch.long)
        weight = tensor(mask[rows].reshape(-1), torch.float32) / count
        counts_t = tensor(counts)
        ledger_t = tensor(ledger_rows, torch.long)

        def evaluate(view: View, grad: bool) -> Evaluation:
            with torch.set_grad_enabled(grad):
                module = self.objective_module if grad else self.objective_module_local
                out, planner_logits, s_mod, surrogate = module(
                    concepts, relation_ids, memory, codes, ledger_t, seeds, view, tc.ledger_samples, tc.ledger_inner
                )
                predicted = out.next_vector.reshape(-1, self.args.concept_dim)
                distance, contrastive = next_concept_losses(
                    predicted,
                    target_vectors,
                    candidate_vectors,
                    tc.temperature,
                    weight,
                    log_keep,
                    excluded_t,
                    own_index,
                )
                context = context_penalty(
                    out.next_vector, target_vectors.reshape(out.next_vector.shape), concepts, counts_t, weight
                )
                planner = planner_nll(planner_logits, codes, weight)
                load = torch.stack([s.load for s in out.router])  # (layers, E): this rank's tokens
                self._all_reduce(load)
                fraction = load / (tokens_total * self.args.top_k)
                local_tokens = float(concepts.shape[0] * concepts.shape[1])
                balance = torch.stack(
                    [
                        self.args.n_experts * (f * s.probs * local_tokens / tokens_total).sum()
                        for f, s in zip(fraction, out.router)
                    ]
                ).mean()
                entropy = torch.stack([s.entropy for s in out.router]).mean() * local_tokens / tokens_total
                objective = self.objective
                s_ent = distance + objective.contrastive_weight * contrastive + planner + context
                s_ent = s_ent + objective.balance_weight * balance
                ledger_count = max(len(ledger), 1)
                s_mod_share, surrogate_share = s_mod.sum() / ledger_count, surrogate.sum() / ledger_count
                lambda_mod = self.config.objective.lambda_mod
                share = s_ent + lambda_mod * (s_mod_share + surrogate_share - surrogate_share.detach())
            numbers = [distance, contrastive, planner, balance, s_mod_share, entropy, context]
            numbers = torch.stack(numbers).detach().double()
            self._all_reduce(numbers)
            distance_g, contrastive_g, planner_g, balance_g, s_mod_g, entropy_g, context_g = numbers.tolist()
            s_ent_g = distance_g + objective.contrastive_weight * contrastive_g + planner_g + context_g
            s_ent_g += objective.balance_weight * balance_g
            s_geo = objective.s_geo(int(mask.sum()), 0.0, self.kappa)
            delta = s_geo + s_ent_g + lambda_mod * s_mod_g
            terms = {
                "Delta": delta,
                "S_geo": s_geo,
                "S_ent": s_ent_g,
                "S_mod": s_mod_g,
                "distance": distance_g,
                "contrastive": contrastive_g,
                "planner_nll": planner_g,
                "balance": balance_g,
                "context": context_g,
            }
            return Evaluation(
                delta, s_mod_g, terms, load.sum(0).long().tolist(), entropy_g, share * self.world if grad else None
            )

        return evaluate

    def _all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world > 1:
            dist.all_reduce(tensor)

    @property
    def objective_module_local(self) -> TrainingObjective:
        """The objective without DDP's wrapper, for evaluations that take no gradient."""
        module = self.objective_module
        return module.module if isinstance(module, DistributedDataParallel) else module

    # ----- a step ------------------------------------------------------------------------------
    def step(self) -> StepReport | None:
        """One step on every rank (None on a following rank once rank 0 has stopped)."""
        if not self._sync():
            return None
        started = time.perf_counter()
        inputs, targets, mask, relations = self.draw_batch()
        key = int(self.rng.integers(2**31))
        negatives = self.draw_negatives()
        self.last_batch = (inputs, targets, mask, relations)
        self._last_arrays = (inputs, targets, mask, key, negatives, relations)
        batch = (np.array(inputs), np.array(targets), np.array(mask))
        loss = self._loss(*batch, key, negatives, np.array(relations))
        lr = self._lr(self.optimizer_step)
        evaluations: list[Evaluation] = []

        def recorded(view: View, grad: bool) -> Evaluation:
            evaluations.append(loss(view, grad))
            return evaluations[-1]

        if self.gate_due():
            decision = self._gated_step(recorded)
            self.gate_schedule.checked(self.state.step, decision)
        else:
            decision = None
            self._ungated_step(recorded)
        taken = None if decision is None else (decision.accepted, decision.retries, decision.failed, decision.view_size)
        self.decisions.update(repr(taken).encode())
        self.state.accepted += decision.accepted if decision else 1
        self.state.forwards += len(evaluations) + BACKWARD_COST
        self.state.step += 1
        if self.rank == 0:
            self._push()
        first = evaluations[0]
        return StepReport(
            self.state.step,
            first.terms,
            decision,
            lr,
            first.load,
            first.entropy,
            int(mask.sum().item()),
            time.perf_counter() - started,
            self.batch_source,
        )

    def _backward(self, evaluate) -> tuple[Evaluation, dict[str, torch.Tensor]]:
        """Delta and S_mod at the current weights, and the gradient (all-reduced by DDP)."""
        for p in self.params.values():
            p.grad = None
        evaluation = evaluate(self.view, True)
        evaluation.share.backward()
        return evaluation, {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in self.params.items()}

    @torch.no_grad()
    def _adamw(self, grads: dict[str, torch.Tensor]) -> None:
        """mlx.optimizers.AdamW's update on clipped gradients, at the schedule's rate for this step."""
        total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
        clip = min(self.config.train.grad_clip / (float(total) + 1e-6), 1.0)
        lr, decay = self._lr(self.optimizer_step), self.config.train.weight_decay
        self.optimizer_step += 1
        for name, p in self.params.items():
            m, v = self.moments[name]
            g = grads[name] * clip
            m.mul_(BETAS[0]).add_((1 - BETAS[0]) * g)
            v.mul_(BETAS[1]).add_((1 - BETAS[1]) * g * g)
            p.mul_(1 - lr * decay).sub_(lr * m / (v.sqrt() + EPS))

    def _snapshot(self):
        before = {k: p.detach().clone() for k, p in self.params.items()}
        moments = {k: (m.clone(), v.clone()) for k, (m, v) in self.moments.items()}
        step = self.optimizer_step

        @torch.no_grad()
        def restore(weights_only: bool = False) -> None:
            for k, p in self.params.items():
                p.copy_(before[k])
            if not weights_only:
                for k, (m, v) in self.moments.items():
                    m.copy_(moments[k][0])
                    v.copy_(moments[k][1])
                self.optimizer_step = step

        return before, restore

    def _finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params.values())

    def _gated_step(self, evaluate) -> GateDecision:
        before, restore = self._snapshot()
        start, grads = self._backward(evaluate)
        self._adamw(grads)
        with torch.no_grad():
            step = {k: p.detach() - before[k] for k, p in self.params.items()}
            slope = float(sum((grads[k].double() * s).sum() for k, s in step.items()))
            sizes = {k: float(s.norm()) for k, s in step.items()}
            norms = {k: (float(before[k].norm()), before[k].numel()) for k in step}

        @torch.no_grad()
        def candidate(scale: float, at: View) -> tuple[bool, float, float]:
            for k, p in self.params.items():
                p.copy_(before[k] + scale * step[k])
            if not self._finite():
                return False, float("nan"), float("nan")
            evaluation = evaluate(at, False)
            return True, evaluation.delta, evaluation.s_mod

        def reference(at: View) -> tuple[float, float]:
            restore(weights_only=True)
            evaluation = evaluate(at, False)
            return evaluation.delta, evaluation.s_mod

        start_values = (start.delta, start.s_mod)
        return self.gate.judge(sizes, norms, slope, start_values, self.view, candidate, reference, restore)

    def _ungated_step(self, evaluate) -> None:
        """AdamW without the gate; when the gate is on but not due, non-finite weights are still refused."""
        _, restore = self._snapshot()
        _, grads = self._backward(evaluate)
        self._adamw(grads)
        if self.gate is not None and not self._finite():
            restore()
            self.gate_schedule.check_next(self.state.step)

    def last_batch_loss(self) -> BatchLoss:
        """The MLX loss of the last batch, for kappa-hat of the MLX model (kept in step with the twin)."""
        return self.loss_fn(*self._last_arrays)


# ----- the torchrun entry point -----------------------------------------------------------------
class Stopped(Exception):
    """SIGTERM: torchrun ends the other workers when one fails (and on a second Ctrl-C)."""


def _stop(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def _stop_requests(rank: int):
    """Rank 0 stops after the current step on SIGINT (torchrun passes Ctrl-C on), with a checkpoint, and
    tells the others; they ignore SIGINT and follow it."""
    requested = []
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, (lambda signum, frame: requested.append(signum)) if rank == 0 else signal.SIG_IGN)
    return lambda: bool(requested)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="meqg_converters.train", description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="Concept store (the same path on every node); a new run needs one.")
    # torchrun takes a bare `--run` for its own `--run-path`: write `--run-dir`, or `--` before the arguments
    parser.add_argument("--run", "--run-dir", dest="run", required=True, help="Run directory (written by rank 0).")
    parser.add_argument("--steps", type=int, help="Train until this step [default: config train.steps].")
    parser.add_argument("--config", help="YAML config overlaid on the defaults (a new run).")
    parser.add_argument("--resume", action="store_true", help="Continue the run from its latest checkpoint.")
    parser.add_argument("--no-gate", action="store_true", help="Plain AdamW steps, no Null-Stability Gate.")
    return parser.parse_args(argv)


def train(args: argparse.Namespace, rank: int, should_stop=lambda: False) -> None:
    if rank == 0:
        config = None if args.resume else load_config(args.config)
        if config is not None and args.no_gate:
            config.train.gate = False
        made: list[TorchTrainer] = []

        def make(store: ConceptStore, config: MeqgConfig) -> TorchTrainer:
            """The run's store and final config go to the other ranks before any trainer exists."""
            if dist.is_initialized():
                dist.broadcast_object_list([{"store": store.uri, "config": to_yaml(config)}], src=0)
            made.append(TorchTrainer(store, config))
            return made[-1]

        training = TrainingRun(args.run, args.store, config, args.resume, args.steps, make_trainer=make)
        try:
            summary = training.train(_progress(training.config.train.steps), should_stop)
        finally:
            made[0].finish()
        print("\n".join(summary_lines(summary)), flush=True)
        print(f"rank 0: gate decisions {made[0].decisions.hexdigest()[:12]}", flush=True)
    else:
        shared = [None]
        dist.broadcast_object_list(shared, src=0)
        config = _config_from_yaml(shared[0]["config"])
        trainer = TorchTrainer(ConceptStore.open(shared[0]["store"], config.store), config)
        taken = trainer.follow()
        print(f"rank {rank}: followed {taken} steps, gate decisions {trainer.decisions.hexdigest()[:12]}", flush=True)


def _config_from_yaml(text: str) -> MeqgConfig:
    import yaml

    from meqg_mlx.config import from_dict

    return from_dict(MeqgConfig, yaml.safe_load(text))


def _progress(total: int):
    """`meqg train`'s progress line, as it prints it to a pipe (every tenth of the run)."""
    every = max(1, total // 10)

    def report(record: dict) -> None:
        if record["step"] % every == 0 or record["step"] == total:
            print(f"step {record['step']}/{total} {progress_line(record)}", flush=True)

    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    should_stop = _stop_requests(rank)
    distributed = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    try:
        if distributed:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
            rank = dist.get_rank()
        train(args, rank, should_stop)
        if distributed:
            dist.barrier()  # every rank done before any tears its connections down (a gloo peer gone mid-use aborts)
    except MeqgError as exc:
        sys.exit(f"error: rank {rank}: {exc}")
    except Stopped as exc:
        sys.exit(f"error: rank {rank}: stopped by {exc} (torchrun ends the other ranks when one fails)")
    except (RuntimeError, dist.DistError) as exc:
        if not distributed:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"error: rank {rank}: lost another rank ({first[:200]})")
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
