// The SSD mixer's short convolution: causal, depthwise along time, then bias and SiLU, as
// y[b, t, c] = silu(bias[c] + sum_k w[k, c] x[b, t + k, c]) over a window x (b, L + K - 1, C)
// that holds the K - 1 steps before the first output (zeros or a decoding cache). The
// weights are tap-major, w (K, C). Each function covers channels [c0, c1) of one step (a
// GPU thread: one channel; the CPU: all), with the loop over channels innermost and the
// running sums kept in the output itself, so that a compiler vectorises it over channels.
// Needs a prelude and activations.h (meqg_silu, meqg_silu_grad).

// pre[c0..c1) = bias + sum_k w[k] x[at + k C]: the pre-activation of the step the window row `at` starts.
MEQG_FN void meqg_conv_pre(MEQG_IN x, MEQG_IN w, MEQG_IN bias, long at, int c0, int c1, MEQG_OUT pre, int C, int K) {
  for (int c = c0; c < c1; ++c) {
    MEQG_STORE(pre + c, bias[c]);
  }
  for (int k = 0; k < K; ++k) {
    for (int c = c0; c < c1; ++c) {
      MEQG_STORE(pre + c, MEQG_LOAD(pre + c) + w[k * C + c] * x[at + (long)k * C + c]);
    }
  }
}

// y[b, t, c0..c1)
MEQG_FN void meqg_conv_forward(
    int b, int t, int c0, int c1, MEQG_IN x, MEQG_IN w, MEQG_IN bias, MEQG_OUT y, int L, int C, int K) {
  MEQG_OUT out = y + ((long)b * L + t) * C;
  meqg_conv_pre(x, w, bias, ((long)b * (L + K - 1) + t) * C, c0, c1, out, C, K);
  for (int c = c0; c < c1; ++c) {
    MEQG_STORE(out + c, meqg_silu(MEQG_LOAD(out + c)));
  }
}

// d_pre[b, t, c0..c1) = d_y * silu'(pre): the gradient at the pre-activation, which the two
// functions below take.
MEQG_FN void meqg_conv_backward_pre(
    int b, int t, int c0, int c1, MEQG_IN x, MEQG_IN w, MEQG_IN bias, MEQG_IN d_y, MEQG_OUT d_pre, int L, int C,
    int K) {
  long step = ((long)b * L + t) * C;
  MEQG_OUT out = d_pre + step;
  meqg_conv_pre(x, w, bias, ((long)b * (L + K - 1) + t) * C, c0, c1, out, C, K);
  for (int c = c0; c < c1; ++c) {
    MEQG_STORE(out + c, d_y[step + c] * meqg_silu_grad(MEQG_LOAD(out + c)));
  }
}

// d_x[b, s, c0..c1): the steps t = s - k that read window row s, each through its tap k.
MEQG_FN void meqg_conv_backward_input(
    int b, int s, int c0, int c1, MEQG_IN w, MEQG_IN d_pre, MEQG_OUT d_x, int L, int C, int K) {
  MEQG_OUT out = d_x + ((long)b * (L + K - 1) + s) * C;
  for (int c = c0; c < c1; ++c) {
    MEQG_STORE(out + c, 0.0f);
  }
  for (int k = 0; k < K; ++k) {
    int t = s - k;
    if (t >= 0 && t < L) {
      long step = ((long)b * L + t) * C;
      for (int c = c0; c < c1; ++c) {
        MEQG_STORE(out + c, MEQG_LOAD(out + c) + w[k * C + c] * d_pre[step + c]);
      }
    }
  }
}

// d_w (K, C) and d_bias (C,) of channels [c0, c1), summed over batch entries [b0, b1) and all
// steps, added (MEQG_ADD) into outputs that start at zero.
MEQG_FN void meqg_conv_backward_weights(
    int b0, int b1, int c0, int c1, MEQG_IN x, MEQG_IN d_pre, MEQG_OUT d_w, MEQG_OUT d_bias, int L, int C, int K) {
  for (int b = b0; b < b1; ++b) {
    for (int t = 0; t < L; ++t) {
      long window = ((long)b * (L + K - 1) + t) * C, step = ((long)b * L + t) * C;
      for (int c = c0; c < c1; ++c) {
        MEQG_ADD(d_bias + c, d_pre[step + c]);
      }
      for (int k = 0; k < K; ++k) {
        for (int c = c0; c < c1; ++c) {
          MEQG_ADD(d_w + k * C + c, d_pre[step + c] * x[window + (long)k * C + c]);
        }
      }
    }
  }
}
