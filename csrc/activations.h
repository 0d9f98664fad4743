// Activation functions sigma(x) and their derivatives, written so that the compiler vectorises
// the loops that call them (no libm calls, no branches: selects only).
//
// Ids match lstmkit/cells/activations.py: 0 sigmoid, 1 tanh, 2 identity, 3 relu,
// 4 hard_sigmoid. Derivatives are taken from the activation's *output* y (the forward pass
// saves activations, not pre-activations), exactly as torch's sigmoid/tanh/relu backward do.
//
// float: exp is Cephes' expf (about 1 ulp), tanh is Cephes' tanhf (polynomial near 0, exp
// elsewhere). double: the C library's exp and tanh (the fp64 path is for checking, not speed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace lstmkit {

enum Act : int64_t { kSigmoid = 0, kTanh = 1, kIdentity = 2, kRelu = 3, kHardSigmoid = 4 };

#define LSTMKIT_INLINE inline __attribute__((always_inline))

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2) / 2. Inputs are clamped to
// [-87, 88] so that 2^n stays a normal float: exp(-87) ~ 1.6e-38 stands for anything smaller
// (sigmoid and tanh only ever add it to 1) and exp(88) ~ 1.7e38 for anything larger.
LSTMKIT_INLINE float exp_approx(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = x * 1.44269504088896341f;
  n = (n + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick, no libm call)
  float r = x - n * 0.693359375f;       // ln 2 in two pieces, so r is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

LSTMKIT_INLINE double exp_approx(double x) { return std::exp(x); }

LSTMKIT_INLINE float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }
LSTMKIT_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

LSTMKIT_INLINE float tanh_approx(float x) {
  float ax = std::fabs(x);
  // |x| < 0.625: odd polynomial (no cancellation near 0)
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  // otherwise 1 - 2 / (exp(2|x|) + 1), with the sign of x
  float large = 1.0f - 2.0f / (exp_approx(2.0f * ax) + 1.0f);
  large = std::copysign(large, x);
  return ax < 0.625f ? small : large;
}
LSTMKIT_INLINE double tanh_approx(double x) { return std::tanh(x); }

template <typename T>
LSTMKIT_INLINE T activate(int64_t act, T x) {
  switch (act) {
    case kSigmoid: return sigmoid(x);
    case kTanh: return tanh_approx(x);
    case kRelu: return std::max(x, T(0));
    case kHardSigmoid: return std::min(std::max(x + T(3), T(0)), T(6)) / T(6);  // as torch
    default: return x;
  }
}

// d sigma / dx from y = sigma(x)
template <typename T>
LSTMKIT_INLINE T activate_grad(int64_t act, T y) {
  switch (act) {
    case kSigmoid: return (T(1) - y) * y;
    case kTanh: return T(1) - y * y;
    case kRelu: return y > T(0) ? T(1) : T(0);
    // torch's hardsigmoid backward uses the float constant 1.0f / 6.0f, in double too
    case kHardSigmoid: return (y > T(0) && y < T(1)) ? T(1.0f / 6.0f) : T(0);
    default: return T(1);
  }
}

// y[k] = sigma(x[k]) for k < n, one vectorised loop per activation.
template <typename T>
LSTMKIT_INLINE void activate_inplace(int64_t act, T* __restrict x, int64_t n) {
  switch (act) {
    case kSigmoid:
      for (int64_t k = 0; k < n; ++k) x[k] = activate<T>(kSigmoid, x[k]);
      break;
    case kTanh:
      for (int64_t k = 0; k < n; ++k) x[k] = activate<T>(kTanh, x[k]);
      break;
    case kRelu:
      for (int64_t k = 0; k < n; ++k) x[k] = activate<T>(kRelu, x[k]);
      break;
    case kHardSigmoid:
      for (int64_t k = 0; k < n; ++k) x[k] = activate<T>(kHardSigmoid, x[k]);
      break;
    default:
      break;
  }
}

template <typename T>
LSTMKIT_INLINE void activate_to(int64_t act, const T* __restrict x, T* __restrict y, int64_t n) {
  switch (act) {
    case kSigmoid:
      for (int64_t k = 0; k < n; ++k) y[k] = activate<T>(kSigmoid, x[k]);
      break;
    case kTanh:
      for (int64_t k = 0; k < n; ++k) y[k] = activate<T>(kTanh, x[k]);
      break;
    case kRelu:
      for (int64_t k = 0; k < n; ++k) y[k] = activate<T>(kRelu, x[k]);
      break;
    case kHardSigmoid:
      for (int64_t k = 0; k < n; ++k) y[k] = activate<T>(kHardSigmoid, x[k]);
      break;
    default:
      for (int64_t k = 0; k < n; ++k) y[k] = x[k];
      break;
  }
}

}  // namespace lstmkit
