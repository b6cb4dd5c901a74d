// BERT's post-norm residual, one row of n per call: y = LayerNorm(x + h + bias) * w + b, where h
// is the sublayer's projection before its bias and x the residual stream. The sum is kept in y,
// then its mean and the centred variance (as MLX's and PyTorch's LayerNorm take them) scale it;
// each pass is a loop over the row that vectorises. CPU only: GPUs run mx.fast.layer_norm.

MEQG_FN void meqg_residual_norm_row(
    MEQG_IN x, MEQG_IN h, MEQG_IN bias, MEQG_IN w, MEQG_IN b, MEQG_OUT y, int n, float eps) {
  float total = 0.0f;
  for (int j = 0; j < n; ++j) {
    float s = x[j] + h[j] + bias[j];
    MEQG_STORE(y + j, s);
    total += s;
  }
  float mean = total / n, spread = 0.0f;
  for (int j = 0; j < n; ++j) {
    float centred = MEQG_LOAD(y + j) - mean;
    spread += centred * centred;
  }
  float inverse = 1.0f / sqrt(spread / n + eps);
  for (int j = 0; j < n; ++j) {
    MEQG_STORE(y + j, (MEQG_LOAD(y + j) - mean) * inverse * w[j] + b[j]);
  }
}
