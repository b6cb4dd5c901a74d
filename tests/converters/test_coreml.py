"""`meqg export coreml`: traced graphs that reproduce the MLX run, saved specs Core ML can run on device.

coremltools converts on Linux but predicts only on macOS: here the traced TorchScript modules
(what coremltools converts) are run against MLX, and the saved packages' specs are inspected;
the tests that predict with Core ML are marked macos.
"""

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
import torch

from meqg_converters.coreml import (
    DEVICE_OPS,
    VMMStep,
    check_bundle,
    encoder_directory,
    export_coreml,
    package_spec,
    padded_tokens,
    spec_problems,
    step_inputs,
    trace,
)
from meqg_converters.torch_bert import SentenceEncoder
from meqg_converters.weights import load_checkpoint_vmm
from meqg_mlx.config import load_run
from meqg_mlx.encoder.base import load_tokenizer
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import RunDir
from meqg_mlx.trained import TrainedRun
from meqg_mlx.vmm.model import Memory

from ..conftest import meqg
from ..encoder.tiny_models import build_tiny_mpnet
from .conftest import refuses_taken_outputs_and_untrained_runs

macos = pytest.mark.macos  # Core ML predicts only on macOS (Linux converts)


def test_the_traced_step_decodes_as_the_mlx_run_does(trained_run_path, small_store):
    run = RunDir(trained_run_path)
    step = VMMStep(load_checkpoint_vmm(run.latest_checkpoint()))
    args = step.vmm.args
    traced = trace(step, step.example())
    for name in step.state_names:  # tracing ran a step: start from empty states, as Core ML does
        getattr(traced, name).zero_()
    trained = TrainedRun.open(trained_run_path)
    concepts = small_store.all_vectors()[1][:37].astype(np.float32)  # chunk 16: the step must not care
    relations = np.arange(len(concepts)) % len(args.relations)  # each step follows a relation of its own
    assert args.memory_slots and trained.memory is not None  # each step reads the store too
    read = trained.memory.read(concepts, relations)
    assert (read.targets >= 0).all()
    read.targets[::2, args.memory_slots // 2 :] = -1  # as a relation with fewer edges than slots
    memory = trained.memory.model_memory(read)
    whole = trained.model(mx.array(concepts)[None], relations=mx.array(relations)[None], memory=memory_batch(memory))
    with torch.no_grad():
        outputs = []
        for i, (c, r) in enumerate(zip(concepts, relations)):
            parts = (np.array(memory.values[i]), np.array(memory.similarity[i]), np.array(memory.valid[i]))
            inputs = step_inputs(step, c, int(r), parts)
            assert list(inputs) == list(step.inputs)
            outputs.append(traced(*(torch.from_numpy(v) for v in inputs.values())))
    stepped = np.stack([o[0].numpy()[0] for o in outputs])
    np.testing.assert_allclose(stepped, np.array(whole.next_vector[0]), atol=1e-4)
    hidden, planner = whole.hidden[0], trained.model.planner
    prefix = mx.zeros((len(concepts), 0), dtype=mx.int32)
    for level in range(args.rvq_levels):  # the greedy code path, level by level
        expected = planner.level_logits(hidden, prefix, level)
        got = np.stack([o[1].numpy()[0, level] for o in outputs])
        np.testing.assert_allclose(got, np.array(expected), atol=1e-4)
        prefix = mx.concatenate([prefix, mx.argmax(expected, axis=-1, keepdims=True).astype(mx.int32)], axis=1)


def memory_batch(memory: Memory) -> Memory:
    """A read of N concepts as the memory of one sequence of N positions."""
    return Memory(*(part[None] for part in memory))


def test_the_traced_encoder_embeds_as_the_run_encoder(trained_run_path, embedder):
    _, config = load_run(RunDir(trained_run_path))
    directory = encoder_directory(config)
    encoder = SentenceEncoder(directory, config.store.max_tokens)
    traced = trace(encoder, (torch.zeros(1, encoder.length, dtype=torch.int32),) * 2)
    tokenizer = load_tokenizer(directory / "tokenizer.json")
    texts = ["Sort a list in place.", "Read a file line by line and strip the whitespace at both ends of each line."]
    with torch.no_grad():
        inputs = [map(torch.from_numpy, padded_tokens(tokenizer, text, encoder.length)) for text in texts]
        got = np.concatenate([traced(*tokens) for tokens in inputs])
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-4)


@pytest.fixture(scope="module")
def bundle(trained_run_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml") / "bundle"
    result = meqg("export", "coreml", "--run", str(trained_run_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out  # how long it takes: bench/export.py


def test_the_bundle_holds_what_an_app_needs(bundle, small_store):
    out = bundle
    names = {"concepts.bin", "concepts.json", "encoder.mlpackage", "manifest.json", "tokenizer.json", "memory.bin"}
    assert {p.name for p in out.iterdir()} == names | {"vmm_step.mlpackage"}
    manifest = json.loads((out / "manifest.json").read_text())
    edges = np.fromfile(out / "memory.bin", dtype=np.int32).reshape(manifest["memory"]["shape"])
    assert len(edges) and edges[:, :2].max() < small_store.count() and edges[:, 2].min() >= 0
    count, dim = small_store.count(), small_store.dim
    assert manifest["concepts"]["shape"] == [count, dim] and manifest["store"]["concepts"] == count
    assert (out / "concepts.bin").stat().st_size == count * dim * 2  # float16 rows
    table = json.loads((out / "concepts.json").read_text())
    vectors = np.fromfile(out / "concepts.bin", dtype=np.float16).reshape(count, dim)
    ids, stored = small_store.all_vectors()
    row = int(np.flatnonzero(np.array(table["ids"]) == ids[5])[0])
    np.testing.assert_allclose(vectors[row], stored[5], atol=1e-3)  # float16
    assert table["texts"][row] == small_store.get([int(ids[5])])[0]["text"]


def test_the_saved_specs_are_static_float16_and_on_device_ops(bundle, trained_run_path):
    """Checked: spec version >= 9 (iOS 18 / macOS 15: states), names, shapes and dtypes of inputs, outputs
    and states, every op in DEVICE_OPS (no control flow, no data-dependent shapes, no custom layers), and
    float32 only in the casts at the inputs and outputs (compute in float16)."""
    out = bundle
    args = load_checkpoint_vmm(RunDir(trained_run_path).latest_checkpoint()).args
    step = package_spec(out / "vmm_step.mlpackage")
    assert step["specification_version"] >= 9 and spec_problems(step) == []
    assert len(args.relations) > 1  # the run's store holds typed relations: the step takes the one to follow
    slots = args.memory_slots
    assert step["inputs"] == {
        "concept": ((1, args.concept_dim), "float32"),
        "relation": ((1,), "int32"),
        "memory": ((1, slots, args.concept_dim), "float32"),
        "memory_similarity": ((1, slots), "float32"),
        "memory_valid": ((1, slots), "float32"),
    }
    assert step["outputs"] == {
        "next_concept": ((1, args.concept_dim), "float32"),
        "planner_logits": ((1, args.rvq_levels, args.rvq_codes), "float32"),
    }
    heads = args.expand * args.d_model // args.head_dim
    conv = args.expand * args.d_model + 2 * args.d_state
    expected_states = {"context": ((1, args.context_lags - 1, args.concept_dim), "float16")}
    for i in range(args.n_layers):
        expected_states[f"conv_{i}"] = ((1, 3, conv), "float16")
        expected_states[f"ssm_{i}"] = ((1, heads, args.head_dim, args.d_state), "float16")
    assert step["states"] == expected_states
    assert {"read_state", "write_state", "topk"} <= set(step["ops"])
    encoder = package_spec(out / "encoder.mlpackage")
    assert spec_problems(encoder) == [] and encoder["states"] == {}
    assert encoder["inputs"] == {n: ((1, 128), "int32") for n in ("input_ids", "attention_mask")}
    assert encoder["outputs"] == {"embedding": ((1, 384), "float32")}
    assert spec_problems({**step, "ops": step["ops"] + ["while_loop"]}) == [
        "ops outside the GPU/Neural Engine set: while_loop"
    ]  # the check can fail
    assert "while_loop" not in DEVICE_OPS


def test_bad_exports_are_one_line_errors_and_leave_nothing(trained_run_path, small_store_path, tmp_path):
    refuses_taken_outputs_and_untrained_runs(export_coreml, trained_run_path, small_store_path, tmp_path)
    other = tmp_path / "mpnet-run"
    shutil.copytree(trained_run_path, other)
    mpnet, _ = build_tiny_mpnet(tmp_path / "mpnet", seed=0)
    config = RunDir(other).config_path
    config.write_text(config.read_text().replace("model: ''", f"model: {mpnet}"))
    with pytest.raises(MeqgError, match="converts BERT-family encoders .* not 'mpnet'") as error:
        export_coreml(other, tmp_path / "out2")
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh-run", "mpnet", "mpnet-run", "taken"]  # no partial


@pytest.mark.linux  # on macOS `meqg coreml check` predicts (test_core_ml_predicts_as_pytorch)
def test_prediction_needs_macos_elsewhere(bundle):
    result = meqg("coreml", "check", str(bundle))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "only on macOS" in result.stderr


@macos
def test_core_ml_predicts_as_pytorch(bundle):
    result = check_bundle(bundle, count=8)
    assert min(result["min_cosine"].values()) >= 0.999
    assert result["same_codes"] >= 7


@macos
def test_bench_times_every_compute_unit(bundle):
    result = meqg("coreml", "bench", str(bundle), "--steps", "10")
    assert result.returncode == 0, result.stderr
    assert all(unit in result.stdout for unit in ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"))
