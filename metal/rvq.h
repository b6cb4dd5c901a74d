// Residual vector quantisation's nearest-code search for one row: the code c minimising
// |c|^2 - 2 r . c (the squared distance to the residual r, less |r|^2), with r . c from a
// matrix product (scores, (rows, C)) and |c|^2 per code (norms, (C,)). Ties go to the lower
// index, as mx.argmin's. One pass over the row's scores, where MLX ops take three (scale,
// subtract, argmin). The code is written as a float (exact below 2^24 codes).

MEQG_FN void meqg_nearest_code_row(int row, MEQG_IN scores, MEQG_IN norms, MEQG_OUT code, int C) {
  MEQG_IN s = scores + (long)row * C;
  int best = 0;
  float nearest = norms[0] - 2.0f * s[0];
  for (int c = 1; c < C; ++c) {
    float distance = norms[c] - 2.0f * s[c];
    best = distance < nearest ? c : best;
    nearest = distance < nearest ? distance : nearest;
  }
  MEQG_STORE(code + row, (float)best);
}
