// Softmax and log-sum-exp along rows of length n, the largest entry subtracted first; exp is
// activations.h's vectorisable one (include it before this). A NaN in a row makes the row NaN.

MEQG_FN float meqg_row_max(MEQG_IN x, int n) {
  float top = x[0];
  for (int j = 1; j < n; ++j) {
    top = x[j] > top ? x[j] : top;
  }
  return top;
}

MEQG_FN void meqg_softmax_row(MEQG_IN x, MEQG_OUT y, int n) {
  float top = meqg_row_max(x, n), total = 0.0f;
  for (int j = 0; j < n; ++j) {
    float e = meqg_exp(x[j] - top);
    MEQG_STORE(y + j, e);
    total += e;
  }
  float inverse = 1.0f / total;
  for (int j = 0; j < n; ++j) {
    MEQG_STORE(y + j, MEQG_LOAD(y + j) * inverse);
  }
}

MEQG_FN float meqg_logsumexp_row(MEQG_IN x, int n) {
  float top = meqg_row_max(x, n), total = 0.0f;
  for (int j = 0; j < n; ++j) {
    total += meqg_exp(x[j] - top);
  }
  return top + log(total);
}

// The gradient of softmax from its output y and the cotangent g: y * (g - g . y).
MEQG_FN void meqg_softmax_grad_row(MEQG_IN y, MEQG_IN g, MEQG_OUT d_x, int n) {
  float dot = 0.0f;
  for (int j = 0; j < n; ++j) {
    dot += g[j] * y[j];
  }
  for (int j = 0; j < n; ++j) {
    MEQG_STORE(d_x + j, y[j] * (g[j] - dot));
  }
}
