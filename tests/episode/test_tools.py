"""Tools on real parts: the sandboxed python tool and the store lookup on the small real store."""

import pytest

from meqg_mlx.episode.tools import PythonTool, StoreLookupTool, make_tools
from meqg_mlx.errors import InputError


def test_python_tool_returns_output_and_latency():
    observation = PythonTool()("print(6 * 7)")
    assert observation.ok and observation.text == "42" and observation.latency_ms > 0


def test_python_tool_reports_errors_and_limits(tmp_path):
    escaped = tmp_path / "x.txt"
    observation = PythonTool()(f"open({str(escaped)!r}, 'w')")
    assert not observation.ok and "No such file or directory" in observation.text and not escaped.exists()
    observation = PythonTool(timeout_s=1.0)("while True: pass")
    assert not observation.ok and observation.text == "killed after 1 s" and observation.latency_ms < 5000


def test_store_tool_returns_the_nearest_texts(small_store, embedder):
    text = small_store.get(small_store.all_vectors()[0][:1].tolist())[0]["text"]
    observation = StoreLookupTool(small_store, embedder)(text)
    assert observation.ok and observation.text.splitlines()[0] == " ".join(text.split())


def test_unknown_tool_is_a_one_line_error(small_store, embedder):
    assert set(make_tools(["python", "store"], small_store, embedder)) == {"python", "store"}
    with pytest.raises(InputError, match="unknown tool 'web' \\(known: python, store\\)"):
        make_tools(["web"], small_store, embedder)
