// Large per-call buffers (saved activations, state slots, gradient buffers) come from a small
// cache of freed blocks. A fresh buffer costs one page fault per 4 KiB page on first touch
// (about 17 ms for the 52 MB gate buffer of T=200, B=64, H=256 here), every call, because the
// C library hands large blocks back to the kernel on free. Blocks that come back are kept (up
// to a limit) for the next call of the same shape: a training loop then touches warm memory.
// New blocks are 2 MiB aligned and advised as transparent huge pages where Linux allows.
#include <cstdlib>
#include <map>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include "common.h"

namespace lstmkit {

namespace {
constexpr size_t kMinBytes = size_t(1) << 20;   // smaller requests go to at::empty
constexpr size_t kAlign = size_t(2) << 20;      // 2 MiB: a huge page

size_t limit_bytes() {
  static const size_t limit = [] {
    const char* env = std::getenv("LSTMKIT_WORKSPACE_MB");
    const long mb = env ? std::strtol(env, nullptr, 10) : 1024;
    return size_t(mb > 0 ? mb : 0) << 20;
  }();
  return limit;
}

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> blocks;  // free blocks by size
  size_t bytes = 0;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may die after static teardown
  return *c;
}

void* take(size_t bytes) {
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.blocks.find(bytes);
    if (it != c.blocks.end()) {
      void* p = it->second;
      c.blocks.erase(it);
      c.bytes -= bytes;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, bytes);
  TORCH_CHECK(p != nullptr, "lstmkit: out of memory allocating ", bytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
#endif
  return p;
}

void give_back(void* p, size_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.bytes + bytes <= limit_bytes()) {
      c.blocks.emplace(bytes, p);
      c.bytes += bytes;
      return;
    }
  }
  std::free(p);
}
}  // namespace

at::Tensor workspace(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t need = size_t(numel) * at::elementSize(at::typeMetaToScalarType(opts.dtype()));
  if (need < kMinBytes) return at::empty(sizes, opts);
  const size_t bytes = (need + kAlign - 1) / kAlign * kAlign;
  void* p = take(bytes);
  return at::from_blob(p, sizes, [bytes](void* q) { give_back(q, bytes); }, opts);
}

void empty_workspace_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& [bytes, p] : c.blocks) std::free(p);
  c.blocks.clear();
  c.bytes = 0;
}

}  // namespace lstmkit
