"""The running Python's standard library as code concepts.

Each public module, class, function and method becomes a `code` concept: its
qualified name, signature and the first paragraph of its docstring. Relations:
`contains`/`defined_in` between modules, classes and members, `inherits` to base
classes, `uses` to module-level names a function's bytecode refers to. Longer
docstrings also become prose chains (`describes` their code concept). Doctests
are run per module in the sandbox; the outcome lands in `validation`.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import inspect
import io
import json
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ...sandbox import SandboxUnavailable, isolation, run_python
from ...sandbox.runner import OUTPUT_KILL_BYTES
from ...errors import InputError
from . import ConceptRecord
from ..text import paragraphs
from .prose import document_records
from ...progress import Progress

ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")

SKIP_MODULES = {
    "antigravity",
    "this",
    "turtledemo",
    "test",
    "pydoc_data",
    "xxsubtype",
    "xxlimited",
    "xxlimited_35",
    "msilib",
    "winreg",
    "winsound",
    "msvcrt",
    "nt",
    "__main__",
    "__phello__",
    "__hello__",
    "pip",
    "sitecustomize",
    "usercustomize",
    "idlelib.idle",
}
SKIP_PARTS = {"test", "tests", "idle_test", "__main__"}
PROSE_MIN_CHARS = 200

DOCTEST_RUNNER = r"""
import doctest, importlib, json, sys, warnings, io, contextlib
warnings.simplefilter("ignore")
results = {}
for name in json.loads(open("modules.json").read()):
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(name)
        tests = doctest.DocTestFinder(exclude_empty=True).find(module)
    except BaseException:
        tests = []
    for test in tests:
        runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                outcome = runner.run(test, out=lambda s: None)
            results[test.name] = "failed" if outcome.failed else "passed"
        except BaseException:
            results[test.name] = "error"
    print(json.dumps({"module": name, "results": results}), flush=True)
    results = {}
"""


def module_names() -> list[str]:
    """Public stdlib modules and their public submodules, importable or not."""
    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP_MODULES:
            continue
        names.append(top)
        spec = importlib.util.find_spec(top) if _safe_find(top) else None
        if spec is None or not spec.submodule_search_locations:
            continue
        for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=top + ".", onerror=lambda n: None):
            parts = info.name.split(".")
            if info.name not in SKIP_MODULES and not any(p.startswith("_") or p in SKIP_PARTS for p in parts):
                names.append(info.name)
    return names


def _safe_find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _import_quietly(name: str):
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001  (some stdlib modules raise SystemExit or need a platform)
        return None


def _display(qualname: str) -> str:
    return qualname.removeprefix("builtins.")


def _signature(obj) -> str:
    """The call signature, with default values' memory addresses cut out: the same text in every process."""
    try:
        return ADDRESS.sub("", str(inspect.signature(obj)))
    except Exception:  # noqa: BLE001  (C signatures can evaluate arbitrary defaults)
        return "(...)" if callable(obj) else ""


def _first_paragraph(doc: str | None) -> str:
    blocks = paragraphs(inspect.cleandoc(doc)) if doc else []
    return blocks[0] if blocks else ""


def _is_routine(obj) -> bool:
    return inspect.isroutine(obj) or isinstance(obj, (classmethod, staticmethod))


def example_records(qualname: str, doc: str, about: str, source: str) -> list[ConceptRecord]:
    """Each doctest example (`>>> code` and its expected output) as a code concept."""
    try:
        examples = doctest.DocTestParser().get_examples(inspect.cleandoc(doc))
    except ValueError:
        return []
    records = []
    for i, example in enumerate(examples):
        text = example.source.strip()
        if example.want.strip():
            text += "\n# -> " + example.want.strip()
        if len(text) >= 8:
            record = ConceptRecord(f"py-example:{qualname}#{i}", text[:600], "code", source)
            record.relate(about, "example_of")
            records.append(record)
    for current, following in zip(records, records[1:]):
        current.relate(following.key, "next")
    return records


def _is_attribute(obj) -> bool:
    """A documented property or C-level data descriptor (`int.real`)."""
    documented = bool(getattr(obj, "__doc__", None))
    return documented and (
        isinstance(obj, property) or inspect.isgetsetdescriptor(obj) or inspect.ismemberdescriptor(obj)
    )


class _ModuleWalker:
    """Records for one module; relations by key."""

    def __init__(self, module, source: str):
        self.module = module
        self.name = module.__name__
        self.source = source
        self.records: list[ConceptRecord] = []
        self.has_doctests = False

    def _owns(self, obj) -> bool:
        """Defined here, or in a private module (`_io`, `_collections_abc`) and exported here."""
        origin = getattr(obj, "__module__", None)
        if origin == self.name:
            return True
        private = isinstance(origin, str) and origin.startswith("_")
        return private and self.name in (origin.lstrip("_"), origin.lstrip("_").replace("_", "."))

    def code_record(self, qualname: str, obj, kind_word: str, doc: str | None) -> ConceptRecord:
        head = f"{kind_word} {_display(qualname)}" if kind_word else _display(qualname)
        if kind_word not in ("module", "attribute"):
            head += _signature(obj)
        summary = _first_paragraph(doc)
        record = ConceptRecord(f"py:{qualname}", f"{head}\n{summary}" if summary else head, "code", self.source)
        self.records.append(record)
        if doc:
            if ">>>" in doc:
                self.has_doctests = True
                record.validation = "pending"
                self.records.extend(example_records(qualname, doc, record.key, self.source))
            rest = "\n\n".join(paragraphs(inspect.cleandoc(doc))[1:])
            if len(rest) >= PROSE_MIN_CHARS:
                self.records.extend(document_records(f"pydoc-doc:{qualname}", rest, self.source, about=record.key))
        return record

    def walk(self) -> list[ConceptRecord]:
        module_record = self.code_record(self.name, self.module, "module", self.module.__doc__)
        if "." in self.name:
            parent = self.name.rsplit(".", 1)[0]
            module_record.relate(f"py:{parent}", "defined_in")
        local_names = {}
        members = []
        for attr, obj in sorted(vars(self.module).items()):
            if attr.startswith("_") or not self._owns(obj):
                continue
            if inspect.isclass(obj) or _is_routine(obj):
                local_names[attr] = f"py:{self.name}.{attr}"
                members.append((attr, obj))
        for attr, obj in members:
            qualname = f"{self.name}.{attr}"
            if inspect.isclass(obj):
                record = self.code_record(qualname, obj, "class", obj.__doc__)
                self._class_members(obj, qualname, record, local_names)
            else:
                record = self.code_record(qualname, obj, "", obj.__doc__)
                self._uses(obj, record, local_names)
            record.relate(module_record.key, "defined_in")
            module_record.relate(record.key, "contains", 0.5)
        return self.records

    def _class_members(self, cls, qualname: str, record: ConceptRecord, local_names: dict) -> None:
        for base in cls.__bases__:
            if base is not object and base.__module__ in sys.modules and not base.__name__.startswith("_"):
                record.relate(f"py:{base.__module__}.{base.__qualname__}", "inherits")
        for attr, obj in sorted(vars(cls).items()):
            if attr.startswith("_"):
                continue
            if _is_attribute(obj):
                attribute = self.code_record(f"{qualname}.{attr}", obj, "attribute", obj.__doc__)
                attribute.relate(record.key, "defined_in")
                record.relate(attribute.key, "contains", 0.5)
                continue
            if not _is_routine(obj):
                continue
            func = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
            method = self.code_record(f"{qualname}.{attr}", func, "", getattr(func, "__doc__", None))
            method.relate(record.key, "defined_in")
            record.relate(method.key, "contains", 0.5)
            self._uses(func, method, local_names)

    @staticmethod
    def _uses(func, record: ConceptRecord, local_names: dict) -> None:
        code = getattr(func, "__code__", None)
        if code is None:
            return
        for name in sorted(set(code.co_names) & local_names.keys()):
            if local_names[name] != record.key:
                record.relate(local_names[name], "uses", 0.5)


def run_doctests(modules: list[str], timeout_s: float, memory_mb: int) -> dict[str, str]:
    """Doctest outcome per test name (`module.qualname`) for modules run in one sandbox.

    A module the sandbox did not finish (time or memory limit) maps to "timeout".
    """
    result = run_python(
        DOCTEST_RUNNER,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_output=OUTPUT_KILL_BYTES,  # a truncated report would read as a timeout
        files={"modules.json": json.dumps(modules)},
    )
    outcomes = {name: "timeout" for name in modules}
    for line in result.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            report = json.loads(line)
            outcomes[report["module"]] = "done"
            outcomes.update(report["results"])
    return outcomes


def stdlib_code(
    modules: list[str] | None = None,
    run_doctest: bool = True,
    timeout_s: float = 20.0,
    memory_mb: int = 1024,
    progress: Progress | None = None,
) -> Iterator[ConceptRecord]:
    """Code concepts (and docstring prose) for public stdlib modules (all, or `modules` and their submodules).

    Doctests run in the sandbox on two workers ahead of the consumer; a consumer that
    stops early (--limit) cancels the runs it no longer needs.
    """
    names = [n for n in module_names() if modules is None or any(n == m or n.startswith(m + ".") for m in modules)]
    if modules is not None and not names:
        raise InputError(f"no public stdlib module named {', '.join(modules)}")
    if run_doctest and not isolation().safe:
        raise SandboxUnavailable(
            f"stdlib doctests run in the OS sandbox and there is none here ({isolation().detail}); "
            "install bubblewrap, or set store.doctests: false in the config"
        )
    walkers = []
    for i, name in enumerate(names):
        if progress:
            progress("stdlib: introspecting", i + 1, len(names))
        module = _import_quietly(name)
        if module is not None and module.__name__ == name:
            walker = _ModuleWalker(module, "stdlib")
            walker.walk()
            walkers.append(walker)
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        runs = {
            w.name: pool.submit(run_doctests, [w.name], timeout_s, memory_mb)
            for w in walkers
            if w.has_doctests and run_doctest
        }
        for done, walker in enumerate(walkers):
            outcomes = runs[walker.name].result() if walker.name in runs else {}
            if progress and runs:
                progress("stdlib: concepts (doctests in the sandbox)", done + 1, len(walkers))
            for record in walker.records:
                if record.validation == "pending":
                    found = outcomes.get(record.key.removeprefix("py:"), "none")
                    record.validation = "timeout" if outcomes.get(walker.name) == "timeout" else found
                yield record
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
