// Weight gradients of per-unit (diagonal) parameters: peepholes and layer-norm gains/shifts.
// out[k] = sum over rows r of a[r, k] * b[r, k] (b null: of a[r, k]), over all T*B rows.
// A task owns 64 columns and walks the rows in order, accumulating in double: the result does
// not depend on the number of threads.
#include "common.h"

namespace lstmkit {

namespace {
constexpr int64_t kCols = 64;

template <typename T>
LSTMKIT_INLINE void col_dot_task(const T* a, int64_t lda, const T* b, int64_t ldb, int64_t rows,
                                 int64_t cols, T* out, int64_t task) {
  const int64_t k0 = task * kCols, n = std::min(kCols, cols - k0);
  double acc[kCols] = {0};
  for (int64_t r = 0; r < rows; ++r) {
    const T* __restrict ar = a + r * lda + k0;
    if (b != nullptr) {
      const T* __restrict br = b + r * ldb + k0;
      for (int64_t k = 0; k < n; ++k) acc[k] += double(ar[k]) * double(br[k]);
    } else {
      for (int64_t k = 0; k < n; ++k) acc[k] += double(ar[k]);
    }
  }
  for (int64_t k = 0; k < n; ++k) out[k0 + k] = static_cast<T>(acc[k]);
}

LSTMKIT_CLONES void col_dot_tasks(const float* a, int64_t lda, const float* b, int64_t ldb,
                                  int64_t rows, int64_t cols, float* out, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) col_dot_task(a, lda, b, ldb, rows, cols, out, t);
}
LSTMKIT_CLONES void col_dot_tasks(const double* a, int64_t lda, const double* b, int64_t ldb,
                                  int64_t rows, int64_t cols, double* out, int64_t t0,
                                  int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) col_dot_task(a, lda, b, ldb, rows, cols, out, t);
}
}  // namespace

void col_dot(const at::Tensor& a, const OptTensor& b, const at::Tensor& out) {
  TORCH_CHECK(a.dim() == 2 && a.stride(1) == 1 && out.is_contiguous(), "col_dot: bad layout");
  const int64_t rows = a.size(0), cols = a.size(1), tasks = (cols + kCols - 1) / kCols;
  const int64_t ldb = b.has_value() ? b->stride(0) : 0;
  TORCH_CHECK(!b.has_value() || (b->stride(1) == 1 && b->size(0) == rows && b->size(1) == cols),
              "col_dot: bad layout of b");
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "col_dot", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.has_value() ? b->data_ptr<scalar_t>() : nullptr;
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      col_dot_tasks(pa, a.stride(0), pb, ldb, rows, cols, po, t0, t1);
    });
  });
}

}  // namespace lstmkit
