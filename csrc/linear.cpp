// The GEMM every engine file uses for "input times weight^T" (see common.h).
#include <atomic>

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>

#include "common.h"

namespace lstmkit {

namespace {
constexpr int64_t kOneDnnMinMacs = int64_t(1) << 21;

using LinearPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&,
                                   c10::string_view, c10::List<std::optional<at::Scalar>>,
                                   std::optional<c10::string_view>);

// The oneDNN op, or null when this torch lacks it (or it once failed: then never again).
std::atomic<bool> onednn_failed{false};

const c10::TypedOperatorHandle<LinearPointwise>* onednn_linear() {
  static const std::optional<c10::TypedOperatorHandle<LinearPointwise>> handle =
      []() -> std::optional<c10::TypedOperatorHandle<LinearPointwise>> {
    try {
      auto op = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
      if (!op.has_value()) return std::nullopt;
      return op->typed<LinearPointwise>();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }();
  return handle.has_value() ? &*handle : nullptr;
}
}  // namespace

at::Tensor mm_wt(const at::Tensor& a, const at::Tensor& w, const OptTensor& bias,
                  at::Tensor* buffer) {
  // oneDNN's per-call overhead (~8 us) beats its speed below ~2M multiply-adds: MKL there
  const bool large = a.size(0) * w.size(0) * w.size(1) >= kOneDnnMinMacs;
  if (a.scalar_type() == at::kFloat && large && !onednn_failed.load() &&
      at::globalContext().userEnabledMkldnn()) {
    if (const auto* op = onednn_linear()) {
      try {
        return op->call(a, w, bias, "none", c10::List<std::optional<at::Scalar>>(),
                        std::nullopt);
      } catch (const std::exception&) {
        onednn_failed.store(true);  // a build whose op refuses these tensors: use MKL
      }
    }
  }
  if (bias.has_value() && bias->defined()) return at::addmm(*bias, a, w.t());
  if (buffer != nullptr && buffer->defined()) return at::mm_out(*buffer, a, w.t());
  return at::mm(a, w.t());
}

}  // namespace lstmkit

namespace lstmkit {

namespace {
std::atomic<bool> conv_failed{false};
}

// a^T b as the weight gradient of a 1x1 convolution over N positions, channels last: the
// memory of a [N, M] matrix *is* a channels-last [1, M, N, 1] image. For float32 torch runs
// this on oneDNN, which on CPUs where MKL takes a narrower code path (AMD) is 1.5-2x faster
// than at::mm on the transposed matrix; otherwise (or for float64) it is that at::mm.
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
