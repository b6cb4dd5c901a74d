"""`meqg serve` as a real uvicorn process on a free loopback port, called over HTTP."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from meqg_mlx.train.run import TrainingRun

from ..processes import child, wait_until
from ..train.test_trainer import small_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: object | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(small_store_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve") / "run"
    TrainingRun(run, small_store_path, small_config(steps=20, learning_rate=3e-3, warmup_steps=5)).train()
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def health():
        try:
            return call(base + "/healthz")[1]
        except (urllib.error.URLError, ConnectionError):
            return None

    with child(
        [sys.executable, "-m", "meqg_cli.main", "serve", "--run", str(run), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ) as process:
        try:
            started = wait_until(health, 120, "meqg serve answering /healthz", 0.3, process)
        except AssertionError as exc:
            pytest.fail(f"{exc}: {process.stderr.read() if process.poll() is not None else ''}")
        yield base, run, started
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def seed_request(prompt: str, **extra) -> dict:
    return {
        "model": "meqg-diamond-small",
        "prompt": prompt,
        "budget": {"seconds": 30, "max_flops": 2e12, "max_kv_bytes": 134217728},
        "tools": ["python"],
        "config": {"obj": {"lambda_mod": 0.4}},
        **extra,
    }


def test_healthz_says_what_is_loaded(server, small_store_path):
    _, run, health = server
    assert health["status"] == "ok" and health["store"] == str(small_store_path) and health["concepts"] > 100
    assert health["run_id"] == json.loads((run / "run.json").read_text())["run_id"]


def test_seed_000_request_gets_seed_000_response(server):
    base, _, _ = server
    status, response = call(base + "/v1/diamond/run", seed_request("Sort a list.\n```python\nprint(6 * 7)\n```"))
    assert status == 200, response
    assert response["model"] == "meqg-diamond-small" and response["text"] and response["concepts"]
    telemetry = response["telemetry"]
    assert set(telemetry["objective"]) >= {"Delta", "S_geo", "S_ent", "S_mod"}
    assert set(telemetry["gate"]) >= {
        "accepted",
        "armijo",
        "trust",
        "kl_smooth",
        "retries",
        "view_size",
        "collapse_pressure",
    }
    assert telemetry["tools"][0]["text"] == "42"
    assert telemetry["budget"]["flops"] <= 2e12


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"prompt": "x", "budget": {"seconds": -1}}, "budget seconds must be a positive"),
        ({"prompt": "x", "budget": {"max_flops": "lots"}}, "budget max_flops"),
        ({"prompt": "x", "budget": {"minutes": 1}}, "unknown budget key 'minutes'"),
        ({"prompt": "x" * 8001}, "the limit is 8000"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({"prompt": "x", "tools": ["shell"]}, "unknown tool 'shell'"),
        ({"prompt": "x", "config": {"obj": {"lambda_zzz": 1}}}, "lambda_zzz"),
        ({"prompt": "x", "temperature": 2}, "unknown request field 'temperature'"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_requests_are_400_with_a_reason(server, body, reason):
    status, response = call(server[0] + "/v1/diamond/run", body)
    assert status == 400 and reason in response["error"], response


def test_a_body_that_is_not_json_is_400(server):
    status, response = call(server[0] + "/v1/diamond/run", raw=b"{not json")
    assert status == 400 and "not JSON" in response["error"]


def test_concurrent_requests_each_get_their_own_answer(server):
    """Eight requests at once: each answer equals the one the same request gets alone."""
    base = server[0]
    prompts = [f"Step {i}: compute a product.\n```python\nprint({i} * 7)\n```" for i in range(8)]
    alone = [call(base + "/v1/diamond/run", seed_request(p))[1] for p in prompts[:2]]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: call(base + "/v1/diamond/run", seed_request(p)), prompts))
    assert all(status == 200 for status, _ in together)
    for i, (_, response) in enumerate(together):
        assert response["telemetry"]["tools"][0]["text"] == str(i * 7)
    for single, (_, response) in zip(alone, together):
        assert [c["concept_id"] for c in response["concepts"]] == [c["concept_id"] for c in single["concepts"]]
    # one model, one episode at a time: the last in line waited for at least one other episode
    shortest = min(r["telemetry"]["budget"]["seconds"] for _, r in together)
    assert max(r["queue_seconds"] for _, r in together) >= shortest
