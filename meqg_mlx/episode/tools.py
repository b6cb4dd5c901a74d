"""Tools an episode may call; each result becomes an observation concept.

`python` runs a program in the OS sandbox (`meqg_mlx.sandbox`: namespaces and seccomp
on Linux, sandbox-exec on macOS; time, memory, disk and output limits); `store` returns
the texts of the store concepts nearest a query. Latency is measured, for S_geo.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..concepts.store import ConceptStore
from ..encoder.base import Embedder, check_texts
from ..errors import InputError
from ..sandbox import SandboxUnavailable, isolation, run_python, unavailable_message


@dataclass
class Observation:
    tool: str
    text: str
    ok: bool
    latency_ms: float


class PythonTool:
    name = "python"

    def __init__(
        self, timeout_s: float = 5.0, memory_mb: int = 512, max_output: int = 2000, allow_unsafe: bool = False
    ):
        self.timeout_s, self.memory_mb, self.max_output = timeout_s, memory_mb, max_output
        self.allow_unsafe = allow_unsafe

    def __call__(self, code: str) -> Observation:
        result = run_python(
            code,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_output=self.max_output,
            allow_unsafe=self.allow_unsafe,
        )
        if result.timed_out:
            text = f"killed after {self.timeout_s:g} s"
        elif result.output_limited:
            text = "killed: too much output"
        elif result.disk_limited:
            text = "killed: too much disk"
        elif result.ok:
            text = result.stdout.strip() or "(no output)"
        else:
            text = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return Observation(self.name, text, result.ok, 1e3 * result.seconds)


class StoreLookupTool:
    name = "store"

    def __init__(self, store: ConceptStore, embedder: Embedder, k: int = 3):
        self.store, self.embedder, self.k = store, embedder, k

    def __call__(self, query: str) -> Observation:
        started = time.perf_counter()
        check_texts([query])
        hits = self.store.search_vector(self.embedder.encode([query])[0], self.k)
        text = "\n".join(" ".join(hit.text.split()) for hit in hits) or "(no concepts)"  # one line per concept
        return Observation(self.name, text, bool(hits), 1e3 * (time.perf_counter() - started))


TOOL_NAMES = ("python", "store")


def check_tool_names(names: list[str]) -> list[str]:
    """The names, each once; an unknown one is a one-line error that lists the known ones."""
    for name in names:
        if name not in TOOL_NAMES:
            raise InputError(f"unknown tool '{name}' (known: {', '.join(TOOL_NAMES)})")
    return list(dict.fromkeys(names))


def make_tools(names: list[str], store: ConceptStore, embedder: Embedder, allow_unsafe_python: bool = False) -> dict:
    """Tools by name; an unknown name is a one-line error that lists the known ones.

    Without OS isolation the python tool is refused here, before the episode starts,
    unless `allow_unsafe_python`.
    """
    tools = {}
    for name in check_tool_names(names):
        if name == "python":
            if not (allow_unsafe_python or isolation().safe):
                raise SandboxUnavailable(unavailable_message())
            tools[name] = PythonTool(allow_unsafe=allow_unsafe_python)
        else:
            tools[name] = StoreLookupTool(store, embedder)
    return tools
