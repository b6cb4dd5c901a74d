"""Install layout: namespaced import names, and the library never imports UI code."""

import subprocess
import sys


def run(code: str, cwd) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_no_top_level_cli_tui_or_converters_module(tmp_path):
    found = run(
        "import importlib.util as u; print([u.find_spec(n) is not None for n in "
        "('cli', 'tui', 'converters', 'metal', 'data', "
        "'meqg_cli', 'meqg_tui', 'meqg_converters', 'meqg_metal', 'meqg_data', 'meqg_mlx')])",
        tmp_path,
    )
    assert found == "[False, False, False, False, False, True, True, True, True, True, True]"


def test_library_does_not_import_cli_or_tui(tmp_path):
    code = (
        "import pkgutil, importlib, sys, meqg_mlx\n"
        "for m in pkgutil.walk_packages(meqg_mlx.__path__, 'meqg_mlx.'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('meqg_cli', 'meqg_tui', 'typer', 'textual')))"
    )
    assert run(code, tmp_path) == "[]"


def test_every_library_package_is_listed_in_pyproject():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "meqg_mlx").rglob("*.py")}
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"
    unmarked = sorted(name for name in found if not (root / name.replace(".", "/") / "__init__.py").exists())
    assert not unmarked, f"give each package an __init__.py (an installed wheel skips the others): {unmarked}"
