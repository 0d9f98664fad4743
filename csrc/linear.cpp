// mm_tn: a weight gradient's a^T b (see common.h).
#include <atomic>

#include <ATen/Context.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>

#include "common.h"

namespace lstmkit {

namespace {
// below this many multiply-adds oneDNN's call overhead outweighs its speed: at::mm there
constexpr int64_t kOneDnnMinMacs = int64_t(1) << 21;
std::atomic<bool> conv_failed{false};
}  // namespace

// a^T b on the micro-kernel where float32 step GEMMs use it (gemm.cpp). Otherwise, for
// float32, as the weight gradient of a 1x1 convolution over N positions, channels last (the
// memory of a [N, M] matrix *is* a channels-last [1, M, N, 1] image), which torch runs on
// oneDNN; for float64, or if that fails, at::mm on the transposed matrix.
at::Tensor mm_tn(const at::Tensor& a, const at::Tensor& b) {
  if (OptTensor fast = mm_tn_brgemm(a, b)) return *fast;
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

}  // namespace lstmkit
