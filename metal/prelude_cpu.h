// The CPU dialect of the shared kernel bodies (see ssd_scan.h): plain C++, one thread per
// block of rows that never add into the same element, so MEQG_ADD needs no atomics.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>

using std::fabs;
using std::floor;
using std::log;
using std::min;

// Always inlined: a loop that calls a body out of line (GCC keeps meqg_exp out of line in a
// file with many callers) is not vectorised.
#define MEQG_FN static inline __attribute__((always_inline))
#define MEQG_IN const float* __restrict__
#define MEQG_OUT float* __restrict__
#define MEQG_LOAD(p) (*(p))
#define MEQG_STORE(p, v) (*(p) = (v))
#define MEQG_ADD(p, v) (*(p) += (v))
#define MEQG_FLOAT_FROM_BITS(i) std::bit_cast<float>(static_cast<int>(i))
