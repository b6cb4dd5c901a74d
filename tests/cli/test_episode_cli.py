"""`meqg run` on a real briefly trained run: text, tool output and the budget line; JSON; one-line errors."""

import json


from ..conftest import cli, meqg


def test_run_prints_concepts_tools_and_budget(trained_run_path, tmp_path):
    run = trained_run_path
    prompt = "Insert an item into a sorted list.\n```python\nprint(6 * 7)\n```"
    result = meqg("run", prompt, "--run", str(run), "--tools", "python", "--budget-seconds", "5")
    assert result.returncode == 0, result.stderr
    assert "tool python: 42" in result.stdout and "stopped by" in result.stdout and "FLOPs" in result.stdout
    walked = meqg("run", "Insert an item into a sorted list.", "--run", str(run), "--relation", "defined_in")
    assert walked.returncode == 0 and "stopped by" in walked.stdout, walked.stderr
    response = json.loads(meqg("run", prompt, "--run", str(run), "--json").stdout)
    assert {"text", "concepts", "telemetry"} <= set(response)
    assert {"objective", "gate", "budget", "steps"} <= set(response["telemetry"])
    for args, message in (
        (["", "--run", str(run)], "prompt is empty"),
        (["x", "--run", str(run), "--budget-seconds", "0"], "budget seconds"),
        (["x", "--run", str(run), "--tools", "web"], "unknown tool 'web'"),
        (["x", "--run", str(run), "--relation", "meronym"], "unknown relation 'meronym'; this run knows next"),
        (["x", "--run", str(tmp_path / "nope")], "run.json missing"),
    ):
        bad = cli("run", *args)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr, bad.stderr
