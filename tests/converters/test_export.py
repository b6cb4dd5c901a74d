"""`meqg export torch`: a trained run that plain PyTorch loads and runs as MLX does."""

import json
import shutil
import sys
import textwrap

import mlx.core as mx
import numpy as np
import yaml
import pytest

from meqg_converters.export import export_torch
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import WEIGHTS, RunDir
from meqg_mlx.trained import TrainedRun
from meqg_mlx.vmm.load import load_model
from meqg_mlx.vmm.model import ModelArgs

from ..conftest import meqg
from .conftest import refuses_taken_outputs_and_untrained_runs
from ..processes import run as run_process

# Runs in a fresh interpreter in which mlx and meqg cannot be imported: what a PyTorch user has.
PLAIN_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoMeqg(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("mlx", "meqg_mlx", "meqg_converters", "meqg_cli", "meqg_tui"):
                raise ImportError(f"{name} is not installed here")

    sys.meta_path.insert(0, NoMeqg())
    for name in ("mlx", "meqg_mlx"):
        try:
            __import__(name)
            sys.exit(f"{name} imported")
        except ImportError:
            pass

    import numpy as np, torch
    export, inputs, result = sys.argv[1:4]
    sys.path.insert(0, export)
    import modeling_meqg

    from safetensors.torch import load_file

    model = modeling_meqg.load_pretrained(export)
    given = {k: torch.from_numpy(v) for k, v in np.load(inputs).items()}
    concepts, relations = given["concepts"], given["relations"]
    edges = load_file(f"{export}/memory.safetensors")
    memory = modeling_meqg.StoreMemory(edges, given["ids"], given["vectors"], model.args.memory_slots)
    with torch.no_grad():
        own = memory.read(concepts, relations)  # as meqg reads it, up to which of tied edges fill the last slots
        read = modeling_meqg.Memory(given["values"], given["similarity"], given["valid"])  # meqg's read
        out = model(concepts, relations=relations, memory=read)
        codes = model.rvq.encode(out.next_vector)
        logits = model.planner(out.hidden, codes)
        cache = model.make_cache()
        steps = [
            model(concepts[:, t : t + 1], cache=cache, relations=relations[:, t : t + 1],
                  memory=type(read)(*(part[:, t : t + 1] for part in read))).next_vector
            for t in range(concepts.shape[1])
        ]
        stepped = torch.cat(steps, 1)
    np.savez(result, next_vector=out.next_vector.numpy(), codes=codes.numpy(), logits=logits.numpy(),
             similarity=own.similarity.numpy(), valid=own.valid.numpy(),
             stepped=stepped.numpy(), modules=sorted(m for m in sys.modules if m.startswith(("mlx", "meqg"))))
    """
)


def test_the_export_runs_in_plain_torch_as_the_run_does_in_mlx(trained_run_path, small_store, tmp_path):
    out = tmp_path / "export"
    result = meqg("export", "torch", "--run", str(trained_run_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = ["README.md", "config.json", "memory.safetensors", "model.safetensors", "modeling_meqg.py"]
    assert sorted(p.name for p in out.iterdir()) == files
    config = json.loads((out / "config.json").read_text())
    assert config["store"] == {
        "path": small_store.uri,
        "origin_model": small_store.origin_model,
        "dim": small_store.dim,
        "concepts": small_store.count(),
        "version": small_store.table.version,
    }
    run = RunDir(trained_run_path)
    assert config["model_args"]["concept_dim"] == small_store.dim
    assert run.checkpoint(config["run"]["step"]) == run.latest_checkpoint()
    assert config["rvq"]["levels"] == 2 and config["rvq"]["codes"] == 16
    relations = config["model_args"]["relations"]  # the run's ids, for callers that pass relations=
    assert relations[0] == "next" and "defined_in" in relations
    assert relations == yaml.safe_load((RunDir(trained_run_path).config_path).read_text())["vmm"]["relations"]

    ids, rows = small_store.all_vectors()
    concepts = np.stack([rows[:37], rows[40:77]]).astype(np.float32)  # 37 steps: across chunks of 16
    relations = np.arange(2 * 37).reshape(2, 37) % len(relations)  # and reading the store's memory
    trained = TrainedRun.open(trained_run_path)
    read = trained.memory.read(concepts, relations)
    memory = trained.memory.model_memory(read)
    np.savez(
        tmp_path / "inputs.npz",
        concepts=concepts,
        relations=relations,
        ids=ids,
        vectors=rows,
        **{name: np.array(getattr(memory, name)) for name in ("values", "similarity", "valid")},
    )
    plain = run_process(
        [sys.executable, "-c", PLAIN_TORCH, str(out), str(tmp_path / "inputs.npz"), str(tmp_path / "result.npz")],
        timeout=300,
    )
    assert plain.returncode == 0, plain.stderr
    got = np.load(tmp_path / "result.npz")
    assert list(got["modules"]) == []

    np.testing.assert_allclose(got["similarity"], read.similarity, atol=1e-5)  # the same neighbours
    np.testing.assert_array_equal(got["valid"], read.targets >= 0)
    model = load_model(trained.checkpoint, ModelArgs(**config["model_args"]))
    expected = model(mx.array(concepts), relations=mx.array(relations), memory=memory)
    codes, _ = model.rvq.encode(expected.next_vector.reshape(-1, small_store.dim))
    codes = codes.reshape(2, 37, -1)
    logits = model.planner(expected.hidden, codes)
    np.testing.assert_allclose(got["next_vector"], np.array(expected.next_vector), atol=1e-5)
    np.testing.assert_allclose(got["stepped"], np.array(expected.next_vector), atol=1e-5)
    np.testing.assert_array_equal(got["codes"], np.array(codes))
    np.testing.assert_allclose(got["logits"], np.array(logits), atol=1e-5)
    assert float(np.abs(np.array(logits)).max()) > 0.1  # a trained planner, not zeros

    # the README's own snippet runs from the export after it moved: it names no path of this machine
    moved = tmp_path / "elsewhere" / "model"
    moved.parent.mkdir()
    out.rename(moved)
    readme = (moved / "README.md").read_text()
    assert str(tmp_path) not in readme
    snippet = readme.split("```python\n")[1].split("```")[0]
    ran = run_process([sys.executable, "-c", snippet + "print(out.next_vector.shape)"], timeout=300, cwd=moved)
    assert ran.returncode == 0 and f"torch.Size([1, 5, {small_store.dim}])" in ran.stdout, ran.stderr


def test_bad_exports_are_one_line_errors_and_write_nothing(trained_run_path, small_store_path, tmp_path):
    """(`meqg` turns every MeqgError into one line and exit 2: tests/cli/test_one_line_errors.py.)"""
    refuses_taken_outputs_and_untrained_runs(export_torch, trained_run_path, small_store_path, tmp_path)
    broken = tmp_path / "broken-run"
    shutil.copytree(trained_run_path, broken)
    weights = RunDir(broken).latest_checkpoint() / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(MeqgError, match="cannot load .* into the PyTorch VMM") as error:
        export_torch(broken, tmp_path / "out2")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporary sibling left
