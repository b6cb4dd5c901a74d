"""`meqg serve` as real uvicorn processes on free loopback ports, called over HTTP, as
clients and as attackers: one server as most users start it (`--allow-python`), one
guarded (`--token`, a queue of one, short request deadlines, the python tool off)."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest


from ..processes import child, wait_until

TOKEN = "t0ken-for-the-guarded-test-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: object | None = None, raw: bytes | None = None, token: str | None = None, method=None):
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_server(run, log_path, *flags, token=None):
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def health():
        try:
            status, body = call(base + "/healthz", token=token)
            return body if status == 200 else None
        except (urllib.error.URLError, ConnectionError):
            return None

    log = open(log_path, "w")
    command = [sys.executable, "-m", "meqg_cli.main", "serve", "--run", str(run), "--port", str(port), *flags]
    return base, health, log, child(command, stdout=log, stderr=log, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def serving(run, log_path, *flags, token=None):
    base, health, log, started = start_server(run, log_path, *flags, token=token)
    with log, started as process:
        try:
            wait_until(health, 120, "meqg serve answering /healthz", 0.3, process)
        except AssertionError as exc:
            pytest.fail(f"{exc}: {log_path.read_text()}")
        yield base, process
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(trained_run_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    for base, _ in serving(trained_run_path, log, "--allow-python"):
        yield base, trained_run_path, log


@pytest.fixture(scope="module")
def guarded(trained_run_path, tmp_path_factory):
    log = tmp_path_factory.mktemp("guarded-log") / "server.log"
    flags = ["--token", TOKEN, "--max-queue", "1", "--request-timeout", "2", "--max-seconds", "30"]
    for base, _ in serving(trained_run_path, log, *flags, token=TOKEN):
        yield base, log


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
    base, run, _ = server
    status, health = call(base + "/healthz")
    assert status == 200 and health["store"] == str(small_store_path) and health["concepts"] > 100
    assert health["run_id"] == json.loads((run / "run.json").read_text())["run_id"] and health["python"]


def test_seed_000_request_gets_seed_000_response(server):
    base, run, log = server
    status, response = call(base + "/v1/diamond/run", seed_request("Sort a list.\n```python\nprint(6 * 7)\n```"))
    assert status == 200, response
    # the request names a model; the one run this server has answers, under its own id
    assert response["model"] == json.loads((run / "run.json").read_text())["run_id"]
    assert response["text"] and response["concepts"]
    for concept in response["concepts"]:  # no inverter here: each text shown is a store text, its cosine its own
        assert concept["cosine"] == concept["score"]
    # and the server logs the request in one line: status, seconds, the wait for the model
    logged = re.compile(r"meqg serve: POST /v1/diamond/run 200 [0-9.]+ s \(queued [0-9.]+ s\)")
    wait_until(lambda: logged.search(log.read_text()), 10, "the request's log line")
    telemetry = response["telemetry"]
    assert set(telemetry["objective"]) >= {"Delta", "S_geo", "S_ent", "S_mod"}
    assert set(telemetry["gate"]) >= {"accepted", "armijo", "trust", "kl_smooth", "retries", "view_size"}
    assert telemetry["tools"][0]["text"] == "42"


FREE_RUN_PROMPTS = [  # an episode also ends when it decodes the same concept twice: one of these runs on
    "Sort a list. Then reverse it.",
    "Read a file, count its words, then write the counts to a new file.",
    "Open a socket, send a request, parse the reply as JSON and close the socket.",
    "Compress a directory into an archive, then hash the archive and log the digest.",
]


def test_a_flop_budget_stops_the_episode_at_its_exact_count(server):
    """A budget of one step's FLOPs (measured on an unbudgeted run of the same prompt) stops after one:
    the second step is refused before it computes."""
    base = server[0]
    free_runs = (
        (prompt, call(base + "/v1/diamond/run", {"prompt": prompt, "config": {"episode": {"converge_cosine": 1.0}}})[1])
        for prompt in FREE_RUN_PROMPTS
    )
    prompt, free = next(((p, f) for p, f in free_runs if len(f["telemetry"]["steps"]) >= 2), (None, None))
    assert free is not None, "no prompt ran two steps without a budget"
    steps = free["telemetry"]["steps"]
    assert sum(step["flops"] for step in steps) == pytest.approx(free["telemetry"]["budget"]["flops"])
    limit = steps[0]["flops"] + 1.0  # room for exactly one step
    body = {"prompt": prompt, "budget": {"max_flops": limit}, "config": {"episode": {"converge_cosine": 1.0}}}
    status, capped = call(base + "/v1/diamond/run", body)
    assert status == 200 and capped["telemetry"]["stopped_by"] == "max_flops"
    assert len(capped["telemetry"]["steps"]) == 1
    assert capped["telemetry"]["budget"]["flops"] == pytest.approx(limit - 1.0)


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"prompt": "x", "budget": {"seconds": -1}}, "budget seconds must be a positive"),
        ({"prompt": "x", "budget": {"max_flops": "lots"}}, "budget max_flops"),
        ({"prompt": "x", "budget": {"minutes": 1}}, "unknown budget key 'minutes'"),
        ({"prompt": "x", "budget": {"seconds": 600}}, "budget seconds 600 is above this server's 60"),
        ({"prompt": "x" * 8001}, "the limit is 8000"),
        ({"prompt": ""}, "the prompt is empty"),
        ({"prompt": "x", "tools": ["shell"]}, "unknown tool 'shell'"),
        ({"prompt": "x", "config": {"obj": {"lambda_zzz": 1}}}, "lambda_zzz"),
        ({"prompt": "x", "temperature": 2}, "unknown request field 'temperature'"),
        ({"prompt": "x", "relation": "meronym"}, "unknown relation 'meronym'; this run knows next"),
        ({"prompt": "x", "relation": 3}, "relation must be a relation's name"),
        ([1, 2], "must be a JSON object"),
        ({"prompt": "x" * 9000, "config": {"episode": {"max_prompt_chars": 60000}}}, "may only lower it"),
        ({"prompt": "x", "config": {"episode": {"ledger_samples": 20000}}}, "episode.ledger_samples' must be in"),
        ({"prompt": "x", "config": {"episode": {"ledger_samples": 64}}}, "may only lower it"),
        ({"prompt": "x", "config": {"episode": {"ledger_samples": 0}}}, "episode.ledger_samples' must be in"),
        ({"prompt": "x", "config": {"episode": {"retrieve_k": -1}}}, "episode.retrieve_k' must be in"),
        ({"prompt": "x", "config": {"episode": {"max_steps": -3}}}, "episode.max_steps' must be in"),
        ({"prompt": "x", "config": {"episode": {"trust_radius": -1.0}}}, "episode.trust_radius' must be in"),
        ({"prompt": "x", "config": {"obj": {"lambda_sparse": -5.0}}}, "obj.lambda_sparse' must be in"),
    ],
)
def test_bad_requests_are_400_with_a_reason(server, body, reason):
    status, response = call(server[0] + "/v1/diamond/run", body)
    assert status == 400 and reason in response["error"], response


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "not JSON"),
        (b'{"prompt": "x", "config": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nests 5001 levels deep"),
        (b'{"prompt": "x", "budget": {"seconds": 1' + b"0" * 5000 + b"}}", "has 5001 digits"),
        (b'{"prompt": "\\ud800"}', "lone surrogate"),
        (b'{"prompt": "x", "budget": {"seconds": NaN}}', "holds NaN"),
        (b'{"prompt": "\xff"}', "not UTF-8"),
    ],
    ids=["garbage", "deep", "digits", "surrogate", "nan", "bytes"],
)
def test_hostile_json_is_a_one_line_400(server, raw, reason):
    status, response = call(server[0] + "/v1/diamond/run", raw=raw)
    assert status == 400 and reason in response["error"] and "\n" not in response["error"], response


def test_a_body_over_the_limit_is_refused_while_it_arrives(server):
    host, port = server[0].removeprefix("http://").split(":")
    for chunked in (False, True):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        body = b'{"prompt": "' + b"x" * (2 << 20) + b'"}'
        if chunked:  # no Content-Length: the server must count while reading
            connection.request(
                "POST",
                "/v1/diamond/run",
                body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
                encode_chunked=True,
            )
        else:
            connection.request("POST", "/v1/diamond/run", body=body)
        response = connection.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
        connection.close()


def test_errors_for_unknown_paths_and_methods_are_json(server):
    assert call(server[0] + "/v2/nothing")[0] == 404
    status, response = call(server[0] + "/v1/diamond/run", method="GET")
    assert status == 405 and response["error"]


def test_concurrent_requests_each_get_their_own_answer_and_settings(server):
    """Eight requests at once, each with its own overrides: each answer is the one it gets alone,
    its overrides took effect, and none leaks into the request after it."""
    base = server[0]

    def request(i):
        body = seed_request(f"Step {i}: compute a product.\n```python\nprint({i} * 7)\n```")
        body["config"] = {"obj": {"lambda_mod": 0.1 * (i + 1)}, "episode": {"max_steps": 1 + i % 4}}
        return body

    before = call(base + "/v1/diamond/run", {"prompt": "Sort a list."})[1]
    alone = [call(base + "/v1/diamond/run", request(i))[1] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda i: call(base + "/v1/diamond/run", request(i)), range(8)))
    after = call(base + "/v1/diamond/run", {"prompt": "Sort a list."})[1]
    assert all(status == 200 for status, _ in together)
    for i, (single, (_, response)) in enumerate(zip(alone, together)):
        telemetry = response["telemetry"]
        assert telemetry["tools"][0]["text"] == str(i * 7)
        assert [c["concept_id"] for c in response["concepts"]] == [c["concept_id"] for c in single["concepts"]]
        assert 1 <= len(telemetry["steps"]) <= 1 + i % 4
        for step in telemetry["steps"]:
            terms = step["objective"]
            assert terms["Delta"] - terms["S_geo"] - terms["S_ent"] == pytest.approx(0.1 * (i + 1) * terms["S_mod"])
    # the check above holds for any lambda where S_mod is 0: most episodes must have measured some
    modal = [any(step["objective"]["S_mod"] > 0 for step in r["telemetry"]["steps"]) for _, r in together]
    assert sum(modal) >= 6, modal
    assert [c["concept_id"] for c in after["concepts"]] == [c["concept_id"] for c in before["concepts"]]
    assert after["telemetry"]["budget"]["limits"] == before["telemetry"]["budget"]["limits"]
    # one model, one episode at a time: the last in line waited for at least one other episode
    shortest = min(r["telemetry"]["budget"]["seconds"] for _, r in together)
    assert max(r["queue_seconds"] for _, r in together) >= shortest


def test_a_disconnecting_client_leaves_no_traceback(server):
    host, port = server[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b'POST /v1/diamond/run HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"prompt"')
    status, _ = call(server[0] + "/healthz")
    assert status == 200
    assert "Traceback" not in server[2].read_text()


def queued(base: str) -> int:
    return call(base + "/healthz")[1]["queued"]


def test_healthz_answers_during_an_episode_and_clients_that_leave_give_their_slots_back(server):
    """Five clients that send an episode and leave while it waits behind a running one held their
    queue slots until their turn (measured: of 40 concurrent requests, 37 got 503 meanwhile)."""
    base, _, log = server
    host, port = base.removeprefix("http://").split(":")
    sleeper = {
        "prompt": "Wait a while.\n```python\nimport time\ntime.sleep(4.5)\nprint('woke')\n```",  # the tool's limit: 5 s
        "tools": ["python"],
        "budget": {"seconds": 30},
    }
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(call, base + "/v1/diamond/run", sleeper)
        wait_until(lambda: queued(base) == 1, 30, "the sleeping episode queued")
        started = time.monotonic()
        assert call(base + "/healthz")[0] == 200 and time.monotonic() - started < 2 and not running.done()
        body = json.dumps({"prompt": "Sort a list."}).encode()
        request = b"POST /v1/diamond/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        leavers = [socket.create_connection((host, int(port))) for _ in range(5)]
        try:
            for sock in leavers:
                sock.sendall(request + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            wait_until(lambda: queued(base) == 6, 30, "five more episodes waiting behind the first")
        finally:
            for sock in leavers:
                sock.close()
        wait_until(lambda: queued(base) == 1, 5, "the five slots given back")
        status, answer = running.result(timeout=60)
    assert status == 200 and answer["telemetry"]["tools"][0]["text"] == "woke"
    # they never ran: cancelled while they waited (before, each ran in turn and answered 200 to nobody)
    wait_until(lambda: log.read_text().count(" 499 ") == 5, 10, "five cancelled episodes in the log")
    assert "Traceback" not in log.read_text()


def test_the_guarded_server_needs_its_token(guarded):
    base, _ = guarded
    assert call(base + "/healthz")[0] == 401
    assert call(base + "/healthz", token="wrong-token-of-enough-length")[0] == 401
    status, response = call(base + "/v1/diamond/run", {"prompt": "Sort a list."})
    assert status == 401 and "Bearer" in response["error"]
    assert call(base + "/healthz", token=TOKEN)[0] == 200


def test_the_python_tool_is_off_unless_allowed(guarded):
    status, response = call(guarded[0] + "/v1/diamond/run", seed_request("x\n```python\nprint(1)\n```"), token=TOKEN)
    assert status == 403 and "--allow-python" in response["error"]


def test_slow_senders_are_cut_off(guarded):
    host, port = guarded[0].removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:  # the body trickles
        sock.sendall(f"POST /v1/diamond/run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode())
        sock.sendall(b"Content-Length: 100\r\n\r\n{")
        reply = sock.recv(4096)
    assert b" 408 " in reply.split(b"\r\n")[0] and time.monotonic() - started < 20
    with socket.create_connection((host, int(port)), timeout=30) as sock:  # the headers never end
        sock.sendall(b"POST /v1/diamond/run HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(4096) == b""  # closed by the server
    assert time.monotonic() - started < 40


def test_a_full_queue_answers_503(guarded):
    base, _ = guarded
    body = {"prompt": "Sort a list. Then reverse it.", "config": {"episode": {"converge_cosine": 1.0}}}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: call(base + "/v1/diamond/run", body, token=TOKEN), range(6)))
    statuses = sorted(status for status, _ in answers)
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}, statuses
    assert all("queued" in response["error"] for status, response in answers if status == 503)


def test_a_port_in_use_is_one_line_before_the_model_loads(trained_run_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "meqg_cli.main", "serve", "--run", str(trained_run_path), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "loading" not in done.stdout and "http://" not in done.stdout


def test_bad_server_flags_are_one_line_errors(trained_run_path):
    for flags, reason in (
        (["--host", "0.0.0.0"], "needs --token"),
        (["--port", "70000"], "error: Invalid value for '--port'"),
        (["--token", "short"], "at least 16 characters"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "meqg_cli.main", "serve", "--run", str(trained_run_path), *flags],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and reason in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
