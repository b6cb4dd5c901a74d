"""The shared bodies expand to valid code behind each GPU prelude, checked here with the
host C++ compiler and a few lines standing in for the dialect's built-ins (nvcc and the
Metal compiler are not on this machine; the gpu- and macos-marked tests run the kernels)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from meqg_metal import source

# the bodies that have GPU backends (meqg_mlx.kernels.KERNELS)
BODIES = ["ssd_scan.h", "activations.h", "conv.h", "rvq.h"]

CUDA_BUILTINS = """
#define __device__
#define __forceinline__ inline
#define __restrict__
#include <algorithm>
#include <cmath>
using std::fabs;
using std::floor;
using std::min;
inline float atomicAdd(float* p, float v) { float old = *p; *p += v; return old; }
inline float __int_as_float(int i) { float f; __builtin_memcpy(&f, &i, 4); return f; }
"""

METAL_BUILTINS = """
#define device
#include <algorithm>
#include <cmath>
using std::fabs;
using std::floor;
using std::min;
template <typename T> struct atomic { T value; };
enum memory_order { memory_order_relaxed };
inline float atomic_load_explicit(device atomic<float>* p, memory_order) { return p->value; }
inline void atomic_store_explicit(device atomic<float>* p, float v, memory_order) { p->value = v; }
inline float atomic_fetch_add_explicit(device atomic<float>* p, float v, memory_order) { p->value += v; return v; }
template <typename T> T as_type(int i) { T f; __builtin_memcpy(&f, &i, 4); return f; }
"""


def compiles(code: str, tmp_path) -> subprocess.CompletedProcess:
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.fail("no C++ compiler: `make kernels` needs one too")
    path = tmp_path / "dialect.cpp"
    path.write_text(code)
    return subprocess.run([compiler, "-std=c++20", "-fsyntax-only", str(path)], capture_output=True, text=True)


@pytest.mark.parametrize(
    "dialect, builtins",
    [
        ("cuda", CUDA_BUILTINS + source("prelude_cuda.h")),
        ("metal", METAL_BUILTINS + source("prelude_metal.h")),
        ("metal, atomic outputs", METAL_BUILTINS + "#define MEQG_ATOMIC_OUTPUTS\n" + source("prelude_metal.h")),
    ],
)
def test_bodies_expand_behind_the_gpu_preludes(tmp_path, dialect, builtins):
    done = compiles(builtins + "".join(source(body) for body in BODIES), tmp_path)
    assert done.returncode == 0, f"{dialect}: {done.stderr[:2000]}"


def test_a_broken_prelude_is_caught(tmp_path):
    """The check above can fail: a prelude missing a macro does not compile."""
    broken = source("prelude_cuda.h").replace("#define MEQG_ADD", "#define MEQG_NOT_ADD")
    assert compiles(CUDA_BUILTINS + broken + source("ssd_scan.h"), tmp_path).returncode != 0
