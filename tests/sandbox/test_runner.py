"""The python sandbox, tried the way an attacker would: each escape seen against the old
audit-hook guard is a test here, against the OS isolation in force (bubblewrap on Linux)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from meqg_mlx.sandbox import isolation, run_python
from meqg_mlx.sandbox.runner import OUTPUT_KILL_BYTES

linux = pytest.mark.linux  # bubblewrap
macos = pytest.mark.macos  # sandbox-exec


def sandboxed(code: str, **limits):
    result = run_python(textwrap.dedent(code), **limits)
    assert result.isolation.safe, result.isolation
    return result


@linux
def test_linux_runs_under_bubblewrap():
    """`make test` / `.ci/run` install bubblewrap; without it every test below would be moot."""
    found = isolation()
    assert found.kind == "bubblewrap", f"no OS isolation ({found.detail}): install bubblewrap"
    assert "network" in found.detail and "pid" in found.detail and "seccomp" in found.detail


def test_runs_code_and_captures_output():
    result = sandboxed("print(sum(range(10)))")
    assert result.ok and result.stdout.strip() == "45"


def test_a_program_cannot_switch_its_guard_off():
    """With audit hooks, `__main__._DENY = ()` or swapping the hook's code let everything through."""
    result = sandboxed(
        """
        import __main__, gc, os, subprocess
        __main__._DENY = ()
        os.path.realpath = lambda path: "/sandbox"
        for hook in gc.get_objects():
            if callable(hook) and getattr(hook, "__name__", "") == "_guard":
                hook.__code__ = (lambda event, args: None).__code__
        subprocess.run(["/bin/true"])
        """
    )
    assert not result.ok and "PermissionError" in result.stderr


@linux
@pytest.mark.parametrize(
    "start",
    [
        "os.fork()",
        "subprocess.run(['/bin/true'])",
        "os.posix_spawn('/bin/true', ['true'], {})",
        "print(libc.fork(), ctypes.get_errno()); assert libc.fork() > 0",
    ],
    ids=["fork", "subprocess", "posix_spawn", "libc-fork"],
)
def test_no_process_can_be_started(start):
    result = sandboxed(f"import ctypes, os, subprocess\nlibc = ctypes.CDLL(None, use_errno=True)\n{start}")
    assert not result.ok
    assert "PermissionError" in result.stderr or result.stdout.startswith("-1 1"), result.stderr


def test_threads_still_work():
    result = sandboxed("import threading; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()")
    assert result.ok and result.stdout.strip() == "thread"


@linux
@pytest.mark.parametrize(
    "attempt",
    [
        "open(os.path.join(OUTSIDE, 'escaped'), 'w').write('x')",
        "os.chdir(OUTSIDE); open('escaped', 'w').write('x')",
        "fd = os.open(OUTSIDE, os.O_RDONLY); os.open('escaped', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "import sqlite3; sqlite3.connect(os.path.join(OUTSIDE, 'escaped')).execute('create table t(a)')",
        "os.mkfifo(os.path.join(OUTSIDE, 'escaped'))",
        "os.mknod(os.path.join(OUTSIDE, 'escaped'))",
        "fd = os.open(os.path.join(OUTSIDE, 'victim'), os.O_RDONLY); os.fchmod(fd, 0o777)",
        "os.setxattr(os.path.join(OUTSIDE, 'victim'), 'user.x', b'1')",
        "open('/escaped', 'w')",
        "open('/usr/escaped', 'w')",
        "open('/dev/shm/escaped', 'w')",
    ],
    ids=["open", "chdir", "dir_fd", "sqlite3", "mkfifo", "mknod", "fchmod", "setxattr", "root", "usr", "dev"],
)
def test_nothing_outside_the_workdir_can_be_written(tmp_path, attempt):
    victim = tmp_path / "victim"
    victim.write_text("mine")
    victim.chmod(0o644)
    before = sorted(os.listdir(tmp_path))
    result = sandboxed(f"import os\nOUTSIDE = {str(tmp_path)!r}\n{attempt}\nprint('done')")
    assert not result.ok and result.stdout == "", result.stdout
    assert sorted(os.listdir(tmp_path)) == before and victim.read_text() == "mine"
    assert victim.stat().st_mode & 0o777 == 0o644 and not os.listxattr(victim)


@linux
def test_no_host_file_outside_the_read_only_roots_can_be_read(tmp_path):
    """Only /usr and the interpreter's own prefix are visible: not /tmp, /etc, the home, nor this repository."""
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    paths = [str(secret), "/etc/passwd", "/etc/hostname", str(Path.home() / ".bashrc"), __file__]
    result = sandboxed(
        f"""
        for path in {paths!r}:
            try:
                print(path, "read", len(open(path).read()))
            except OSError as error:
                print(path, type(error).__name__)
        """
    )
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths) and not any(" read " in line for line in lines), result.stdout
    assert Path(__file__).is_file() and "hunter2" not in result.stdout


@linux
def test_the_parent_is_out_of_reach():
    """/proc/<ppid>/environ, /proc/<ppid>/mem and kill(ppid) reached `meqg serve` before."""
    os.environ["MEQG_TEST_SECRET"] = "hunter2"
    try:
        result = sandboxed(
            f"""
            import os, signal
            print(sorted(p for p in os.listdir("/proc") if p.isdigit()))
            for pid in (os.getppid(), 1):
                os.kill(pid, signal.SIGKILL)
            for path in ("/proc/{os.getpid()}/environ", "/proc/{os.getpid()}/mem"):
                try:
                    open(path, "rb")
                    print("opened", path)
                except OSError:
                    pass
            print(open("/proc/1/environ", "rb").read())
            os.kill({os.getpid()}, signal.SIGKILL)
            """
        )
    finally:
        del os.environ["MEQG_TEST_SECRET"]
    assert "ProcessLookupError" in result.stderr  # our pid does not exist in its PID namespace
    lines = result.stdout.splitlines()
    assert lines[0] == "['1', '2']" and "opened" not in result.stdout and "hunter2" not in result.stdout


@linux
def test_no_namespace_can_be_entered_or_made():
    result = sandboxed(
        """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.unshare(0x10000000), ctypes.get_errno())            # CLONE_NEWUSER
        print(libc.setns(open("/proc/1/ns/net").fileno(), 0), ctypes.get_errno())
        print(libc.mount(b"none", b"/sandbox", b"tmpfs", 0, None), ctypes.get_errno())
        """
    )
    assert result.ok and result.stdout.split() == ["-1", "1"] * 3


def test_the_network_is_unreachable():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        result = sandboxed(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('in')")
        assert not result.ok and result.stdout == ""
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_the_environment_is_not_the_parents():
    os.environ["MEQG_TEST_SECRET"] = "hunter2"
    try:
        result = sandboxed("import os; print(sorted(os.environ))")
    finally:
        del os.environ["MEQG_TEST_SECRET"]
    assert result.ok and "MEQG_TEST_SECRET" not in result.stdout


def test_the_workdir_starts_empty_and_is_gone_afterwards():
    first = sandboxed("import os; open('left.txt', 'w').write('hi'); print(os.getcwd(), sorted(os.listdir()))")
    second = sandboxed("import os; print(sorted(os.listdir()))")
    assert first.ok and first.stdout.split()[1:] == ["['left.txt',", "'main.py']"]
    assert second.ok and second.stdout.strip() == "['main.py']"
    assert not os.path.exists(os.path.join(first.stdout.split()[0], "left.txt"))


def test_disk_use_is_capped_while_it_is_written():
    result = sandboxed(
        """
        written = 0
        try:
            for i in range(1000):
                with open(f"f{i}", "wb") as f:
                    f.write(b"x" * 2**20)
                written += 1
        except OSError as exc:
            print(written, type(exc).__name__)
        """,
        disk_mb=16,
    )
    written = int(result.stdout.split()[0]) if result.stdout else 0
    assert written < 16 and (not result.ok or "OSError" in result.stdout), result


def test_output_is_capped_while_it_is_produced():
    """400 MiB of output once grew `meqg serve` by 1.2 GB: now the run is killed past OUTPUT_KILL_BYTES.

    Measured in a fresh process: pytest's own peak (models loaded) would hide any growth."""
    code = textwrap.dedent(
        """
        import json, resource, time
        from meqg_mlx.sandbox import run_python
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        flood = "import sys\\nwhile True:\\n    sys.stdout.write('x' * 65536)"
        result = run_python(flood, timeout_s=30, max_output=1000)
        print(json.dumps({
            "seconds": time.perf_counter() - started, "limited": result.output_limited, "ok": result.ok,
            "safe": result.isolation.safe, "stdout": result.stdout[-40:], "length": len(result.stdout),
            "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
        }))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["safe"] and result["limited"] and not result["ok"] and result["seconds"] < 20
    assert result["stdout"].endswith("[output truncated]") and result["length"] < 1100
    assert result["grown_kib"] < 4 * OUTPUT_KILL_BYTES / 1024, result


def test_short_output_is_truncated_not_killed():
    result = sandboxed("print('x' * 100000)", max_output=1000)
    assert result.ok and "truncated" in result.stdout and len(result.stdout) < 1100


def test_is_killed_at_its_time_limit():
    started = time.perf_counter()
    result = sandboxed("import time\nwhile True: time.sleep(0.01)", timeout_s=1.0)
    assert result.timed_out and not result.ok
    assert time.perf_counter() - started < 4


def test_cpu_limit():
    result = sandboxed("while True: pass", timeout_s=1.0)
    assert result.timed_out and not result.ok


def test_memory_limit():
    result = sandboxed("x = bytearray(2 * 1024**3)", memory_mb=256)
    assert not result.ok and "MemoryError" in result.stderr


def test_without_os_isolation_it_refuses_unless_told_it_is_unsafe(tmp_path):
    """A PATH without bwrap or sandbox-exec: refused with one line, or run and labelled unsafe."""
    code = textwrap.dedent(
        """
        import sys
        from meqg_mlx.sandbox import SandboxUnavailable, run_python
        try:
            run_python("print(1)")
        except SandboxUnavailable as exc:
            print("refused:", exc)
        result = run_python("print(6 * 7)", allow_unsafe=True)
        print(result.isolation.kind, result.stdout.strip())
        """
    )
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    refused, unsafe = done.stdout.splitlines()
    assert refused.startswith("refused: no OS sandbox") and "--unsafe-python" in refused
    assert unsafe == "none 42"


@macos
def test_macos_runs_under_sandbox_exec(tmp_path):
    assert isolation().kind == "sandbox-exec"
    result = sandboxed(f"open({str(tmp_path / 'escaped')!r}, 'w')")
    assert not result.ok and not (tmp_path / "escaped").exists()
    result = sandboxed("import os; os.fork()")
    assert not result.ok
