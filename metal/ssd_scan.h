// The SSD scan (Mamba-2 recurrence, meqg_mlx/vmm/ssd.py) as one function per state row,
// written once for the CPU extension (cpu/kernels.cpp), Metal (mx.fast.metal_kernel) and
// CUDA (mx.fast.cuda_kernel). A row is one (batch, head, i) of the state S (b, h, p, n):
//     S_t[i, :] = decay_t * S_{t-1}[i, :] + dt_t x_t[i] * B_t,   y_t[i] = S_t[i, :] . C_t + D x_t[i]
// with decay = exp(dt * A) computed (and differentiated) by MLX ops outside, once per head
// and step rather than once per row: rows are then independent in the forward pass, and
// the gradient needs only sums over rows.
//
// A prelude (prelude_cpu.h, prelude_metal.h, prelude_cuda.h) defines:
//   MEQG_FN          qualifiers of a helper function
//   MEQG_IN          the pointer type of an input   (const float*)
//   MEQG_OUT         the pointer type of an output  (float*, or device atomic<float>* on Metal)
//   MEQG_LOAD(p)     read an output element
//   MEQG_STORE(p, v) write an output element that only this row writes
//   MEQG_ADD(p, v)   add into an element that other rows add to (atomic on GPUs)
// Outputs start zeroed. Layout: x, y (b, l, h, p); dt, decay (b, l, h); B, C (b, l, g, n);
// D (h,); states (b, h, p, n); checkpoints (b, h, p, chunks, n): the state entering each
// chunk of `Q` steps, what the backward pass restarts from.

MEQG_FN void meqg_ssd_forward_row(
    int row, MEQG_IN x, MEQG_IN dt, MEQG_IN decay, MEQG_IN B, MEQG_IN C, MEQG_IN D, MEQG_IN state_in,
    MEQG_OUT y, MEQG_OUT state_out, MEQG_OUT checkpoints, int L, int H, int P, int G, int N, int Q) {
  int i = row % P, bh = row / P, h = bh % H, b = bh / H;
  int g = h / (H / G), chunks = (L + Q - 1) / Q;
  MEQG_OUT s = state_out + row * N;
  for (int j = 0; j < N; ++j) {
    MEQG_STORE(s + j, state_in[row * N + j]);
  }
  for (int t = 0; t < L; ++t) {
    if (t % Q == 0) {
      for (int j = 0; j < N; ++j) {
        MEQG_STORE(checkpoints + (row * chunks + t / Q) * N + j, MEQG_LOAD(s + j));
      }
    }
    int bt = b * L + t, bc = (bt * G + g) * N;
    float a = decay[bt * H + h], xi = x[(bt * H + h) * P + i], ui = dt[bt * H + h] * xi, acc = 0.0f;
    for (int j = 0; j < N; ++j) {
      float next = a * MEQG_LOAD(s + j) + ui * B[bc + j];
      MEQG_STORE(s + j, next);
      acc += next * C[bc + j];
    }
    MEQG_STORE(y + (bt * H + h) * P + i, acc + D[h] * xi);
  }
}

// The gradient of one row, walking the chunks backwards: each chunk's states are recomputed
// from its checkpoint into `past` (Q + 1, n: this row's scratch; row k holds the state after
// k steps of the chunk, row 0 the checkpoint, so no inner loop branches and all vectorise),
// then the recurrence runs in reverse with `grad` (the state's gradient, kept in d_state_in)
// carried back step by step. Sums over rows go through MEQG_ADD: d_dt_x (b, l, h) takes
// d(dt x)[i] x[i], the part of dt's gradient through the input (the caller adds the part
// through decay); d_decay (b, l, h); d_B, d_C per head (b, l, h, n), which the caller sums
// over each group's heads; d_D per batch entry (b, h), which the caller sums over the batch
// (so that on the CPU, where threads take batch entries, no two threads add into one element).
MEQG_FN void meqg_ssd_backward_row(
    int row, MEQG_IN x, MEQG_IN dt, MEQG_IN decay, MEQG_IN B, MEQG_IN C, MEQG_IN D, MEQG_IN checkpoints,
    MEQG_IN d_y, MEQG_IN d_state_out, MEQG_OUT d_x, MEQG_OUT d_dt_x, MEQG_OUT d_decay, MEQG_OUT d_B,
    MEQG_OUT d_C, MEQG_OUT d_D, MEQG_OUT d_state_in, MEQG_OUT past, int L, int H, int P, int G, int N, int Q) {
  int i = row % P, bh = row / P, h = bh % H, b = bh / H;
  int g = h / (H / G), chunks = (L + Q - 1) / Q;
  MEQG_OUT grad = d_state_in + row * N;
  float skip = 0.0f;
  for (int j = 0; j < N; ++j) {
    MEQG_STORE(grad + j, d_state_out[row * N + j]);
  }
  for (int c = chunks - 1; c >= 0; --c) {
    int t0 = c * Q, t1 = min(L, t0 + Q);
    for (int j = 0; j < N; ++j) {
      MEQG_STORE(past + j, checkpoints[(row * chunks + c) * N + j]);
    }
    for (int t = t0; t < t1; ++t) {
      int bt = b * L + t, bc = (bt * G + g) * N;
      float a = decay[bt * H + h], ui = dt[bt * H + h] * x[(bt * H + h) * P + i];
      MEQG_OUT before = past + (t - t0) * N;
      for (int j = 0; j < N; ++j) {
        MEQG_STORE(before + N + j, a * MEQG_LOAD(before + j) + ui * B[bc + j]);
      }
    }
    for (int t = t1 - 1; t >= t0; --t) {
      int bt = b * L + t, bc = (bt * G + g) * N, bh_t = (bt * H + h) * N;
      float a = decay[bt * H + h], xi = x[(bt * H + h) * P + i], ui = dt[bt * H + h] * xi;
      float dyi = d_y[(bt * H + h) * P + i];
      float grad_u = 0.0f, grad_decay = 0.0f;
      MEQG_OUT before = past + (t - t0) * N;
      for (int j = 0; j < N; ++j) {
        float gs = MEQG_LOAD(grad + j) + dyi * C[bc + j];
        MEQG_ADD(d_C + bh_t + j, MEQG_LOAD(before + N + j) * dyi);
        MEQG_ADD(d_B + bh_t + j, ui * gs);
        grad_u += gs * B[bc + j];
        grad_decay += gs * MEQG_LOAD(before + j);
        MEQG_STORE(grad + j, a * gs);
      }
      MEQG_STORE(d_x + (bt * H + h) * P + i, grad_u * dt[bt * H + h] + D[h] * dyi);
      MEQG_ADD(d_dt_x + bt * H + h, grad_u * xi);
      MEQG_ADD(d_decay + bt * H + h, grad_decay);
      skip += dyi * xi;
    }
  }
  MEQG_ADD(d_D + bh, skip);
}
