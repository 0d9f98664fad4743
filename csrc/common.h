// Shared pieces of the fused CPU engine: multi-versioned row kernels, state slots, lerp.
#pragma once

// Light ATen headers (not ATen/ATen.h): each file includes the operators it calls, which
// halves the one-time compile.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "activations.h"

namespace lstmkit {

// The fused passes over [B, H] are compiled three times (AVX-512, AVX2+FMA, baseline x86-64)
// and the loader picks one at run time: portable binaries without -march=native.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define LSTMKIT_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LSTMKIT_CLONES
#endif

using OptTensor = std::optional<at::Tensor>;

// torch.lerp(start, end, weight), with torch's two formulas; weight 0 -> start, 1 -> end.
template <typename T>
LSTMKIT_INLINE T lerp(T start, T end, T weight) {
  T diff = end - start;
  return std::abs(weight) < T(0.5) ? start + weight * diff : end - diff * (T(1) - weight);
}

// Call f(std::integral_constant<int64_t, act>) so that loops see the activation at compile
// time and vectorise.
template <typename F>
LSTMKIT_INLINE void with_act(int64_t act, F&& f) {
  switch (act) {
    case kSigmoid: f(std::integral_constant<int64_t, kSigmoid>{}); break;
    case kTanh: f(std::integral_constant<int64_t, kTanh>{}); break;
    case kRelu: f(std::integral_constant<int64_t, kRelu>{}); break;
    case kHardSigmoid: f(std::integral_constant<int64_t, kHardSigmoid>{}); break;
    default: f(std::integral_constant<int64_t, kIdentity>{}); break;
  }
}

// States live in [T + 1, B, size] buffers of "slots": the state entering time step t is slot
// in_slot(t) and the one leaving it is out_slot(t). Forward in time slot 0 holds the initial
// state; in reverse slot T does. Either way the slots entering steps 0..T-1 are one contiguous
// [T, B, size] block, which the weight-gradient GEMMs after the loop read at once.
struct Slots {
  int64_t T;
  bool reverse;
  int64_t in(int64_t t) const { return reverse ? t + 1 : t; }
  int64_t out(int64_t t) const { return reverse ? t : t + 1; }
  int64_t first() const { return reverse ? T : 0; }
  int64_t last() const { return reverse ? 0 : T; }
  int64_t time(int64_t step) const { return reverse ? T - 1 - step : step; }  // step-th visited
  at::Tensor entering(const at::Tensor& slots) const { return slots.narrow(0, reverse ? 1 : 0, T); }
  at::Tensor leaving(const at::Tensor& slots) const { return slots.narrow(0, reverse ? 0 : 1, T); }
};

// Rows per task of at::parallel_for: enough work per task to pay for the fork.
inline int64_t row_grain(int64_t row_size) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(row_size, 1)); }

// Step i of a contiguous [N, ...] buffer as a raw pointer (null for an absent buffer): the
// loops over time index their buffers this way rather than building a tensor view per step.
template <typename T>
struct Steps {
  T* base = nullptr;
  int64_t stride = 0;
  T* operator[](int64_t i) const { return base ? base + i * stride : nullptr; }
};

template <typename T>
Steps<T> steps_of(const at::Tensor& t) {
  if (!t.defined() || t.numel() == 0) return {};
  return {t.data_ptr<T>(), t.stride(0)};
}

template <typename T>
Steps<T> steps_of(const OptTensor& t) {
  return t.has_value() ? steps_of<T>(*t) : Steps<T>{};
}

template <typename T>
inline const T* ptr_or_null(const OptTensor& t) {
  return (t.has_value() && t->defined() && t->numel() > 0) ? t->data_ptr<T>() : nullptr;
}

inline bool given(const OptTensor& t) { return t.has_value() && t->defined() && t->numel() > 0; }

// A given optional tensor, contiguous; nullopt otherwise.
inline OptTensor contig(const OptTensor& t) {
  if (!given(t)) return std::nullopt;
  return t->contiguous();
}

// Layer norm of one row of n values, as F.layer_norm without affine (biased variance, eps
// 1e-5, lstmkit/cells/lstm.py LAYER_NORM_EPS): y = (x - mean) * rstd; returns rstd. The
// moments are taken in two passes in double.
constexpr double kLayerNormEps = 1e-5;

template <typename T>
LSTMKIT_INLINE T normalize_row(const T* __restrict x, T* __restrict y, int64_t n) {
  double sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += double(x[k]);
  const double mean = sum / double(n);
  double sq = 0;
  for (int64_t k = 0; k < n; ++k) sq += (double(x[k]) - mean) * (double(x[k]) - mean);
  const double r = 1.0 / std::sqrt(sq / double(n) + kLayerNormEps);
  for (int64_t k = 0; k < n; ++k) y[k] = static_cast<T>((double(x[k]) - mean) * r);
  return static_cast<T>(r);
}

// Its backward, given dL/dy' for y' = y * w (w per unit): dL/dx = rstd * (dn - mean(dn) -
// y * mean(dn * y)) with dn = dL/dy' * w; written to dx, or added to it.
template <typename T>
LSTMKIT_INLINE void normalize_row_backward(const T* __restrict dyw, const T* __restrict w,
                                           const T* __restrict y, T rstd, T* __restrict dx,
                                           int64_t n, bool add) {
  double s1 = 0, s2 = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double dn = double(dyw[k]) * double(w[k]);
    s1 += dn;
    s2 += dn * double(y[k]);
  }
  const double m1 = s1 / double(n), m2 = s2 / double(n), r = double(rstd);
  for (int64_t k = 0; k < n; ++k) {
    const T d = static_cast<T>(r * (double(dyw[k]) * double(w[k]) - m1 - double(y[k]) * m2));
    dx[k] = add ? dx[k] + d : d;
  }
}

// An uninitialised buffer for per-call data; large ones are recycled across calls (see
// workspace.cpp). Never hand one to the user: only saved and scratch tensors use it.
at::Tensor workspace(at::IntArrayRef sizes, const at::TensorOptions& opts);
void empty_workspace_cache();

// a^T b for a [N, M], b [N, K] -> [M, K]: a weight gradient summed over N = T*B rows. float32
// runs on the micro-kernel where the step GEMMs do, else on oneDNN or at::mm (gemm.cpp).
at::Tensor mm_tn(const at::Tensor& a, const at::Tensor& b);
// (a^T b, a's column sums [M]): a weight gradient and its bias's gradient. On the micro-kernel
// the sums come out of the same GEMM (b gains a column of ones), saving a pass over a.
std::pair<at::Tensor, at::Tensor> mm_tn_sums(const at::Tensor& a, const at::Tensor& b);
// The input side's gradients from the gate gradients g2 [T*B, N] (contiguous) of a layer with
// input x [T, B, D] and weights w_ih [N, D] (contiguous): (dx = g w_ih [T, B, D],
// dW_ih = g^T x [N, D], dbias = g's column sums [N] or empty without a bias).
template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> input_grads(const at::Tensor& g2,
                                                           const at::Tensor& x,
                                                           const at::Tensor& w_ih, bool has_bias);

// out[k] = sum_r a[r, k] * b[r, k] (or sum_r a[r, k] without b), a and b [rows, cols] with
// unit column stride; deterministic for any number of threads (reduce.cpp).
void col_dot(const at::Tensor& a, const OptTensor& b, const at::Tensor& out);

// The recurrent input of a step, [rows, n]: src itself, or src * mask (recurrent dropout's
// mask, [rows, n]) written into ``buffer``.
template <typename T>
inline const T* masked_input(const T* src, const OptTensor& mask, const at::Tensor& buffer,
                             int64_t count) {
  if (!mask.has_value()) return src;
  T* out = buffer.data_ptr<T>();
  const T* m = mask->data_ptr<T>();
  for (int64_t k = 0; k < count; ++k) out[k] = src[k] * m[k];
  return out;
}

// out[M, N] = a[M, K] b[K, N], or out += a b with ``accumulate``; row-major with leading
// dimensions (lda, ldb, ldo >= the row length), so a step's rows of a wider buffer serve as is.
// The per-step GEMMs of the loops (gemm.cpp): no tensors, no dispatch.
template <typename T>
void gemm_nn(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* out, int64_t ldo, bool accumulate);

// The right factor b [K, N] of a GEMM that runs every step, prepared once per call: for the
// micro-kernel (float32, K * N >= 128K) copied into column blocks of 64, each [K, 64] contiguous
// (block 0 = plain b); gemm_right multiplies by it, block by block.
template <typename T>
struct RightFactor {
  at::Tensor storage;  // keeps the data alive
  const T* data;
  int64_t K, N, block;
};
template <typename T>
RightFactor<T> prepare_right(const at::Tensor& b);
// out[M, N] (+)= a[M, K] b, as gemm_nn
template <typename T>
void gemm_right(int64_t M, const T* a, int64_t lda, const RightFactor<T>& b, T* out, int64_t ldo,
                bool accumulate);

// out [M, N] = x [M, K] wt [K, N] (+ bias [N], null: none): input projections (blocks of rows
// on the micro-kernel where gemm_nn has it).
template <typename T>
void project_rows(const T* x, int64_t M, int64_t K, const T* wt, int64_t N, const T* bias, T* out);

// A layer's input projection run a few steps ahead of its loop rather than all at once: the
// rows a step adds its recurrent product to are then still in cache (measured 1.2x faster
// inference at T=500, B=16, H=64 and T=200, B=64, H=256 than one projection before the loop).
// x [T, B, D] contiguous, w [N, D], bias [N] or none, out [T, B, N]; ``before(step)`` projects
// the chunk that step ``step`` of the loop (in processing order, see Slots) starts.
template <typename T>
class StepProjection {
 public:
  static constexpr int64_t kRows = 256;  // rows per chunk, as gemm_nn's row blocks

  StepProjection(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                 const at::Tensor& out, bool reverse)
      : x_(x), wt_(w.t().contiguous()), out_(out), reverse_(reverse) {
    if (bias.has_value() && bias->defined()) bias_ = bias->contiguous();
    T_ = x.size(0), B_ = x.size(1), D_ = x.size(2), N_ = w.size(0);
    chunk_ = std::max<int64_t>(1, kRows / std::max<int64_t>(B_, 1));
  }

  void before(int64_t step) const {
    if (step % chunk_ != 0) return;
    const int64_t n = std::min(chunk_, T_ - step);
    const int64_t t0 = reverse_ ? T_ - step - n : step;  // the chunk's times, increasing
    project_rows<T>(x_.data_ptr<T>() + t0 * B_ * D_, n * B_, D_, wt_.data_ptr<T>(), N_,
                    bias_.defined() ? bias_.data_ptr<T>() : nullptr,
                    out_.data_ptr<T>() + t0 * B_ * N_);
  }

 private:
  at::Tensor x_, wt_, bias_, out_;
  bool reverse_;
  int64_t T_, B_, D_, N_, chunk_;
};

// Which kernel float32 step GEMMs use: "brgemm" (oneDNN's micro-kernel, the default where
// torch has it) or "aten" (at::mm); returns the previous choice. For tests and benchmarks.
std::string set_step_gemm(const std::string& kernel);

}  // namespace lstmkit
