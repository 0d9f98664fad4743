// The engine's GEMMs (see common.h): the per-step products of the recurrent loops on raw
// row-major pointers, the input projections and the weight gradients.
//
// A step's recurrent product is small ([B, H] x [H, 4H]) and runs T times per layer, so what
// surrounds the multiply counts: going through at::mm costs a tensor view, the dispatcher and
// argument checks (2-3 us a call here, as much as the whole multiply at H = 32). float32
// therefore runs on oneDNN's batch-reduce GEMM micro-kernel that torch exports
// (at::native::cpublas::brgemm): a cached JIT kernel, called with pointers, that can also
// accumulate into a strided output (the step's gate rows). On CPUs where MKL takes a
// narrower code path (AMD) it is also 2-3x faster than at::mm at these shapes. Where this
// torch lacks it or it fails, and for float64, at::mm over pointer views does the same job.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>

#include "common.h"

namespace lstmkit {

namespace {
// Work (multiply-adds) below which one thread does the whole product: a fork costs more.
constexpr int64_t kSplitMacs = int64_t(1) << 17;
// Rows per micro-kernel call for tall products (a layer's input projection): the output block
// stays in cache while the weights stream past (measured best between 64 and 1024 rows).
constexpr int64_t kRowBlock = 256;
// Block of the summed index and of the output's columns in weight gradients (measured best)
constexpr int64_t kTnBlock = 256;
// Rows of b transposed at a time in weight gradients (a multiple of kTnBlock)
constexpr int64_t kTnChunk = 512;
// Columns per packed block of a step GEMM's weights (see RightFactor): one block, [K, 64],
// stays in cache while the step's rows pass over it; 1.3-1.4x at [64, 256] x [256, 1024] and
// [128, 512] x [512, 2048] here. Weights under 128K elements (512 KiB of float32: [128, 512]
// and below) stay in cache anyway, and there the extra calls cost more than they save.
constexpr int64_t kPackBlock = 64;
constexpr int64_t kPackMinElements = int64_t(1) << 17;

bool brgemm_available() {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  try {  // a CPU the micro-kernel does not support refuses here, once
    float a[2] = {1.f, 2.f}, b[2] = {3.f, 4.f}, c[1] = {0.f};
    at::native::cpublas::brgemm(1, 1, 2, 2, 1, 1, false, a, b, c, false);
    return c[0] == 11.f;
  } catch (const std::exception&) {
    return false;
  }
#else
  return false;
#endif
}

// Whether float32 uses the micro-kernel; LSTMKIT_STEP_GEMM=aten (or set_step_gemm) turns it off.
std::atomic<bool>& use_brgemm() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("LSTMKIT_STEP_GEMM");
    return !(env != nullptr && std::string(env) == "aten") && brgemm_available();
  }()};
  return flag;
}

template <typename T>
void gemm_aten(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* b, int64_t ldb,
               T* out, int64_t ldo, bool accumulate) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor A = at::from_blob(const_cast<T*>(a), {M, K}, {lda, 1}, opts);
  const at::Tensor Bm = at::from_blob(const_cast<T*>(b), {K, N}, {ldb, 1}, opts);
  at::Tensor C = at::from_blob(out, {M, N}, {ldo, 1}, opts);
  if (accumulate) {
    C.addmm_(A, Bm);
  } else if (ldo == N) {
    at::mm_out(C, A, Bm);
  } else {
    C.copy_(at::mm(A, Bm));  // mm_out into a strided output would allocate anyway
  }
}

// f(j) for every block j in [0, count): one task per block when the product (macs
// multiply-adds) pays for a fork, else all on this thread. at::parallel_for itself stays on
// this thread inside a parallel region or with one thread.
template <typename F>
void for_each_block(int64_t count, int64_t macs, const F& f) {
  at::parallel_for(0, count, macs >= kSplitMacs ? 1 : count, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) f(j);
  });
}

#ifdef CPUBLAS_BRGEMM_F32F32F32
// Columns [n0, n1) of the product, on the micro-kernel.
void brgemm_columns(int64_t M, int64_t n0, int64_t n1, int64_t K, const float* a, int64_t lda,
                    const float* b, int64_t ldb, float* out, int64_t ldo, bool accumulate) {
  at::native::cpublas::brgemm(M, n1 - n0, K, lda, ldb, ldo, accumulate, a, b + n0, out + n0,
                              false);
}
#endif
}  // namespace

template <typename T>
void gemm_nn(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* out, int64_t ldo, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t m = 0; m < M; ++m) std::fill(out + m * ldo, out + m * ldo + N, T(0));
    return;
  }
#ifdef CPUBLAS_BRGEMM_F32F32F32
  if constexpr (std::is_same_v<T, float>) {
    if (use_brgemm().load(std::memory_order_relaxed)) {
      const int64_t macs = M * N * K;
      if (M > kRowBlock) {  // a whole sequence's rows: blocks of rows
        for_each_block((M + kRowBlock - 1) / kRowBlock, macs, [&](int64_t r) {
          const int64_t m0 = r * kRowBlock, rows = std::min(kRowBlock, M - m0);
          brgemm_columns(rows, 0, N, K, a + m0 * lda, lda, b, ldb, out + m0 * ldo, ldo,
                         accumulate);
        });
        return;
      }
      // a step's rows: one block of columns per thread (whole vectors each), or one block;
      // the split depends only on the thread count, so the same threads give the same bits
      const int64_t threads =
          macs < kSplitMacs || at::in_parallel_region() ? 1 : at::get_num_threads();
      const int64_t block = ((N + threads - 1) / threads + 15) / 16 * 16;
      for_each_block((N + block - 1) / block, macs, [&](int64_t j) {
        brgemm_columns(M, j * block, std::min(N, (j + 1) * block), K, a, lda, b, ldb, out, ldo,
                       accumulate);
      });
      return;
    }
  }
#endif
  gemm_aten<T>(M, N, K, a, lda, b, ldb, out, ldo, accumulate);
}

template void gemm_nn<float>(int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                             int64_t, float*, int64_t, bool);
template void gemm_nn<double>(int64_t, int64_t, int64_t, const double*, int64_t, const double*,
                              int64_t, double*, int64_t, bool);

namespace {
// (a^T b)^T = b^T a [K, M] on the micro-kernel where it applies (float32, brgemm on), else
// nullopt. With ``sums``, b gets a last column of ones: the result's last row is then a's
// column sums (the bias gradient, in the same pass over a as the weight gradient): [K + 1, M].
OptTensor mm_tn_brgemm(const at::Tensor& a, const at::Tensor& b, bool sums) {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  if (a.scalar_type() != at::kFloat || !use_brgemm().load(std::memory_order_relaxed) ||
      a.stride(1) != 1 || a.numel() == 0 || b.numel() == 0)
    return std::nullopt;
  // a^T b = (b^T a)^T: the micro-kernel wants its left factor with the summed index
  // contiguous, so b (the narrower one) is transposed, not a; blocks of kTnBlock along both
  // the sum and a's columns keep the working set in cache (2x at::mm here). b is transposed
  // kTnChunk rows at a time into one reused buffer: a whole b^T would cost as much memory as
  // b itself (a layer's inputs or states) at the training peak.
  const int64_t N = a.size(0), M = a.size(1), K = b.size(1), lda = a.stride(0);
  const int64_t chunk = std::min(kTnChunk, N), Kout = sums ? K + 1 : K;
  const at::Tensor bt = at::empty({Kout, chunk}, b.options());  // b^T of one chunk of rows
  if (sums) bt[K].fill_(1.0f);
  const at::Tensor out_t = at::empty({Kout, M}, a.options());
  const float* A = a.data_ptr<float>();
  float *Bt = bt.data_ptr<float>(), *O = out_t.data_ptr<float>();
  for (int64_t c0 = 0; c0 < N; c0 += chunk) {
    const int64_t rows = std::min(chunk, N - c0);
    bt.narrow(0, 0, K).narrow(1, 0, rows).copy_(b.narrow(0, c0, rows).t());
    for_each_block((M + kTnBlock - 1) / kTnBlock, rows * M * Kout, [&](int64_t j) {
      const int64_t m0 = j * kTnBlock, cols = std::min(kTnBlock, M - m0);
      for (int64_t n0 = 0; n0 < rows; n0 += kTnBlock) {
        at::native::cpublas::brgemm(Kout, cols, std::min(kTnBlock, rows - n0), chunk, lda, M,
                                    c0 + n0 > 0, Bt + n0, A + (c0 + n0) * lda + m0, O + m0,
                                    false);
      }
    });
  }
  return out_t;
#else
  return std::nullopt;
#endif
}

// Below this many multiply-adds oneDNN's call overhead outweighs its speed: at::mm there.
constexpr int64_t kOneDnnMinMacs = int64_t(1) << 21;
std::atomic<bool> conv_failed{false};
}  // namespace

// a^T b on the micro-kernel where float32 step GEMMs use it (mm_tn_brgemm). Otherwise, for
// float32, as the weight gradient of a 1x1 convolution over N positions, channels last (the
// memory of a [N, M] matrix *is* a channels-last [1, M, N, 1] image), which torch runs on
// oneDNN; for float64, or if that fails, at::mm on the transposed matrix.
at::Tensor mm_tn(const at::Tensor& a, const at::Tensor& b) {
  if (OptTensor fast = mm_tn_brgemm(a, b, false)) return fast->t().contiguous();
  const int64_t N = a.size(0), M = a.size(1), K = b.size(1);
  if (a.scalar_type() == at::kFloat && N * M * K >= kOneDnnMinMacs && a.stride(1) == 1 &&
      b.stride(1) == 1 && !conv_failed.load() && at::globalContext().userEnabledMkldnn()) {
    try {
      const at::Tensor grad = a.as_strided({1, M, N, 1}, {N * a.stride(0), 1, a.stride(0), M});
      const at::Tensor input = b.as_strided({1, K, N, 1}, {N * b.stride(0), 1, b.stride(0), K});
      const at::Tensor weight =
          at::empty({M, K, 1, 1}, a.options().memory_format(at::MemoryFormat::ChannelsLast));
      auto grads = at::convolution_backward(grad, input, weight, std::nullopt, {1, 1}, {0, 0},
                                            {1, 1}, false, {0, 0}, 1, {false, true, false});
      return std::get<1>(grads).reshape({M, K});
    } catch (const std::exception&) {
      conv_failed.store(true);
    }
  }
  return at::mm(a.t(), b);
}

std::pair<at::Tensor, at::Tensor> mm_tn_sums(const at::Tensor& a, const at::Tensor& b) {
  if (OptTensor fast = mm_tn_brgemm(a, b, true)) {
    const int64_t K = b.size(1);
    return {fast->narrow(0, 0, K).t().contiguous(), fast->select(0, K).clone()};
  }
  return {mm_tn(a, b), a.sum(0)};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor, at::Tensor> input_grads(const at::Tensor& g2,
                                                           const at::Tensor& x,
                                                           const at::Tensor& w_ih, bool has_bias) {
  const int64_t rows = g2.size(0), N = g2.size(1), D = x.size(2);
  at::Tensor dx = at::empty(x.sizes(), x.options());  // [T*B, N] x [N, D]
  gemm_nn<T>(rows, D, N, g2.data_ptr<T>(), N, w_ih.data_ptr<T>(), D, dx.data_ptr<T>(), D, false);
  const at::Tensor x2 = x.reshape({rows, D});
  if (!has_bias) return {dx, mm_tn(g2, x2), at::empty({0}, x.options())};
  auto [dw_ih, dbias] = mm_tn_sums(g2, x2);
  return {dx, dw_ih, dbias};
}

template std::tuple<at::Tensor, at::Tensor, at::Tensor> input_grads<float>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, bool);
template std::tuple<at::Tensor, at::Tensor, at::Tensor> input_grads<double>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, bool);

template <typename T>
RightFactor<T> prepare_right(const at::Tensor& b) {
  const at::Tensor bc = b.contiguous();
  const int64_t K = bc.size(0), N = bc.size(1);
  RightFactor<T> f{bc, bc.data_ptr<T>(), K, N, 0};
  if (!std::is_same_v<T, float> || !use_brgemm().load() || K * N < kPackMinElements) return f;
  // column blocks of kPackBlock, each [K, cols] contiguous, one after another
  at::Tensor packed = at::empty({K * N}, bc.options());
  T* dst = packed.data_ptr<T>();
  const T* src = bc.data_ptr<T>();
  for (int64_t n0 = 0; n0 < N; n0 += kPackBlock) {
    const int64_t cols = std::min(kPackBlock, N - n0);
    for (int64_t k = 0; k < K; ++k) std::copy(src + k * N + n0, src + k * N + n0 + cols, dst + k * cols);
    dst += K * cols;
  }
  return {packed, packed.data_ptr<T>(), K, N, kPackBlock};
}

template <typename T>
void gemm_right(int64_t M, const T* a, int64_t lda, const RightFactor<T>& b, T* out, int64_t ldo,
                bool accumulate) {
  const int64_t K = b.K, N = b.N;
  if (b.block == 0) {
    gemm_nn<T>(M, N, K, a, lda, b.data, N, out, ldo, accumulate);
    return;
  }
#ifdef CPUBLAS_BRGEMM_F32F32F32
  if constexpr (std::is_same_v<T, float>) {
    for_each_block((N + b.block - 1) / b.block, M * N * K, [&](int64_t j) {
      const int64_t n0 = j * b.block, cols = std::min(b.block, N - n0);
      at::native::cpublas::brgemm(M, cols, K, lda, cols, ldo, accumulate, a, b.data + n0 * K,
                                  out + n0, false);
    });
  }
#endif
}

template RightFactor<float> prepare_right<float>(const at::Tensor&);
template RightFactor<double> prepare_right<double>(const at::Tensor&);
template void gemm_right<float>(int64_t, const float*, int64_t, const RightFactor<float>&, float*,
                                int64_t, bool);
template void gemm_right<double>(int64_t, const double*, int64_t, const RightFactor<double>&,
                                 double*, int64_t, bool);

template <typename T>
void project_rows(const T* x, int64_t M, int64_t K, const T* wt, int64_t N, const T* bias, T* out) {
  if (bias != nullptr) {  // every row starts as the bias; the product adds to it
    at::parallel_for(0, M, row_grain(N), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) std::copy(bias, bias + N, out + m * N);
    });
  }
  gemm_nn<T>(M, N, K, x, K, wt, N, out, N, bias != nullptr);
}

template void project_rows<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                  const float*, float*);
template void project_rows<double>(const double*, int64_t, int64_t, const double*, int64_t,
                                   const double*, double*);

std::string set_step_gemm(const std::string& kernel) {
  TORCH_CHECK(kernel == "brgemm" || kernel == "aten",
              "step_gemm must be 'brgemm' or 'aten', got '", kernel, "'");
  const std::string before = use_brgemm().load() ? "brgemm" : "aten";
  TORCH_CHECK(kernel == "aten" || brgemm_available(),
              "step_gemm 'brgemm': this torch build or CPU has no oneDNN micro-kernel");
  use_brgemm().store(kernel == "brgemm");
  return before;
}

}  // namespace lstmkit
