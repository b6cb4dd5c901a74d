// meqg's CPU kernels: MLX primitives whose eval_cpu runs the bodies shared with the Metal
// and CUDA kernels (metal/*.h) over threads. Gradients are composed in Python
// (meqg_mlx/kernels, mx.custom_function), which also picks the backend by device.

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

#include "prelude_cpu.h"
#include "ssd_scan.h"

namespace mx = mlx::core;
namespace nb = nanobind;
using namespace nb::literals;

namespace meqg {

// Rows come in `blocks` of `rows_per_block` that never add into the same output element
// (the SSD scan: one batch entry and head each); threads take whole blocks, and each
// thread has `scratch` floats of its own that the body may use for the row at hand.
template <typename Body>
void for_each_row(int blocks, int rows_per_block, long work_per_row, size_t scratch, Body body) {
  int threads = std::min<int>(blocks, std::max(1u, std::thread::hardware_concurrency()));
  if (static_cast<long>(blocks) * rows_per_block * work_per_row < (1 << 16)) {
    threads = 1;  // a decoding step: starting threads costs more than the work
  }
  auto run = [&](int first, int last) {
    std::vector<float> own(scratch);
    for (int row = first * rows_per_block; row < last * rows_per_block; ++row) {
      body(row, own.data());
    }
  };
  if (threads <= 1) {
    run(0, blocks);
    return;
  }
  std::vector<std::thread> pool;
  for (int k = 0; k < threads; ++k) {
    pool.emplace_back(run, blocks * k / threads, blocks * (k + 1) / threads);
  }
  for (auto& thread : pool) {
    thread.join();
  }
}

struct ScanShape {
  int batch, L, H, P, G, N, Q;
  int chunks() const { return (L + Q - 1) / Q; }
  int rows() const { return batch * H * P; }
  int blocks() const { return batch * H; }
  int rows_per_block() const { return P; }
};

ScanShape scan_shape(const mx::array& u, const mx::array& B, int chunk) {
  return {u.shape(0), u.shape(1), u.shape(2), u.shape(3), B.shape(2), B.shape(3), chunk};
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

class SSDScanForward : public mx::Primitive {
 public:
  SSDScanForward(mx::Stream stream, int chunk) : mx::Primitive(stream), chunk_(chunk) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    allocate(outputs);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    for (auto& out : outputs) encoder.set_output_array(out);
    ScanShape s = scan_shape(inputs[0], inputs[2], chunk_);
    std::vector<const float*> in;
    for (auto& a : inputs) in.push_back(a.data<float>());
    std::vector<float*> out;
    for (auto& a : outputs) out.push_back(a.data<float>());
    encoder.dispatch([s, in, out]() {
      for_each_row(s.blocks(), s.rows_per_block(), static_cast<long>(s.L) * s.N, 0, [&](int row, float*) {
        meqg_ssd_forward_row(
            row, in[0], in[1], in[2], in[3], in[4], out[0], out[1], out[2], s.L, s.H, s.P, s.G, s.N, s.Q);
      });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("meqg's C++ kernels run on the CPU; on a GPU meqg_mlx.kernels uses Metal or CUDA");
  }

  const char* name() const override { return "MeqgSSDScanForward"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return chunk_ == static_cast<const SSDScanForward&>(other).chunk_;
  }

 private:
  int chunk_;
};

class SSDScanBackward : public mx::Primitive {
 public:
  SSDScanBackward(mx::Stream stream, int chunk) : mx::Primitive(stream), chunk_(chunk) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    allocate(outputs, {false, true, true, true, false});  // d_u, d_decay, d_B, d_C, d_state_in
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    for (auto& out : outputs) encoder.set_output_array(out);
    ScanShape s = scan_shape(inputs[0], inputs[2], chunk_);
    std::vector<const float*> in;
    for (auto& a : inputs) in.push_back(a.data<float>());
    std::vector<float*> out;
    for (auto& a : outputs) out.push_back(a.data<float>());
    encoder.dispatch([s, in, out]() {
      size_t past = static_cast<size_t>(s.Q) * s.N;
      for_each_row(s.blocks(), s.rows_per_block(), 2L * s.L * s.N, past, [&](int row, float* scratch) {
        meqg_ssd_backward_row(
            row, in[0], in[1], in[2], in[3], in[4], in[5], in[6], out[0], out[1], out[2], out[3], out[4], scratch,
            s.L, s.H, s.P, s.G, s.N, s.Q);
      });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("meqg's C++ kernels run on the CPU; on a GPU meqg_mlx.kernels uses Metal or CUDA");
  }

  const char* name() const override { return "MeqgSSDScanBackward"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return chunk_ == static_cast<const SSDScanBackward&>(other).chunk_;
  }

 private:
  int chunk_;
};

std::vector<mx::array> contiguous_floats(const std::vector<mx::array>& arrays, mx::StreamOrDevice s) {
  std::vector<mx::array> out;
  for (auto& a : arrays) out.push_back(mx::contiguous(mx::astype(a, mx::float32, s), false, s));
  return out;
}

std::vector<mx::array> ssd_scan_forward(
    const mx::array& u, const mx::array& decay, const mx::array& B, const mx::array& C, const mx::array& state,
    int chunk, mx::StreamOrDevice s) {
  auto inputs = contiguous_floats({u, decay, B, C, state}, s);
  ScanShape d = scan_shape(u, B, chunk);
  return mx::array::make_arrays(
      {u.shape(), state.shape(), {d.batch, d.H, d.P, d.chunks(), d.N}}, {mx::float32, mx::float32, mx::float32},
      std::make_shared<SSDScanForward>(mx::to_stream(s), chunk), inputs);
}

std::vector<mx::array> ssd_scan_backward(
    const mx::array& u, const mx::array& decay, const mx::array& B, const mx::array& C, const mx::array& checkpoints,
    const mx::array& d_y, const mx::array& d_state, int chunk, mx::StreamOrDevice s) {
  auto inputs = contiguous_floats({u, decay, B, C, checkpoints, d_y, d_state}, s);
  ScanShape d = scan_shape(u, B, chunk);
  mx::Shape per_head = {d.batch, d.L, d.H, d.N};
  return mx::array::make_arrays(
      {u.shape(), decay.shape(), per_head, per_head, d_state.shape()}, std::vector<mx::Dtype>(5, mx::float32), std::make_shared<SSDScanBackward>(mx::to_stream(s), chunk), inputs);
}

}  // namespace meqg

NB_MODULE(_meqg_kernels, m) {
  m.doc() = "meqg's CPU kernels (metal/cpu/kernels.cpp); call them through meqg_mlx.kernels.";
  m.def(
      "ssd_scan_forward", &meqg::ssd_scan_forward, "u"_a, "decay"_a, "B"_a, "C"_a, "state"_a, "chunk"_a,
      nb::kw_only(), "stream"_a = nb::none(),
      "SSD scan (metal/ssd_scan.h): (y (b, l, h, p), final state (b, h, p, n), checkpoints (b, h, p, chunks, n)).");
  m.def(
      "ssd_scan_backward", &meqg::ssd_scan_backward, "u"_a, "decay"_a, "B"_a, "C"_a, "checkpoints"_a, "d_y"_a,
      "d_state"_a, "chunk"_a, nb::kw_only(), "stream"_a = nb::none(),
      "Its gradient: (d_u, d_decay, d_B and d_C per head (b, l, h, n), d_state_in).");
}
