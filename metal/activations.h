// Elementwise activations and their derivatives in float32, branch-free so that a compiler
// vectorises a loop over them (MLX's CPU backend evaluates exp, sigmoid and erf one element
// at a time: ~20 ns each, most of a VMM training step on the CPU). Errors against the
// float64 functions: exp ~1e-7 relative, erf ~1e-7 absolute (tests/kernels/test_activations.py).
// Needs a prelude (prelude_cpu.h, ...) for MEQG_FN and MEQG_FLOAT_FROM_BITS.

// Clamps are comparisons, not fmin/fmax, which would turn a NaN into the bound: NaN in, NaN out.
MEQG_FN float meqg_clamp(float x, float low, float high) {
  x = x < low ? low : x;
  return x > high ? high : x;
}

// exp(x) = 2^n * e^r with r = x - n ln 2 in [-ln2/2, ln2/2] (Cephes' expf polynomial); 2^n is
// built in the exponent bits. Inputs are clamped to [-87.3, 88.7], where float32 ends.
MEQG_FN float meqg_exp(float x) {
  x = meqg_clamp(x, -87.33654f, 88.72283f);
  float n = floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * MEQG_FLOAT_FROM_BITS(((int)n + 127) << 23);
}

MEQG_FN float meqg_sigmoid(float x) { return 1.0f / (1.0f + meqg_exp(-x)); }

// Eigen's float32 erf: an odd rational polynomial on [-4, 4], +-1 beyond to float precision
// (the same coefficients as meqg_mlx/encoder/bert.py's MLX-ops gelu).
MEQG_FN float meqg_erf(float x) {
  float z = meqg_clamp(x, -4.0f, 4.0f), z2 = z * z;
  float num = -2.72614225801306e-10f;
  num = num * z2 + 2.77068142495902e-08f;
  num = num * z2 - 2.10102402082508e-06f;
  num = num * z2 - 5.69250639462346e-05f;
  num = num * z2 - 7.34990630326855e-04f;
  num = num * z2 - 2.95459980854025e-03f;
  num = num * z2 - 1.60960333262415e-02f;
  float den = -1.45660718464996e-05f;
  den = den * z2 - 2.13374055278905e-04f;
  den = den * z2 - 1.68282697438203e-03f;
  den = den * z2 - 7.37332916720468e-03f;
  den = den * z2 - 1.42647390514189e-02f;
  return z * num / den;
}

// log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, by its odd series
// (terms to s^17: below 1e-9 relative), accurate as e -> 0 where log(1 + e) ~ e.
MEQG_FN float meqg_log1p_unit(float e) {
  float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 17;
  p = p * s2 + 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// x / (1 + e^-x) rather than x * sigmoid(x): GCC's vectorised loop folded the product to 0 where the
// clamp in meqg_exp makes sigmoid a constant 0, so silu(-inf) was 0 there and NaN (MLX's answer) in
// the scalar tail; a quotient keeps -inf / inf = NaN on every path.
MEQG_FN float meqg_silu(float x) { return x / (1.0f + meqg_exp(-x)); }

MEQG_FN float meqg_silu_grad(float x) {
  float s = meqg_sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}

// softplus(x) = max(x, 0) + log(1 + e^-|x|): no overflow; its derivative is sigmoid(x).
MEQG_FN float meqg_softplus(float x) { return (x < 0.0f ? 0.0f : x) + meqg_log1p_unit(meqg_exp(-fabs(x))); }

// The exact (erf) GELU, x Phi(x), and its derivative Phi(x) + x phi(x).
MEQG_FN float meqg_gelu(float x) { return 0.5f * x * (1.0f + meqg_erf(x * 0.70710678118654752f)); }

MEQG_FN float meqg_gelu_grad(float x) {
  return 0.5f * (1.0f + meqg_erf(x * 0.70710678118654752f)) + x * 0.39894228040143268f * meqg_exp(-0.5f * x * x);
}
