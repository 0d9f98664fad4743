// The sLSTM (lstmkit/cells/slstm.py, Beck et al. 2024): forward and backward over a whole layer.
//
//   i~, f~, z~, o~ = W x_t + b + R h_in        h_in = h_{t-1} * recurrent_mask
//   a_t = log f_t + m_{t-1}                    log f_t = f~ ("exp") or log sigmoid(f~)
//   m_t = i~ on an empty memory (n_{t-1} == 0), else max(a_t, i~)
//   i'_t = exp(i~ - m_t), f'_t = exp(a_t - m_t) (0 on an empty memory)
//   c_t = f' c_{t-1} + i' tanh(z~),  n_t = f' n_{t-1} + i',  h_t = sigmoid(o~) c_t / n_t
//
// Layout: R is block-diagonal, one [4E, E] block per head (K heads of E units, H = K E). The
// engine keeps every gate vector *head-major*, [K, 4, E] per batch row (Python permutes W_ih and
// the bias from the user's gate-major [4, K, E] rows, and autograd permutes their gradients
// back; an input that is the projection already is permuted by the copy into the loop's
// buffer, its gradient on the way out), so that head k's pre-activations [B, 4E] are one
// strided matrix: the recurrent
// product is one batched GEMM over the heads, [K, B, E] x [K, E, 4E], and so is its transpose
// in backward.
//
// Forward: the input projection of all steps is one GEMM before the loop; per step the
// batched recurrent GEMM and one fused pass over [B, K, 4, E]. Backward: per step one fused
// pass (BPTT through c, n, m and h) and the transposed batched GEMM; afterwards dW_ih, dx and
// dR are GEMMs over all steps and db one reduction.
//
// The stabiliser's gradient follows torch's autograd of the cell exactly: torch.maximum sends
// its gradient to the larger argument (half to each on a tie), so the forward pass saves that
// split (`w`: the share that goes to a_t) for backward.
#pragma once

#include "common.h"

namespace lstmkit {

struct SlstmConfig {
  int64_t T, B, D, H, K, E;
  bool sigmoid_forget;  // log f = log sigmoid(f~) rather than f~
  bool reverse;
  bool projected;  // x is the input projection already (gate-major [T, B, 4H], no bias)
};

// flags: [num_heads, sigmoid_forget, reverse]
inline SlstmConfig make_slstm_config(const at::Tensor& x, const at::Tensor& h0,
                                     const OptTensor& w_ih, const std::vector<int64_t>& flags) {
  TORCH_CHECK(flags.size() == 3, "slstm engine: expected 3 flags, got ", flags.size());
  const int64_t H = h0.size(1), K = flags[0];
  TORCH_CHECK(K > 0 && H % K == 0, "slstm engine: ", K, " heads do not divide H = ", H);
  return SlstmConfig{x.size(0), x.size(1),     x.size(2),     H,           K,
                     H / K,     flags[1] != 0, flags[2] != 0, !given(w_ih)};
}

// log(x) for x in [1, 2] (Cephes' logf polynomial; about 1 ulp), branch-free so that loops
// vectorise. Only log1p_approx calls it.
LSTMKIT_INLINE float log_approx_1to2(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  float m;
  std::memcpy(&m, &bits, sizeof m);
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  const float r = low ? m + m - 1.0f : m - 1.0f;
  const float z = r * r;
  float p = 7.0376836292e-2f;
  p = p * r - 1.1514610310e-1f;
  p = p * r + 1.1676998740e-1f;
  p = p * r - 1.2420140846e-1f;
  p = p * r + 1.4249322787e-1f;
  p = p * r - 1.6668057665e-1f;
  p = p * r + 2.0000714765e-1f;
  p = p * r - 2.4999993993e-1f;
  p = p * r + 3.3333331174e-1f;
  float y = p * r * z;
  y += e * -2.12194440e-4f;
  y += -0.5f * z;
  return r + y + e * 0.693359375f;
}

// log(1 + u) for u in [0, 1], accurate for small u too: log(w) u / (w - 1) with w = 1 + u
// corrects the rounding of w (Goldberg's trick).
LSTMKIT_INLINE float log1p_approx(float u) {
  const float w = 1.0f + u;
  const float d = w - 1.0f;
  return d == 0.0f ? u : log_approx_1to2(w) * (u / d);
}
LSTMKIT_INLINE double log1p_approx(double u) { return std::log1p(u); }

// log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)), as torch's log_sigmoid, and its derivative
// as torch's log_sigmoid_backward: z / (1 + z) for x >= 0, 1 - z / (1 + z) for x < 0.
template <typename T>
LSTMKIT_INLINE T log_sigmoid(T x, T* deriv) {
  const T z = exp_approx(-std::abs(x));
  const T q = z / (T(1) + z);
  *deriv = x < T(0) ? T(1) - q : q;
  return std::min(x, T(0)) - log1p_approx(z);
}

}  // namespace lstmkit
