"""Imports point one way (docs/design.md, Layers): a module never imports from a layer above its own,
and no modules import each other in a loop, within a layer or among the bench scripts either.

Read from the source with `ast`, so imports inside functions (the lazy ones) count too.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "meqg_mlx": ROOT / "meqg_mlx",
    "meqg_converters": ROOT / "converters",
    "meqg_cli": ROOT / "cli",
    "meqg_tui": ROOT / "tui",
}
BENCH = ROOT / "bench"  # scripts that import each other by bare name (`from store import ...`)
LAYERS = [  # bottom first; a module belongs to the longest prefix listed
    (
        "meqg_mlx",
        "meqg_mlx.backend",
        "meqg_mlx.errors",
        "meqg_mlx.paths",
        "meqg_mlx.atomic",
        "meqg_mlx.runs",
        "meqg_mlx.telemetry",
    ),
    (
        "meqg_mlx.kernels",
        "meqg_mlx.vmm",
        "meqg_mlx.encoder",
        "meqg_mlx.config",
        "meqg_mlx.inversion.inverter",
        "meqg_mlx.schedules",
    ),
    ("meqg_mlx.concepts", "meqg_mlx.sandbox"),
    ("meqg_mlx.corpus", "meqg_mlx.trained"),
    ("meqg_mlx.diamond",),
    ("meqg_mlx.inversion",),
    ("meqg_mlx.episode",),
    ("meqg_mlx.train",),
    ("meqg_mlx.eval",),
    ("meqg_converters",),
    ("meqg_cli", "meqg_tui"),
]


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), layer)
        for layer, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS (and docs/design.md)"
    return max(matches)[1]


def modules():
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            yield ".".join(parts), path, is_package


def annotation_only(tree: ast.Module) -> set[ast.AST]:
    """The import statements under `if TYPE_CHECKING:`: they never run, so they make no import loop."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {child for statement in node.body for child in ast.walk(statement)}
    return guarded


def imports(module: str, path: Path, is_package: bool, running_only: bool = False):
    """Every meqg module `module` imports, with the line (`running_only`: not those for annotations)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    tree = ast.parse(path.read_text())
    skipped = annotation_only(tree) if running_only else set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                prefix = ".".join(anchor + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from . import x` may name a submodule; `from .a import B` names something in a
            names = [f"{prefix}.{alias.name}" for alias in node.names] if not node.module else [prefix]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name, node.lineno


def test_no_module_imports_from_a_layer_above_it():
    up = []
    for module, path, is_package in modules():
        own = layer_of(module)
        for name, line in imports(module, path, is_package):
            if layer_of(name) > own:
                up.append(
                    f"{path.relative_to(ROOT)}:{line} ({module}, layer {own}) imports {name} (layer {layer_of(name)})"
                )
    print(f"{sum(1 for _ in modules())} modules checked against {len(LAYERS)} layers")
    assert not up, "imports that reach up:\n" + "\n".join(up)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check itself can fail: a config module importing the trainer is caught."""
    path = tmp_path / "config.py"
    path.write_text("def f():\n    from .train.trainer import Trainer\n")
    found = list(imports("meqg_mlx.config", path, False))
    assert found == [("meqg_mlx.train.trainer", 2)] and layer_of(found[0][0]) > layer_of("meqg_mlx.config")


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports when it runs (a name inside a module counts as that module), its
    own parent packages left out (Python imports those first anyway), bench scripts as `bench.NAME`."""
    found = {module: (path, is_package) for module, path, is_package in modules()}
    bench = {path.stem for path in BENCH.glob("*.py")}
    found |= {f"bench.{name}": (BENCH / f"{name}.py", False) for name in bench}

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        if parts[0] in bench:
            return f"bench.{parts[0]}"
        while parts and ".".join(parts) not in found:
            parts.pop()
        return ".".join(parts) or None

    graph = {}
    for module, (path, is_package) in found.items():
        names = (
            imports(module, path, is_package, True) if not module.startswith("bench.") else bare_imports(path, bench)
        )
        targets = {resolve(name) for name, _ in names}
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def bare_imports(path: Path, names: set[str]):
    """meqg modules and sibling scripts a bench script imports, with the line."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            if name.split(".")[0] in names or name.split(".")[0] in PACKAGES:
                yield name, node.lineno


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: each set of modules that reach one another, sorted."""

    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(graph.get(start, ()))
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
        return seen

    reach = {module: reachable(module) for module in graph}
    loops = {frozenset({m} | {o for o in reach[m] if m in reach[o]}) for m in graph if m in reach[m]}
    return sorted(sorted(loop) for loop in loops)


def test_no_modules_import_each_other_in_a_loop():
    graph = import_graph()
    loops = cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(loops)} loops")
    assert not loops, "import loops (break each with a protocol or by moving the shared part down):\n" + "\n".join(
        " <-> ".join(loop) for loop in loops
    )


def test_the_cycle_check_sees_a_loop():
    """The check itself can fail: a three-module loop and a two-module one are found, a chain is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e", "a"}, "g": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["e", "f"]]


def test_imports_for_annotations_only_make_no_loop(tmp_path):
    """`if TYPE_CHECKING:` imports never run: the loop check skips them, the layer check still sees them."""
    path = tmp_path / "columns.py"
    lines = ["from typing import TYPE_CHECKING", "if TYPE_CHECKING:", "    from .store import S", "from .text import t"]
    path.write_text("\n".join(lines) + "\n")
    running = [name for name, _ in imports("meqg_mlx.concepts.columns", path, False, running_only=True)]
    assert running == ["meqg_mlx.concepts.text"]
    assert len(list(imports("meqg_mlx.concepts.columns", path, False))) == 2
