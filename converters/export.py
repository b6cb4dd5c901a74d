"""`meqg export torch`: a trained run as a directory any PyTorch user loads without meqg or MLX.

    OUT/model.safetensors   the PyTorch twin's state dict: weights, the RVQ codebooks
                            (`rvq.codebooks`, levels x codes x dim) and the experts' domain
                            centroids (`expert_centroids`, n_experts x dim)
    OUT/config.json         ModelArgs (concept_dim included), the RVQ shape, the store the run
                            trained on (origin model, dim, concept count, table version), the run
    OUT/memory.safetensors  for a model with memory slots, the store edges it reads (`source_id`,
                            `target_id`, `relation`; modeling_meqg.StoreMemory reads them)
    OUT/modeling_meqg.py    the twin's source (converters/torch_vmm.py): torch and safetensors only
    OUT/README.md           how to load it

Written to a temporary sibling and renamed into place; an existing non-empty OUT is refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from meqg_mlx.atomic import replaced_dir
from meqg_mlx.errors import MeqgError
from meqg_mlx.runs import STATE
from meqg_mlx.trained import TrainedRun

from . import torch_vmm
from .weights import load_checkpoint_vmm

FORMAT = "meqg-torch"
FORMAT_VERSION = 1
MODELING = "modeling_meqg.py"

USAGE = """# {run_id}: a meqg VMM for PyTorch

Exported by `meqg export torch` from {checkpoint} (step {step}). Needs only `torch` and `safetensors`.
Run from this directory, wherever it was moved (elsewhere, put its path in place of "."):

```python
import sys, torch
sys.path.insert(0, ".")
import modeling_meqg

model = modeling_meqg.load_pretrained(".")                # eval mode, on the CPU
concepts = torch.randn(1, 5, {dim}); concepts /= concepts.norm(dim=-1, keepdim=True)
out = model(concepts)                                      # out.next_vector (1, 5, {dim}): unit rows
codes = model.rvq.encode(out.next_vector[0])               # RVQ codes of each prediction
logits = model.planner(out.hidden[0], codes)               # planner logits (5, levels, codes)

cache = model.make_cache()                                 # step by step: one concept per call
for t in range(5):
    step = model(concepts[:, t : t + 1], cache=cache)
```
{memory}
Concept vectors come from `{origin_model}` ({dim} dims, unit length): the store this model was
trained on ({concepts} concepts) is described in config.json.
"""


MEMORY_USAGE = """
The model reads the store as memory (`model_args.memory_slots` edges per position): pass what each
position read, from memory.safetensors over the store's vectors (ids, vectors: all of the store's):

```python
from safetensors.torch import load_file
memory = modeling_meqg.StoreMemory(load_file("memory.safetensors"), ids, vectors, model.args.memory_slots)
relations = torch.zeros(1, 5, dtype=torch.long)            # the relation each position follows (0: next)
out = model(concepts, relations=relations, memory=memory.read(concepts, relations))
```
"""


def memory_tensors(trained: TrainedRun) -> dict[str, torch.Tensor]:
    """The edges a run's memory reads, by concept id (memory.safetensors)."""
    edges, ids = trained.memory.all_edges(), trained.table.ids
    return {
        "source_id": torch.from_numpy(ids[edges.source].astype(np.int64)),
        "target_id": torch.from_numpy(ids[edges.target].astype(np.int64)),
        "relation": torch.from_numpy(edges.relation.astype(np.int64)),
    }


def require_new_output(out: Path) -> None:
    """An export goes into a new or an empty directory; anything else is refused and left as it is."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MeqgError(f"{out} already exists and is not an empty directory: choose another --out")


def export_torch(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's latest checkpoint as a PyTorch export in `out_dir` (new, or an empty directory)."""
    out = Path(out_dir)
    require_new_output(out)
    trained = TrainedRun.open(run_dir)
    meta, checkpoint, store = trained.meta, trained.checkpoint, trained.store
    try:
        state = json.loads((checkpoint / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise MeqgError(f"corrupt checkpoint {checkpoint}: {STATE} unreadable ({exc})") from None
    model = load_checkpoint_vmm(checkpoint)
    args = model.args
    if store.dim != args.concept_dim:
        raise MeqgError(f"{checkpoint} takes {args.concept_dim}-dim concepts; its store {store.uri} has {store.dim}")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_args": dataclasses.asdict(args),
        "concept_dim": args.concept_dim,
        "rvq": {"levels": args.rvq_levels, "codes": args.rvq_codes, "tensor": "rvq.codebooks"},
        "experts": {"count": args.n_experts, "top_k": args.top_k, "centroids_tensor": "expert_centroids"},
        "store": store.record(),
        "run": {"run_id": meta["run_id"], "checkpoint": checkpoint.name, "step": state.get("step")},
        "torch_version": torch.__version__,
    }
    usage = USAGE.format(
        run_id=meta["run_id"],
        checkpoint=checkpoint.name,
        step=state.get("step"),
        dim=args.concept_dim,
        origin_model=store.origin_model,
        concepts=config["store"]["concepts"],
        memory=MEMORY_USAGE if trained.memory is not None else "",
    )
    with replaced_dir(out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        if trained.memory is not None:
            save_file(memory_tensors(trained), str(tmp / "memory.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        shutil.copyfile(torch_vmm.__file__, tmp / MODELING)
        (tmp / "README.md").write_text(usage)
    return out
