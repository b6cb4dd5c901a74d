import pytest

from meqg_mlx.concepts.sources.stdlib import module_names, run_doctests, stdlib_code
from meqg_mlx.errors import InputError


def test_module_names_cover_the_stdlib_without_tests_or_side_effects():
    names = module_names()
    assert {"json", "os", "collections.abc", "email.mime.text"} <= set(names)
    assert not any(n in ("antigravity", "this") or n.startswith("test.") for n in names)


def test_code_concepts_have_name_signature_docstring_and_relations():
    records = {r.key: r for r in stdlib_code(["json", "builtins"])}
    dumps = records["py:json.dumps"]
    assert dumps.kind == "code" and dumps.text.startswith("json.dumps(obj, *, skipkeys=False")
    assert "Serialize ``obj`` to a JSON formatted ``str``." in dumps.text
    assert ("py:json", "defined_in", 1.0) in dumps.relations
    assert ("py:json.dumps", "contains", 0.5) in records["py:json"].relations
    assert records["py:builtins.list.sort"].text.startswith("list.sort(self, /, *, key=None, reverse=False)")
    assert ("py:builtins.list", "defined_in", 1.0) in records["py:builtins.list.sort"].relations
    # bytecode references become `uses`
    assert ("py:json.encoder.JSONEncoder", "uses", 0.5) in records[
        "py:json.encoder.JSONEncoder.encode"
    ].relations or any(t == "uses" for r in records.values() for _, t, _ in r.relations)
    # long docstrings become prose chains describing their code concept
    prose = [r for r in records.values() if r.key.startswith("pydoc-doc:json.dumps#")]
    assert prose and all(("py:json.dumps", "describes", 0.5) in r.relations for r in prose)


def test_signatures_carry_no_memory_addresses():
    """Default values such as difflib's IS_CHARACTER_JUNK print with an address: the text (and the
    store built from it) would differ in every process."""
    junk = {r.key: r for r in stdlib_code(["difflib"])}["py:difflib.HtmlDiff"]
    assert "charjunk=<function IS_CHARACTER_JUNK>" in junk.text and " at 0x" not in junk.text


def test_doctests_run_in_the_sandbox_and_are_recorded():
    records = {r.key: r for r in stdlib_code(["statistics"])}
    assert records["py:statistics.mean"].validation == "passed"
    assert records["py:statistics"].validation in ("passed", "failed")
    examples = [r for r in records.values() if r.key.startswith("py-example:statistics.mean#")]
    assert examples and ("py:statistics.mean", "example_of", 1.0) in examples[0].relations


def test_modules_the_sandbox_did_not_finish_are_reported_as_timeouts():
    """A run stopped at a limit reports nothing for the modules it had not finished.

    The memory limit stops it deterministically: a 0.05 s time limit did not when the
    supervising process stalled on a busy machine while the sandbox finished.
    """
    assert run_doctests(["no_such_module_xyz"], 10, 512) == {"no_such_module_xyz": "done"}
    assert run_doctests(["statistics"], 10, 1) == {"statistics": "timeout"}  # 1 MiB: no room to import doctest


def test_every_module_of_a_long_run_is_reported():
    """Reports past the sandbox's default output cap (64,000 characters) must not read as timeouts."""
    outcomes = run_doctests(["statistics"] * 40 + ["fractions"], 60, 512)
    assert outcomes["fractions"] == outcomes["fractions.Fraction.limit_denominator"] == "passed"


def test_unknown_module_is_an_error():
    with pytest.raises(InputError, match="no public stdlib module named nosuchmod"):
        list(stdlib_code(["nosuchmod"]))
