// The next-concept head's context mixture: y[b, t, :] = sum_j a[b, t, j] x[b, t + L - 1 - j, :],
// a per-step weighted sum of the step's last L concepts, over a window x (b, T + L - 1, D) that
// holds the L - 1 concepts before the first step (zeros or a decoding cache) and weights
// a (b, T, L). MLX runs it as L shifted, strided multiply-adds forward and L strided
// reductions backward. Each function covers one step (or one window row); the loops over
// the D columns are innermost, so they vectorise. CPU only: on GPUs MLX's fused ops run.

// y[b, t, :]
MEQG_FN void meqg_mix_forward(int b, int t, MEQG_IN x, MEQG_IN a, MEQG_OUT y, int T, int D, int L) {
  MEQG_OUT out = y + ((long)b * T + t) * D;
  MEQG_IN weights = a + ((long)b * T + t) * L;
  MEQG_IN newest = x + ((long)b * (T + L - 1) + t + L - 1) * D;  // lag 0: the step's own concept
  for (int d = 0; d < D; ++d) {
    MEQG_STORE(out + d, weights[0] * newest[d]);
  }
  for (int j = 1; j < L; ++j) {
    MEQG_IN lagged = newest - (long)j * D;
    for (int d = 0; d < D; ++d) {
      MEQG_STORE(out + d, MEQG_LOAD(out + d) + weights[j] * lagged[d]);
    }
  }
}

// d_a[b, t, j] = g[b, t, :] . x[b, t + L - 1 - j, :] for every lag j of one step.
MEQG_FN void meqg_mix_backward_weights(int b, int t, MEQG_IN x, MEQG_IN g, MEQG_OUT d_a, int T, int D, int L) {
  MEQG_IN grad = g + ((long)b * T + t) * D;
  MEQG_IN newest = x + ((long)b * (T + L - 1) + t + L - 1) * D;
  for (int j = 0; j < L; ++j) {
    MEQG_IN lagged = newest - (long)j * D;
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) {
      dot += grad[d] * lagged[d];
    }
    MEQG_STORE(d_a + ((long)b * T + t) * L + j, dot);
  }
}

// d_x[b, s, :] = sum over the steps t = s - (L - 1) + j that read window row s (at lag j) of
// a[b, t, j] g[b, t, :]: a gather, so no two rows add into one element.
MEQG_FN void meqg_mix_backward_window(int b, int s, MEQG_IN a, MEQG_IN g, MEQG_OUT d_x, int T, int D, int L) {
  MEQG_OUT out = d_x + ((long)b * (T + L - 1) + s) * D;
  for (int d = 0; d < D; ++d) {
    MEQG_STORE(out + d, 0.0f);
  }
  for (int j = 0; j < L; ++j) {
    int t = s - (L - 1) + j;
    if (t >= 0 && t < T) {
      float weight = a[((long)b * T + t) * L + j];
      MEQG_IN grad = g + ((long)b * T + t) * D;
      for (int d = 0; d < D; ++d) {
        MEQG_STORE(out + d, MEQG_LOAD(out + d) + weight * grad[d]);
      }
    }
  }
}
