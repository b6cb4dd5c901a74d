import os
import time

from meqg_mlx.sandbox import run_python


def test_runs_code_and_captures_output():
    result = run_python("print(sum(range(10)))")
    assert result.ok and result.stdout.strip() == "45"


def test_cannot_write_outside_its_temp_dir(tmp_path):
    target = tmp_path / "escaped.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')")
    assert not result.ok and "outside the working directory" in result.stderr
    assert not target.exists()


def test_can_write_inside_its_temp_dir_which_is_removed_afterwards():
    result = run_python("import os; open('a.txt','w').write('hi'); print(os.getcwd())")
    assert result.ok
    assert not os.path.exists(result.stdout.strip())


def test_cannot_open_a_socket():
    result = run_python("import socket; s = socket.socket(); s.connect(('127.0.0.1', 9))")
    assert not result.ok and "socket.connect is not allowed" in result.stderr


def test_cannot_start_processes():
    result = run_python("import subprocess; subprocess.run(['true'])")
    assert not result.ok and "subprocess.Popen is not allowed" in result.stderr


def test_is_killed_at_its_time_limit():
    start = time.perf_counter()
    result = run_python("while True: pass", timeout_s=1.0)
    assert result.timed_out and not result.ok
    assert time.perf_counter() - start < 5


def test_memory_limit():
    result = run_python("x = bytearray(2 * 1024**3)", memory_mb=256)
    assert not result.ok and "MemoryError" in result.stderr


def test_output_is_truncated():
    result = run_python("print('x' * 100000)", max_output=1000)
    assert "truncated" in result.stdout and len(result.stdout) < 1100
