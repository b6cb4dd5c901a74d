"""The PyTorch twins keep step with their MLX files (in the spirit of transformers' check_copies).

Each pair below is one idea written twice, MLX for the laptop and PyTorch for CUDA and export.
The check reads both files with `ast`: every public function and class of the MLX file exists
in its twin and the reverse, and every class in both assigns the same attributes in `__init__`
(its submodules, parameters and settings: what a state dict and a forward pass are made of),
except the differences declared here, each with its reason. A term added to one file and not
the other fails until it is added to the twin or declared. Both files name each other in their
docstrings, and docs/design.md lists the pairs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Twin:
    torch: str
    mlx: list[str]  # the MLX files it mirrors
    only_mlx: dict[str, str] = field(default_factory=dict)  # "Name" or "Class.attribute" -> why
    only_torch: dict[str, str] = field(default_factory=dict)


ARGS = "a config dataclass: the twin takes any object with its fields, so the fields live once"
TWINS = [
    Twin(
        "converters/torch_vmm.py",
        [
            "meqg_mlx/vmm/model.py",
            "meqg_mlx/vmm/moe.py",
            "meqg_mlx/vmm/cache.py",
            "meqg_mlx/vmm/ssd.py",
            "meqg_mlx/vmm/rvq.py",
            "meqg_mlx/kernels/ssd.py",
        ],
        only_mlx={
            "ModelArgs": ARGS,
            "SSDArgs": ARGS,
            "RVQArgs": ARGS,
            "PlannerDistribution": "the planner's code distribution, read by the ledger in MLX training",
            "ResidualVQ.args": "the twin's RVQ is its inference half: codebooks arrive frozen",
            "ResidualVQ.next_code_id": "dead-code resets happen in MLX training only",
            "ssd_scan": "the CPU/Metal/CUDA kernel; the twin runs the chunked reference",
            "ssd_sequential": "the recurrence as a test oracle; the twin's decoding step is ssd_step",
            "take_rows": "a gather whose VJP avoids MLX's slow scatter-add; PyTorch's index_select is fine",
        },
        only_torch={
            "ssd_step": "one position of the recurrence for decoding (MLX: ssd_sequential at l = 1)",
            "load_pretrained": "the export's entry point (modeling_meqg.py)",
            "StoreMemory": "reads the exported edges; in MLX: meqg_mlx.corpus.memory, above the model files",
            "ExpertsGLU.dense": "per-expert dispatch or all experts at once for tracing (MLX: gather_mm)",
            "NextConceptHead.generator": "MLX tests `self.generate is not None` instead",
            "SSDMixer.n_groups": "MLX keeps it in SSDArgs",
        },
    ),
    Twin(
        "converters/torch_objective.py",
        ["meqg_mlx/diamond/objective.py"],
        only_mlx={
            "Objective": "the PyTorch trainer uses the MLX Objective's S_geo and term weights",
            "ObjectiveTerms": "the trainer reports the summed terms itself (all-reduced over ranks)",
        },
    ),
    Twin(
        "converters/torch_ledger.py",
        ["meqg_mlx/diamond/ledger.py"],
        only_mlx={  # the twin holds what the PyTorch trainer's objective needs: the Monte-Carlo surrogate
            "AutoregressiveCodes": "the planner interface of the exact and Monte-Carlo estimators",
            "LedgerEstimate": "the estimators' result type",
            "Planner": "the protocol of what the ledger samples from",
            "collapse_pressure": "read by the MLX gate and monitor",
            "draw": "MLX's sampler; the twin draws with torch.Generator per position",
            "marginal_logprobs": "exact S_mod, for tests and small code spaces",
            "phi_exact": "exact Phi, for tests and small code spaces",
            "phi_mc": "Phi for the monitor, measured in MLX",
            "s_mod_exact": "exact S_mod, for tests and small code spaces",
            "s_mod_mc": "the estimate the MLX gate reads; the twin needs the surrogate only",
        },
    ),
]


def definitions(path: Path) -> tuple[str, dict[str, set[str]]]:
    """(docstring, {public top-level name: attributes its `__init__` assigns (empty for functions)})."""
    tree = ast.parse(path.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names[node.name] = init_attributes(node) if isinstance(node, ast.ClassDef) else set()
    return ast.get_docstring(tree) or "", names


def init_attributes(cls: ast.ClassDef) -> set[str]:
    attributes = set()
    for function in cls.body:
        if not (isinstance(function, ast.FunctionDef) and function.name == "__init__"):
            continue
        for node in ast.walk(function):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (
                        isinstance(element, ast.Attribute)
                        and isinstance(element.value, ast.Name)
                        and element.value.id == "self"
                    ):
                        attributes.add(element.attr)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("register_buffer", "register_parameter")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                attributes.add(node.args[0].value)
    return attributes


def differences(mlx: dict[str, set[str]], torch: dict[str, set[str]]) -> tuple[set[str], set[str]]:
    """Names and Class.attributes in one side and not the other."""
    only_mlx, only_torch = mlx.keys() - torch.keys(), torch.keys() - mlx.keys()
    for name in mlx.keys() & torch.keys():
        only_mlx |= {f"{name}.{a}" for a in mlx[name] - torch[name]}
        only_torch |= {f"{name}.{a}" for a in torch[name] - mlx[name]}
    return only_mlx, only_torch


@pytest.mark.parametrize("twin", TWINS, ids=lambda t: t.torch)
def test_each_twin_defines_what_its_mlx_files_do(twin):
    torch_doc, torch = definitions(ROOT / twin.torch)
    mlx = {}
    for path in twin.mlx:
        doc, names = definitions(ROOT / path)
        mlx |= names
        assert twin.torch in doc, f"{path}'s docstring should name its PyTorch twin {twin.torch}"
        module = path.removesuffix(".py").replace("/", ".")
        assert module in torch_doc, f"{twin.torch}'s docstring should name {module}"
    only_mlx, only_torch = differences(mlx, torch)
    assert sorted(only_mlx) == sorted(twin.only_mlx), f"in the MLX files, not in {twin.torch} (add or declare)"
    assert sorted(only_torch) == sorted(twin.only_torch), f"in {twin.torch}, not in its MLX files (add or declare)"


def class_methods(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name]
    return {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}


def test_the_torch_trainer_replaces_only_public_methods_of_the_mlx_trainer():
    """`TorchTrainer` keeps the MLX trainer's loop, recovery and telemetry and replaces its public steps
    (`step`, `measure_phi`, ...); a private helper of the same name would silently take the MLX one's
    place wherever the base class calls it, with other arguments."""
    torch_methods = class_methods(ROOT / "converters/train.py", "TorchTrainer")
    mlx_methods = class_methods(ROOT / "meqg_mlx/train/trainer.py", "Trainer")
    shadowed = {m for m in torch_methods & mlx_methods if m.startswith("_") and not m.startswith("__")}
    assert not shadowed, f"TorchTrainer redefines the MLX Trainer's private {sorted(shadowed)}"
