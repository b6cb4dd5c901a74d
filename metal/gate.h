// The Null-Stability Gate's reductions over a proposed optimizer step (meqg_mlx/diamond/gate.py),
// one pass over each parameter array instead of five MLX ops per array: for the step
// s = proposed - before, out[4 k + 0..3] of array k gather ||s||^2, ||before||^2, grad . s,
// and the count of non-finite values in proposed. A tile is [first, last) of one array;
// its partial sums go to `out` through MEQG_ADD (outputs start zeroed).

MEQG_FN void meqg_gate_tile(
    MEQG_IN before, MEQG_IN proposed, MEQG_IN grad, long first, long last, MEQG_OUT out) {
  float step = 0.0f, norm = 0.0f, slope = 0.0f, bad = 0.0f;
  for (long i = first; i < last; ++i) {
    float p = proposed[i], s = p - before[i];
    step += s * s;
    norm += before[i] * before[i];
    slope += grad[i] * s;
    bad += (p - p == 0.0f) ? 0.0f : 1.0f;  // p - p is NaN for NaN and for +-inf
  }
  MEQG_ADD(out + 0, step);
  MEQG_ADD(out + 1, norm);
  MEQG_ADD(out + 2, slope);
  MEQG_ADD(out + 3, bad);
}
