// meqg's CPU kernels: MLX primitives whose eval_cpu runs the bodies shared with the Metal
// and CUDA kernels (metal/*.h) over threads. Gradients are composed in Python
// (meqg_mlx/kernels, mx.custom_function), which also picks the backend by device.

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "prelude_cpu.h"
#include "activations.h"
#include "conv.h"
#include "gate.h"
#include "mix.h"
#include "norm.h"
#include "rvq.h"
#include "softmax.h"
#include "ssd_scan.h"

// The BLAS MLX itself calls (Debian's OpenBLAS, which meqg loads into the global symbol scope,
// MLX's bundled reference BLAS otherwise, Accelerate on macOS): resolved when the module loads.
extern "C" void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);

namespace mx = mlx::core;
namespace nb = nanobind;
using namespace nb::literals;

namespace meqg {

// Runs fn(first, last) on [0, items) split among the machine's threads, or on one thread
// when `work` (about one unit per float touched) is too little to pay for starting them and
// for waiting on the slowest of them (on a busy machine, one that waits for a core).
constexpr long PARALLEL_WORK = 1 << 18;

template <typename Fn>
void in_parallel(long items, long work, Fn fn) {
  long threads = std::min<long>(items, std::max(1u, std::thread::hardware_concurrency()));
  if (work < PARALLEL_WORK || threads <= 1) {
    fn(0L, items);
    return;
  }
  std::vector<std::thread> pool;
  for (long k = 0; k < threads; ++k) {
    pool.emplace_back(fn, items * k / threads, items * (k + 1) / threads);
  }
  for (auto& thread : pool) {
    thread.join();
  }
}

// Rows come in `blocks` of `rows_per_block` that never add into the same output element
// (the SSD scan: one batch entry and head each); threads take whole blocks, and each
// thread has `scratch` floats of its own that the body may use for the row at hand.
template <typename Body>
void for_each_row(int blocks, int rows_per_block, long work_per_row, size_t scratch, Body body) {
  in_parallel(blocks, static_cast<long>(blocks) * rows_per_block * work_per_row, [&](long first, long last) {
    std::vector<float> own(scratch);
    for (long row = first * rows_per_block; row < last * rows_per_block; ++row) {
      body(static_cast<int>(row), own.data());
    }
  });
}

struct ScanShape {
  int batch, L, H, P, G, N, Q;
  int chunks() const { return (L + Q - 1) / Q; }
  int blocks() const { return batch * H; }
  int rows_per_block() const { return P; }
};

ScanShape scan_shape(const mx::array& x, const mx::array& B, int chunk) {
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3), B.shape(2), B.shape(3), chunk};
}

// Outputs the bodies add into (MEQG_ADD) start at zero; the others are written whole.
void allocate(std::vector<mx::array>& outputs, std::vector<bool> zeroed = {}) {
  for (size_t k = 0; k < outputs.size(); ++k) {
    outputs[k].set_data(mx::allocator::malloc(outputs[k].nbytes()));
    if (k < zeroed.size() && zeroed[k]) {
      std::memset(outputs[k].data<float>(), 0, outputs[k].nbytes());
    }
  }
}

// A primitive whose work runs on MLX's CPU stream: eval_cpu allocates the outputs (those
// `zeroed` marks start at 0), registers the arrays with the CPU encoder and dispatches the
// task `work` makes from the input shapes and the raw float pointers. `variant` tells
// primitives of one kind apart (an op, a chunk size) for MLX's graph simplification.
class CpuKernel : public mx::Primitive {
 public:
  using In = std::vector<const float*>;
  using Out = std::vector<float*>;

  CpuKernel(mx::Stream stream, const char* name, int variant, std::vector<bool> zeroed = {})
      : mx::Primitive(stream), name_(name), variant_(variant), zeroed_(std::move(zeroed)) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    allocate(outputs, zeroed_);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    In in;
    Out out;
    for (auto& a : inputs) {
      encoder.set_input_array(a);
      in.push_back(a.data<float>());
    }
    for (auto& a : outputs) {
      encoder.set_output_array(a);
      out.push_back(a.data<float>());
    }
    encoder.dispatch(work(inputs, in, out));
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(name_) + " runs on the CPU; on GPUs meqg_mlx.kernels uses Metal, CUDA or MLX");
  }

  const char* name() const override { return name_; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& same = static_cast<const CpuKernel&>(other);
    return std::string(name_) == same.name_ && variant_ == same.variant_;
  }

 protected:
  virtual std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const = 0;
  int variant() const { return variant_; }

 private:
  const char* name_;
  int variant_;
  std::vector<bool> zeroed_;
};

// A CpuKernel with one number of its own (a scale, an epsilon), which tells its primitives apart.
class CpuKernelWithNumber : public CpuKernel {
 public:
  CpuKernelWithNumber(mx::Stream stream, const char* name, float number)
      : CpuKernel(stream, name, 0), number_(number) {}

  bool is_equivalent(const mx::Primitive& other) const override {
    return CpuKernel::is_equivalent(other) && number_ == static_cast<const CpuKernelWithNumber&>(other).number_;
  }

 protected:
  float number() const { return number_; }

 private:
  float number_;
};

class SSDScanForward : public CpuKernel {
 public:
  SSDScanForward(mx::Stream stream, int chunk) : CpuKernel(stream, "MeqgSSDScanForward", chunk) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    ScanShape s = scan_shape(inputs[0], inputs[3], variant());
    return [s, in, out]() {
      for_each_row(s.blocks(), s.rows_per_block(), static_cast<long>(s.L) * s.N, 0, [&](int row, float*) {
        meqg_ssd_forward_row(
            row, in[0], in[1], in[2], in[3], in[4], in[5], in[6], out[0], out[1], out[2], s.L, s.H, s.P, s.G, s.N,
            s.Q);
      });
    };
  }
};

class SSDScanBackward : public CpuKernel {
 public:
  // outputs d_x, d_dt_x, d_decay, d_B, d_C, d_D, d_state_in: all but the first and last are sums over rows
  SSDScanBackward(mx::Stream stream, int chunk)
      : CpuKernel(stream, "MeqgSSDScanBackward", chunk, {false, true, true, true, true, true, false}) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    ScanShape s = scan_shape(inputs[0], inputs[3], variant());
    return [s, in, out]() {
      size_t past = static_cast<size_t>(s.Q + 1) * s.N;
      for_each_row(s.blocks(), s.rows_per_block(), 2L * s.L * s.N, past, [&](int row, float* scratch) {
        meqg_ssd_backward_row(
            row, in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], out[0], out[1], out[2], out[3], out[4],
            out[5], out[6], scratch, s.L, s.H, s.P, s.G, s.N, s.Q);
      });
    };
  }
};

// The mixer's causal depthwise convolution with bias and SiLU (conv.h). Inputs: the window
// x (b, L + K - 1, C), tap-major weights w (K, C), bias (C,), and for the gradient d_y.
struct ConvShape {
  int batch, L, C, K;
};

ConvShape conv_shape(const mx::array& window, const mx::array& w) {
  int K = w.shape(0);
  return {window.shape(0), window.shape(1) - K + 1, window.shape(2), K};
}

class ConvForward : public CpuKernel {
 public:
  explicit ConvForward(mx::Stream stream) : CpuKernel(stream, "MeqgConvForward", 0) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    ConvShape s = conv_shape(inputs[0], inputs[1]);
    return [s, in, out]() {
      long steps = static_cast<long>(s.batch) * s.L;
      in_parallel(steps, steps * s.C * s.K, [&](long first, long last) {
        for (long i = first; i < last; ++i) {
          meqg_conv_forward(i / s.L, i % s.L, 0, s.C, in[0], in[1], in[2], out[0], s.L, s.C, s.K);
        }
      });
    };
  }
};

// outputs d_x (b, L + K - 1, C), and d_w (K, C), d_bias (C,) summed over batch and steps
class ConvBackward : public CpuKernel {
 public:
  explicit ConvBackward(mx::Stream stream) : CpuKernel(stream, "MeqgConvBackward", 0, {false, true, true}) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    ConvShape s = conv_shape(inputs[0], inputs[1]);
    return [s, in, out]() {
      long steps = static_cast<long>(s.batch) * s.L, rows = static_cast<long>(s.batch) * (s.L + s.K - 1);
      long work = steps * s.C * s.K;
      std::vector<float> d_pre(static_cast<size_t>(steps) * s.C);
      float* g = d_pre.data();
      in_parallel(steps, work, [&](long first, long last) {
        for (long i = first; i < last; ++i) {
          meqg_conv_backward_pre(i / s.L, i % s.L, 0, s.C, in[0], in[1], in[2], in[3], g, s.L, s.C, s.K);
        }
      });
      in_parallel(rows, work, [&](long first, long last) {
        for (long i = first; i < last; ++i) {
          meqg_conv_backward_input(i / (s.L + s.K - 1), i % (s.L + s.K - 1), 0, s.C, in[1], g, out[0], s.L, s.C, s.K);
        }
      });
      in_parallel(s.C, work, [&](long first, long last) {  // threads own channels: no two add alike
        meqg_conv_backward_weights(0, s.batch, first, last, in[0], g, out[1], out[2], s.L, s.C, s.K);
      });
    };
  }
};

// Elementwise activations (activations.h) and their gradients: g * f'(x) in one pass.
enum class Pointwise { silu, silu_grad, softplus, softplus_grad, gelu, gelu_grad, swiglu, swiglu_grad };

class PointwiseKernel : public CpuKernel {
 public:
  PointwiseKernel(mx::Stream stream, Pointwise op) : CpuKernel(stream, "MeqgPointwise", static_cast<int>(op)) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    in.resize(3, nullptr);
    out.resize(2, nullptr);
    return [op = static_cast<Pointwise>(variant()), n = static_cast<long>(inputs[0].size()), in, out]() {
      in_parallel(n, n, [&](long first, long last) { run(op, first, last, in[0], in[1], in[2], out[0], out[1]); });
    };
  }

 private:
  // One loop per op, each a plain loop over inlined branch-free bodies: vectorised.
  static void run(Pointwise op, long first, long last, const float* a, const float* b, const float* c, float* y,
                  float* z) {
    switch (op) {
      case Pointwise::silu:
        for (long i = first; i < last; ++i) y[i] = meqg_silu(a[i]);
        break;
      case Pointwise::silu_grad:
        for (long i = first; i < last; ++i) y[i] = b[i] * meqg_silu_grad(a[i]);
        break;
      case Pointwise::softplus:
        for (long i = first; i < last; ++i) y[i] = meqg_softplus(a[i]);
        break;
      case Pointwise::softplus_grad:
        for (long i = first; i < last; ++i) y[i] = b[i] * meqg_sigmoid(a[i]);
        break;
      case Pointwise::gelu:
        for (long i = first; i < last; ++i) y[i] = meqg_gelu(a[i]);
        break;
      case Pointwise::gelu_grad:
        for (long i = first; i < last; ++i) y[i] = b[i] * meqg_gelu_grad(a[i]);
        break;
      case Pointwise::swiglu:
        for (long i = first; i < last; ++i) y[i] = meqg_silu(a[i]) * b[i];
        break;
      case Pointwise::swiglu_grad:
        for (long i = first; i < last; ++i) {
          y[i] = c[i] * b[i] * meqg_silu_grad(a[i]);
          z[i] = c[i] * meqg_silu(a[i]);
        }
        break;
    }
  }
};

// The gate's reductions (gate.h) over N parameter arrays: inputs are the N arrays before the
// step, the N proposed ones and the N gradients; the output (N, 4) is a sum of tiles.
class GateReductions : public CpuKernel {
 public:
  static constexpr long TILE = 1 << 14;

  explicit GateReductions(mx::Stream stream) : CpuKernel(stream, "MeqgGateReductions", 0, {true}) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    size_t arrays = inputs.size() / 3;
    std::vector<long> sizes;
    for (size_t k = 0; k < arrays; ++k) sizes.push_back(static_cast<long>(inputs[k].size()));
    return [in, sizes, arrays, sums = out[0]]() {
      for (size_t k = 0; k < arrays; ++k) {
        for (long first = 0; first < sizes[k]; first += TILE) {
          long last = std::min(sizes[k], first + TILE);
          meqg_gate_tile(in[k], in[arrays + k], in[2 * arrays + k], first, last, sums + 4 * k);
        }
      }
    };
  }
};

// Row-wise softmax (softmax.h) over the last axis: softmax, its gradient from (y, g), and
// log-sum-exp (one value per row).
enum class RowOp { softmax, softmax_grad, logsumexp };

class RowKernel : public CpuKernel {
 public:
  RowKernel(mx::Stream stream, RowOp op) : CpuKernel(stream, "MeqgRows", static_cast<int>(op)) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int n = inputs[0].shape(-1);
    long rows = static_cast<long>(inputs[0].size()) / std::max(n, 1);
    in.resize(2, nullptr);
    return [op = static_cast<RowOp>(variant()), n, rows, x = in[0], g = in[1], y = out[0]]() {
      in_parallel(rows, rows * n, [&](long first, long last) {
        for (long r = first; r < last; ++r) {
          if (op == RowOp::softmax) {
            meqg_softmax_row(x + r * n, y + r * n, n);
          } else if (op == RowOp::softmax_grad) {
            meqg_softmax_grad_row(x + r * n, g + r * n, y + r * n, n);
          } else {
            y[r] = meqg_logsumexp_row(x + r * n, n);
          }
        }
      });
    };
  }
};

// RVQ's nearest code per row (rvq.h): inputs scores (rows, C) and norms (C,), output codes (rows,).
class NearestCode : public CpuKernel {
 public:
  explicit NearestCode(mx::Stream stream) : CpuKernel(stream, "MeqgNearestCode", 0) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int codes = inputs[0].shape(-1);
    long rows = static_cast<long>(inputs[0].size()) / std::max(codes, 1);
    return [codes, rows, in, out]() {
      in_parallel(rows, rows * codes, [&](long first, long last) {
        for (long r = first; r < last; ++r) meqg_nearest_code_row(r, in[0], in[1], out[0], codes);
      });
    };
  }
};

// The MoE's experts on the CPU: rows sorted by expert, each expert's run of rows one BLAS
// product with its weights, with no host sync for the run lengths (the kernel reads the
// expert of every row). Weights w (E, R, C). Forward (transposed): a (M, C) -> a w[e]^T
// (M, R); its input gradient (not transposed): g (M, R) -> g w[e] (M, C). Rows whose expert
// is out of range stay zero. Unsorted rows are still right, in more and shorter runs.
constexpr int CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112;

template <typename Segment>
void for_each_expert_run(const float* experts, int rows, int count, Segment segment) {
  for (int first = 0, last = 0; first < rows; first = last) {
    int expert = static_cast<int>(experts[first]);
    for (last = first + 1; last < rows && static_cast<int>(experts[last]) == expert; ++last) {
    }
    if (expert >= 0 && expert < count) segment(expert, first, last - first);
  }
}

class GroupedMatmul : public CpuKernel {
 public:
  GroupedMatmul(mx::Stream stream, bool transposed)
      : CpuKernel(stream, "MeqgGroupedMatmul", transposed ? 1 : 0, {true}) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int rows = inputs[0].shape(0), count = inputs[1].shape(0), R = inputs[1].shape(1), C = inputs[1].shape(2);
    bool transposed = variant() == 1;
    return [=]() {
      for_each_expert_run(in[2], rows, count, [&](int e, int first, int m) {
        const float* w = in[1] + static_cast<long>(e) * R * C;
        if (transposed) {
          cblas_sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, m, R, C, 1.0f, in[0] + static_cast<long>(first) * C,
                      C, w, C, 0.0f, out[0] + static_cast<long>(first) * R, R);
        } else {
          cblas_sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, m, C, R, 1.0f,
                      in[0] + static_cast<long>(first) * R, R, w, C, 0.0f, out[0] + static_cast<long>(first) * C, C);
        }
      });
    };
  }
};

// The weights' gradient of GroupedMatmul (transposed): d_w[e] = sum over e's runs of
// g[run]^T a[run], (E, R, C), added into zeros (so an expert split over several runs sums
// them); an expert without rows gets zeros.
class GroupedWeightGrad : public CpuKernel {
 public:
  GroupedWeightGrad(mx::Stream stream, int count) : CpuKernel(stream, "MeqgGroupedWeightGrad", count, {true}) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int rows = inputs[0].shape(0), R = inputs[0].shape(1), C = inputs[1].shape(1), count = variant();
    return [=]() {
      for_each_expert_run(in[2], rows, count, [&](int e, int first, int m) {
        cblas_sgemm(CBLAS_ROW_MAJOR, CBLAS_TRANS, CBLAS_NO_TRANS, R, C, m, 1.0f, in[0] + static_cast<long>(first) * R,
                    R, in[1] + static_cast<long>(first) * C, C, 1.0f, out[0] + static_cast<long>(e) * R * C, C);
      });
    };
  }
};

std::vector<mx::array> contiguous_floats(const std::vector<mx::array>& arrays, mx::StreamOrDevice s) {
  std::vector<mx::array> out;
  for (auto& a : arrays) out.push_back(mx::contiguous(mx::astype(a, mx::float32, s), false, s));
  return out;
}

std::vector<mx::array> ssd_scan_forward(
    const mx::array& x, const mx::array& dt, const mx::array& decay, const mx::array& B, const mx::array& C,
    const mx::array& D, const mx::array& state, int chunk, mx::StreamOrDevice s) {
  auto inputs = contiguous_floats({x, dt, decay, B, C, D, state}, s);
  ScanShape d = scan_shape(x, B, chunk);
  return mx::array::make_arrays(
      {x.shape(), state.shape(), {d.batch, d.H, d.P, d.chunks(), d.N}}, {mx::float32, mx::float32, mx::float32},
      std::make_shared<SSDScanForward>(mx::to_stream(s), chunk), inputs);
}

std::vector<mx::array> ssd_scan_backward(
    const mx::array& x, const mx::array& dt, const mx::array& decay, const mx::array& B, const mx::array& C,
    const mx::array& D, const mx::array& checkpoints, const mx::array& d_y, const mx::array& d_state, int chunk,
    mx::StreamOrDevice s) {
  auto inputs = contiguous_floats({x, dt, decay, B, C, D, checkpoints, d_y, d_state}, s);
  ScanShape d = scan_shape(x, B, chunk);
  mx::Shape per_head = {d.batch, d.L, d.H, d.N};
  return mx::array::make_arrays(
      {x.shape(), dt.shape(), dt.shape(), per_head, per_head, {d.batch, d.H}, d_state.shape()},
      std::vector<mx::Dtype>(7, mx::float32), std::make_shared<SSDScanBackward>(mx::to_stream(s), chunk), inputs);
}

mx::array nearest_code(const mx::array& scores, const mx::array& norms, mx::StreamOrDevice s) {
  if (scores.ndim() != 2 || norms.ndim() != 1 || scores.shape(1) != norms.shape(0) || norms.shape(0) == 0) {
    throw std::invalid_argument("nearest_code: scores (rows, C) and norms (C,) with C >= 1 expected");
  }
  return mx::array(
      {scores.shape(0)}, mx::float32, std::make_shared<NearestCode>(mx::to_stream(s)),
      contiguous_floats({scores, norms}, s));
}

mx::array grouped_matmul(
    const mx::array& a, const mx::array& w, const mx::array& experts, bool transposed, mx::StreamOrDevice s) {
  if (a.ndim() != 2 || w.ndim() != 3 || experts.ndim() != 1 || experts.shape(0) != a.shape(0) ||
      a.shape(1) != w.shape(transposed ? 2 : 1)) {
    throw std::invalid_argument(
        "grouped_matmul: rows (M, C) with weights (E, R, C) transposed, or rows (M, R) with (E, R, C), and M experts");
  }
  return mx::array(
      {a.shape(0), w.shape(transposed ? 1 : 2)}, mx::float32, std::make_shared<GroupedMatmul>(mx::to_stream(s), transposed),
      contiguous_floats({a, w, experts}, s));
}

mx::array grouped_weight_grad(
    const mx::array& g, const mx::array& a, const mx::array& experts, int count, mx::StreamOrDevice s) {
  if (g.ndim() != 2 || a.ndim() != 2 || experts.ndim() != 1 || g.shape(0) != a.shape(0) ||
      experts.shape(0) != a.shape(0) || count < 1) {
    throw std::invalid_argument("grouped_weight_grad: g (M, R), rows (M, C), M experts and a count >= 1");
  }
  return mx::array(
      {count, g.shape(1), a.shape(1)}, mx::float32, std::make_shared<GroupedWeightGrad>(mx::to_stream(s), count),
      contiguous_floats({g, a, experts}, s));
}

void check_conv(const mx::array& window, const mx::array& w, const mx::array& bias) {
  if (window.ndim() != 3 || w.ndim() != 2 || bias.ndim() != 1 || w.shape(1) != window.shape(2) ||
      bias.shape(0) != window.shape(2) || w.shape(0) < 1 || window.shape(1) < w.shape(0)) {
    throw std::invalid_argument("causal conv: window (b, l + K - 1, C), weights (K, C) and bias (C,) expected");
  }
}

mx::array conv_forward(const mx::array& window, const mx::array& w, const mx::array& bias, mx::StreamOrDevice s) {
  check_conv(window, w, bias);
  ConvShape d = conv_shape(window, w);
  return mx::array(
      {d.batch, d.L, d.C}, mx::float32, std::make_shared<ConvForward>(mx::to_stream(s)),
      contiguous_floats({window, w, bias}, s));
}

std::vector<mx::array> conv_backward(
    const mx::array& window, const mx::array& w, const mx::array& bias, const mx::array& d_y, mx::StreamOrDevice s) {
  check_conv(window, w, bias);
  ConvShape d = conv_shape(window, w);
  if (d_y.shape() != mx::Shape{d.batch, d.L, d.C}) {
    throw std::invalid_argument("causal conv: the cotangent must have the output's shape");
  }
  return mx::array::make_arrays(
      {window.shape(), w.shape(), bias.shape()}, std::vector<mx::Dtype>(3, mx::float32),
      std::make_shared<ConvBackward>(mx::to_stream(s)), contiguous_floats({window, w, bias, d_y}, s));
}

// The next-concept head's context mixture (mix.h) and its two gradients, each its own
// primitive so that the window's (concepts are data in training) is never computed unasked.
// Inputs: the window x (b, T + L - 1, D) and weights a (b, T, L); g (b, T, D) for gradients.
enum class MixOp { forward, weights, window };

class ContextMix : public CpuKernel {
 public:
  ContextMix(mx::Stream stream, MixOp op) : CpuKernel(stream, "MeqgContextMix", static_cast<int>(op)) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int batch = inputs[0].shape(0), D = inputs[0].shape(2), T = inputs[1].shape(1), L = inputs[1].shape(2);
    auto op = static_cast<MixOp>(variant());
    return [=]() {
      long steps = static_cast<long>(batch) * T, rows = op == MixOp::window ? batch * (T + L - 1L) : steps;
      in_parallel(rows, rows * L * D, [&](long first, long last) {
        for (long i = first; i < last; ++i) {
          if (op == MixOp::forward) {
            meqg_mix_forward(i / T, i % T, in[0], in[1], out[0], T, D, L);
          } else if (op == MixOp::weights) {
            meqg_mix_backward_weights(i / T, i % T, in[0], in[2], out[0], T, D, L);
          } else {
            meqg_mix_backward_window(i / (T + L - 1), i % (T + L - 1), in[1], in[2], out[0], T, D, L);
          }
        }
      });
    };
  }
};

mx::array context_mix(MixOp op, const mx::array& x, const mx::array& a, std::optional<mx::array> g, mx::StreamOrDevice s) {
  if (x.ndim() != 3 || a.ndim() != 3 || a.shape(0) != x.shape(0) || a.shape(2) < 1 ||
      x.shape(1) != a.shape(1) + a.shape(2) - 1) {
    throw std::invalid_argument("context_mix: window (b, T + L - 1, D) and weights (b, T, L) expected");
  }
  mx::Shape step_shape{x.shape(0), a.shape(1), x.shape(2)};
  if ((op == MixOp::forward) == g.has_value() || (g && g->shape() != step_shape)) {
    throw std::invalid_argument("context_mix: the gradients take a cotangent g (b, T, D), the forward none");
  }
  auto shape = op == MixOp::forward ? step_shape : op == MixOp::weights ? a.shape() : x.shape();
  std::vector<mx::array> inputs{x, a};
  if (g) inputs.push_back(*g);
  return mx::array(shape, mx::float32, std::make_shared<ContextMix>(mx::to_stream(s), op), contiguous_floats(inputs, s));
}

std::vector<mx::array> pointwise(Pointwise op, const std::vector<mx::array>& arrays, mx::StreamOrDevice s) {
  for (auto& a : arrays) {
    if (a.shape() != arrays[0].shape()) {
      throw std::invalid_argument("meqg pointwise kernels take arrays of one shape");
    }
  }
  int outputs = op == Pointwise::swiglu_grad ? 2 : 1;
  return mx::array::make_arrays(
      std::vector<mx::Shape>(outputs, arrays[0].shape()), std::vector<mx::Dtype>(outputs, mx::float32),
      std::make_shared<PointwiseKernel>(mx::to_stream(s), op), contiguous_floats(arrays, s));
}

// BERT's post-norm residual (norm.h): LayerNorm(x + h + bias) * w + b over rows of n, the
// inputs x and h (rows, n), bias, w and b (n,).
class ResidualNorm : public CpuKernelWithNumber {
 public:
  ResidualNorm(mx::Stream stream, float eps) : CpuKernelWithNumber(stream, "MeqgResidualNorm", eps) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    int n = inputs[2].shape(0);
    long rows = static_cast<long>(inputs[0].size()) / n;
    return [=, eps = number()]() {
      in_parallel(rows, 3 * rows * n, [&](long first, long last) {
        for (long r = first; r < last; ++r) {
          meqg_residual_norm_row(in[0] + r * n, in[1] + r * n, in[2], in[3], in[4], out[0] + r * n, n, eps);
        }
      });
    };
  }
};

mx::array residual_norm(
    const mx::array& x, const mx::array& h, const mx::array& bias, const mx::array& w, const mx::array& b, float eps,
    mx::StreamOrDevice s) {
  if (x.ndim() == 0 || x.shape() != h.shape() || x.shape(-1) == 0 || bias.ndim() != 1 ||
      bias.shape(0) != x.shape(-1) || w.shape() != bias.shape() || b.shape() != bias.shape()) {
    throw std::invalid_argument("residual_norm: x and h (..., n) with n >= 1, bias, weight and offset (n,)");
  }
  return mx::array(
      x.shape(), mx::float32, std::make_shared<ResidualNorm>(mx::to_stream(s), eps),
      contiguous_floats({x, h, bias, w, b}, s));
}

// Bidirectional attention for the encoders: q (B, Lq, H, d), k and v (B, Lk, H, d) read in
// place (no transposes), the additive mask (Bm, Hm, Qm, Lk) with each of Bm, Hm, Qm 1 or the
// full size, the output (B, Lq, H, d). CPU only (GPUs run MLX's fused sdpa), so no shared
// body: the products keep 16-float runs in registers (GCC/Clang vector types), which the
// autovectoriser did not do for loops this short. A thread takes whole (b, h) blocks; its
// scratch holds the block's keys transposed (d, Lk) and a row's scores.
typedef float Floats16 __attribute__((vector_size(64), aligned(4)));
constexpr int RUN = 16;

// out[r] = factor * sum over m < count of weights[m] * rows[m * ld + r], for r < n: a weighted
// sum of rows, 16 outputs at a time held in a register.
void weighted_rows(const float* weights, int count, const float* rows, long ld, int n, float factor, float* out) {
  int r0 = 0;
  for (; r0 + RUN <= n; r0 += RUN) {
    Floats16 acc = {};
    for (int m = 0; m < count; ++m) acc += weights[m] * *reinterpret_cast<const Floats16*>(rows + m * ld + r0);
    *reinterpret_cast<Floats16*>(out + r0) = acc * factor;
  }
  for (int r = r0; r < n; ++r) {
    float sum = 0.0f;
    for (int m = 0; m < count; ++m) sum += weights[m] * rows[m * ld + r];
    out[r] = sum * factor;
  }
}

// One query row: its scores against the block's keys (transposed, (d, Lk)), the softmax with
// the additive bias, then the weighted values.
void attention_row(
    const float* query, const float* keys_t, const float* values, const float* bias, float* o, float* scores,
    int Lk, int d, long stride, float scale) {
  weighted_rows(query, d, keys_t, Lk, Lk, scale, scores);
  float top = -INFINITY;
  for (int j = 0; j < Lk; ++j) {
    scores[j] += bias[j];
    top = scores[j] > top ? scores[j] : top;
  }
  float total = 0.0f;
  for (int j = 0; j < Lk; ++j) {
    scores[j] = meqg_exp(scores[j] - top);
    total += scores[j];
  }
  weighted_rows(scores, Lk, values, stride, d, 1.0f / total, o);
}

class AttentionForward : public CpuKernelWithNumber {
 public:
  AttentionForward(mx::Stream stream, float scale) : CpuKernelWithNumber(stream, "MeqgAttention", scale) {}

 protected:
  std::function<void()> work(const std::vector<mx::array>& inputs, In in, Out out) const override {
    const mx::array &q = inputs[0], &k = inputs[1], &mask = inputs[3];
    int B = q.shape(0), Lq = q.shape(1), H = q.shape(2), d = q.shape(3), Lk = k.shape(1);
    int Bm = mask.shape(0), Hm = mask.shape(1), Qm = mask.shape(2);
    return [=, scale = number()]() {
      long stride = static_cast<long>(H) * d;
      size_t scratch = static_cast<size_t>(Lk) * (d + 1);
      for_each_row(B * H, Lq, 2L * Lk * d, scratch, [&](int row, float* own) {
        int i = row % Lq, h = (row / Lq) % H, b = row / (Lq * H);
        float* keys_t = own + Lk;
        if (i == 0) {  // the block's first row: its keys, transposed
          const float* keys = in[1] + static_cast<long>(b) * Lk * stride + static_cast<long>(h) * d;
          for (int j = 0; j < Lk; ++j)
            for (int c = 0; c < d; ++c) keys_t[static_cast<long>(c) * Lk + j] = keys[j * stride + c];
        }
        long head = static_cast<long>(h) * d;
        long mask_row = ((static_cast<long>(Bm == 1 ? 0 : b) * Hm + (Hm == 1 ? 0 : h)) * Qm + (Qm == 1 ? 0 : i)) * Lk;
        attention_row(
            in[0] + (static_cast<long>(b) * Lq + i) * stride + head, keys_t,
            in[2] + static_cast<long>(b) * Lk * stride + head, in[3] + mask_row,
            out[0] + (static_cast<long>(b) * Lq + i) * stride + head, own, Lk, d, stride, scale);
      });
    };
  }
};

mx::array attention(
    const mx::array& q, const mx::array& k, const mx::array& v, const mx::array& mask, float scale,
    mx::StreamOrDevice s) {
  auto fits = [](int size, int full) { return size == 1 || size == full; };
  if (q.ndim() != 4 || k.ndim() != 4 || k.shape() != v.shape() || k.shape(0) != q.shape(0) ||
      k.shape(2) != q.shape(2) || k.shape(3) != q.shape(3) || k.shape(1) == 0 || mask.ndim() != 4 ||
      mask.shape(3) != k.shape(1) || !fits(mask.shape(0), q.shape(0)) || !fits(mask.shape(1), q.shape(2)) ||
      !fits(mask.shape(2), q.shape(1))) {
    throw std::invalid_argument(
        "attention: q (B, Lq, H, d), k and v (B, Lk, H, d) with Lk >= 1, mask (B or 1, H or 1, Lq or 1, Lk)");
  }
  return mx::array(
      q.shape(), mx::float32, std::make_shared<AttentionForward>(mx::to_stream(s), scale),
      contiguous_floats({q, k, v, mask}, s));
}

mx::array gate_reductions(
    const std::vector<mx::array>& before, const std::vector<mx::array>& proposed, const std::vector<mx::array>& grads,
    mx::StreamOrDevice s) {
  if (before.empty() || proposed.size() != before.size() || grads.size() != before.size()) {
    throw std::invalid_argument("gate_reductions takes as many proposed arrays and gradients as arrays before");
  }
  std::vector<mx::array> inputs;
  for (auto* group : {&before, &proposed, &grads}) {
    for (size_t k = 0; k < group->size(); ++k) {
      if ((*group)[k].size() != before[k].size()) {
        throw std::invalid_argument("gate_reductions: array " + std::to_string(k) + " differs in size");
      }
      inputs.push_back((*group)[k]);
    }
  }
  int n = static_cast<int>(before.size());
  return mx::array({n, 4}, mx::float32, std::make_shared<GateReductions>(mx::to_stream(s)), contiguous_floats(inputs, s));
}

mx::array rows(RowOp op, const std::vector<mx::array>& arrays, mx::StreamOrDevice s) {
  const mx::array& x = arrays.at(0);
  if (x.ndim() == 0 || x.shape(-1) == 0 || (arrays.size() > 1 && arrays[1].shape() != x.shape())) {
    throw std::invalid_argument("meqg row kernels take non-empty rows (and a cotangent of the same shape)");
  }
  mx::Shape shape = x.shape();
  if (op == RowOp::logsumexp) {
    shape.pop_back();
  }
  return mx::array(shape, mx::float32, std::make_shared<RowKernel>(mx::to_stream(s), op), contiguous_floats(arrays, s));
}

}  // namespace meqg

NB_MODULE(_meqg_kernels, m) {
  m.doc() = "meqg's CPU kernels (metal/cpu/kernels.cpp); call them through meqg_mlx.kernels.";
  m.def(
      "ssd_scan_forward", &meqg::ssd_scan_forward, "x"_a, "dt"_a, "decay"_a, "B"_a, "C"_a, "D"_a, "state"_a,
      "chunk"_a, nb::kw_only(), "stream"_a = nb::none(),
      "SSD scan (metal/ssd_scan.h): (y (b, l, h, p), final state (b, h, p, n), checkpoints (b, h, p, chunks, n)).");
  m.def(
      "ssd_scan_backward", &meqg::ssd_scan_backward, "x"_a, "dt"_a, "decay"_a, "B"_a, "C"_a, "D"_a,
      "checkpoints"_a, "d_y"_a, "d_state"_a, "chunk"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Its gradient: (d_x, d_dt through x, d_decay, d_B and d_C per head (b, l, h, n), d_D, d_state_in).");
  m.def(
      "grouped_matmul", &meqg::grouped_matmul, "a"_a, "w"_a, "experts"_a, "transposed"_a, nb::kw_only(),
      "stream"_a = nb::none(),
      "Rows sorted by expert times their expert's weights w (E, R, C): a w[e]^T if transposed, else a w[e].");
  m.def(
      "grouped_weight_grad", &meqg::grouped_weight_grad, "g"_a, "a"_a, "experts"_a, "count"_a, nb::kw_only(),
      "stream"_a = nb::none(), "The weights' gradient of grouped_matmul (transposed): (count, R, C), g[run]^T a[run].");
  m.def(
      "nearest_code", &meqg::nearest_code, "scores"_a, "norms"_a, nb::kw_only(), "stream"_a = nb::none(),
      "RVQ's nearest code per row (metal/rvq.h): argmin over c of norms[c] - 2 scores[:, c], as float32.");
  m.def(
      "conv_forward", &meqg::conv_forward, "window"_a, "w"_a, "bias"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Causal depthwise conv, bias and SiLU (metal/conv.h): window (b, l + K - 1, C), w (K, C) -> (b, l, C).");
  m.def(
      "conv_backward", &meqg::conv_backward, "window"_a, "w"_a, "bias"_a, "d_y"_a, nb::kw_only(),
      "stream"_a = nb::none(), "Its gradient: (d_window, d_w, d_bias).");
  nb::enum_<meqg::MixOp>(m, "MixOp")
      .value("forward", meqg::MixOp::forward)
      .value("weights", meqg::MixOp::weights)
      .value("window", meqg::MixOp::window);
  m.def(
      "context_mix", &meqg::context_mix, "op"_a, "window"_a, "weights"_a, "g"_a = nb::none(), nb::kw_only(),
      "stream"_a = nb::none(),
      "The next-concept head's context mixture (metal/mix.h): y (b, T, D) = sum_j a[..., j] window shifted "
      "j back, from window (b, T + L - 1, D) and a (b, T, L); its gradient in a (weights) or the window from g.");
  nb::enum_<meqg::Pointwise>(m, "Pointwise")
      .value("silu", meqg::Pointwise::silu)
      .value("silu_grad", meqg::Pointwise::silu_grad)
      .value("softplus", meqg::Pointwise::softplus)
      .value("softplus_grad", meqg::Pointwise::softplus_grad)
      .value("gelu", meqg::Pointwise::gelu)
      .value("gelu_grad", meqg::Pointwise::gelu_grad)
      .value("swiglu", meqg::Pointwise::swiglu)
      .value("swiglu_grad", meqg::Pointwise::swiglu_grad);
  m.def(
      "pointwise", &meqg::pointwise, "op"_a, "arrays"_a, nb::kw_only(), "stream"_a = nb::none(),
      "An activation (metal/activations.h) of arrays of one shape: f(x), g * f'(x) from (x, g), silu(a) * b, "
      "and (g * b * silu'(a), g * silu(a)) from (a, b, g).");
  m.def(
      "residual_norm", &meqg::residual_norm, "x"_a, "h"_a, "bias"_a, "weight"_a, "offset"_a, "eps"_a, nb::kw_only(),
      "stream"_a = nb::none(), "BERT's post-norm residual (metal/norm.h): LayerNorm(x + h + bias) * weight + offset.");
  m.def(
      "attention", &meqg::attention, "q"_a, "k"_a, "v"_a, "mask"_a, "scale"_a, nb::kw_only(),
      "stream"_a = nb::none(),
      "Bidirectional attention in the projections' layout: q (B, Lq, H, d), k and v "
      "(B, Lk, H, d), additive mask broadcast as (B, H, Lq, Lk) -> (B, Lq, H, d).");
  m.def(
      "gate_reductions", &meqg::gate_reductions, "before"_a, "proposed"_a, "grads"_a, nb::kw_only(),
      "stream"_a = nb::none(),
      "The gate's reductions (metal/gate.h): (N, 4) of ||s||^2, ||before||^2, grad . s, non-finite count.");
  nb::enum_<meqg::RowOp>(m, "RowOp")
      .value("softmax", meqg::RowOp::softmax)
      .value("softmax_grad", meqg::RowOp::softmax_grad)
      .value("logsumexp", meqg::RowOp::logsumexp);
  m.def(
      "rows", &meqg::rows, "op"_a, "arrays"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Along the last axis (metal/softmax.h): softmax(x), its gradient from (y, g), logsumexp(x).");
}
