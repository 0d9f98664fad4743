// One ConvLSTM step's gate math (lstmkit/cells/convlstm.py, ConvLSTMCellSpec.step) in one
// vectorised pass, forward and backward. The convolutions stay ATen's; this replaces the ten or
// so elementwise ATen ops over [B, 4C, *S] tensors that follow them.
//
// Layout: per batch row b, gate k's block of the pre-activations [B, 4C, *S] (gate order
// i, f, g, o) is the contiguous slice of N = C * prod(S) values at b * 4N + k * N, and the
// states [B, C, *S] are rows of N. So the pass runs over columns n < N like the LSTM engine
// over H. The peepholes arrive as [3, N] rows (i, f, o): channel peepholes ([3C], one weight
// per channel) are repeated over their channel's prod(S) pixels first.
//
// Work is split into column chunks; a task owns whole chunks and walks b = 0..B-1 inside each,
// so the peephole gradient (a sum over the batch, then over pixels for channel peepholes) is
// written without atomics, in an order that does not depend on the number of threads.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "common.h"

namespace lstmkit {

namespace {
// Columns per chunk: the [3, chunk] peephole weights and gradient stay in L1 over the batch.
constexpr int64_t kChunk = 512;

template <typename T>
struct GateArgs {
  int64_t B, N;
  const T* w;     // [3, N] peepholes i, f, o, or null
  // forward
  const T* pre;   // [B, 4N]
  const T* c_prev;  // [B, N]
  T* h;           // [B, N]
  T* c;           // [B, N]
  T* acts;        // [B, 4N] sigma(i), sigma(f), tanh(g), sigma(o); null: nothing saved
  T* tanh_c;      // [B, N]
  // backward (acts, tanh_c, c_prev and c_t as saved by forward)
  const T* c_t;   // [B, N]
  const T* dh;    // [B, N]
  const T* dc;    // [B, N] dL/dc_t from outside the step
  T* dpre;        // [B, 4N]
  T* dc_prev;     // [B, N]
  T* dw;          // [3, N] peephole gradient summed over the batch (zeroed), or null
};

template <typename T, bool kPeep, bool kSave>
LSTMKIT_INLINE void fwd_chunk(const GateArgs<T>& a, int64_t b, int64_t k0, int64_t n) {
  const int64_t N = a.N;
  const T* __restrict xi = a.pre + b * 4 * N + k0;
  const T* __restrict xf = xi + N;
  const T* __restrict xg = xi + 2 * N;
  const T* __restrict xo = xi + 3 * N;
  const T* __restrict cp = a.c_prev + b * N + k0;
  T* __restrict h = a.h + b * N + k0;
  T* __restrict c = a.c + b * N + k0;
  const T* __restrict wi = kPeep ? a.w + k0 : nullptr;
  const T* __restrict wf = kPeep ? a.w + N + k0 : nullptr;
  const T* __restrict wo = kPeep ? a.w + 2 * N + k0 : nullptr;
  T* __restrict si = kSave ? a.acts + b * 4 * N + k0 : nullptr;
  T* __restrict sf = kSave ? si + N : nullptr;
  T* __restrict sg = kSave ? si + 2 * N : nullptr;
  T* __restrict so = kSave ? si + 3 * N : nullptr;
  T* __restrict tc = kSave ? a.tanh_c + b * N + k0 : nullptr;
#pragma GCC ivdep  // the streams never overlap: no run-time alias checks (GCC allows 10)
  for (int64_t k = 0; k < n; ++k) {
    T pi = xi[k], pf = xf[k], po = xo[k];
    if constexpr (kPeep) {  // i and f read V ⊙ c_{t-1}
      pi += wi[k] * cp[k];
      pf += wf[k] * cp[k];
    }
    const T gi = sigmoid(pi), gf = sigmoid(pf), gg = tanh_approx(xg[k]);
    const T ck = gf * cp[k] + gi * gg;
    if constexpr (kPeep) po += wo[k] * ck;  // o reads V_o ⊙ c_t
    const T go = sigmoid(po), tck = tanh_approx(ck);
    c[k] = ck;
    h[k] = go * tck;
    if constexpr (kSave) {
      si[k] = gi;
      sf[k] = gf;
      sg[k] = gg;
      so[k] = go;
      tc[k] = tck;
    }
  }
}

template <typename T, bool kPeep>
LSTMKIT_INLINE void bwd_chunk(const GateArgs<T>& a, int64_t b, int64_t k0, int64_t n) {
  const int64_t N = a.N;
  const T* __restrict si = a.acts + b * 4 * N + k0;
  const T* __restrict sf = si + N;
  const T* __restrict sg = si + 2 * N;
  const T* __restrict so = si + 3 * N;
  const T* __restrict tc = a.tanh_c + b * N + k0;
  const T* __restrict cp = a.c_prev + b * N + k0;
  const T* __restrict c = a.c_t + b * N + k0;
  const T* __restrict dh = a.dh + b * N + k0;
  const T* __restrict dc = a.dc + b * N + k0;
  T* __restrict di = a.dpre + b * 4 * N + k0;
  T* __restrict df = di + N;
  T* __restrict dg = di + 2 * N;
  T* __restrict dO = di + 3 * N;
  T* __restrict dcp = a.dc_prev + b * N + k0;
  const T* __restrict wi = kPeep ? a.w + k0 : nullptr;
  const T* __restrict wf = kPeep ? a.w + N + k0 : nullptr;
  const T* __restrict wo = kPeep ? a.w + 2 * N + k0 : nullptr;
  T* __restrict vi = kPeep ? a.dw + k0 : nullptr;
  T* __restrict vf = kPeep ? a.dw + N + k0 : nullptr;
  T* __restrict vo = kPeep ? a.dw + 2 * N + k0 : nullptr;
#pragma GCC ivdep
  for (int64_t k = 0; k < n; ++k) {
    const T gi = si[k], gf = sf[k], gg = sg[k], go = so[k], tck = tc[k];
    // h = sigma(o) tanh(c): sigmoid and tanh backward from their outputs, as ATen's
    const T d_o = dh[k] * tck * (T(1) - go) * go;
    T dck = dc[k] + dh[k] * go * (T(1) - tck * tck);
    if constexpr (kPeep) dck += d_o * wo[k];
    // c = sigma(f) c_{t-1} + sigma(i) tanh(g)
    const T d_i = dck * gg * (T(1) - gi) * gi;
    const T d_f = dck * cp[k] * (T(1) - gf) * gf;
    const T d_g = dck * gi * (T(1) - gg * gg);
    T dcpk = dck * gf;
    if constexpr (kPeep) {
      dcpk += d_i * wi[k] + d_f * wf[k];
      // the peephole gradient over the batch, b in order
      vi[k] += d_i * cp[k];
      vf[k] += d_f * cp[k];
      vo[k] += d_o * c[k];
    }
    di[k] = d_i;
    df[k] = d_f;
    dg[k] = d_g;
    dO[k] = d_o;
    dcp[k] = dcpk;
  }
}

// Chunks [c0, c1) of every row: the multi-versioned entry points (AVX-512, AVX2, baseline).
template <typename T>
LSTMKIT_INLINE void fwd_chunks_impl(const GateArgs<T>& a, int64_t c0, int64_t c1) {
  for (int64_t ch = c0; ch < c1; ++ch) {
    const int64_t k0 = ch * kChunk, n = std::min(kChunk, a.N - k0);
    for (int64_t b = 0; b < a.B; ++b) {
      if (a.w && a.acts) fwd_chunk<T, true, true>(a, b, k0, n);
      else if (a.w) fwd_chunk<T, true, false>(a, b, k0, n);
      else if (a.acts) fwd_chunk<T, false, true>(a, b, k0, n);
      else fwd_chunk<T, false, false>(a, b, k0, n);
    }
  }
}

template <typename T>
LSTMKIT_INLINE void bwd_chunks_impl(const GateArgs<T>& a, int64_t c0, int64_t c1) {
  for (int64_t ch = c0; ch < c1; ++ch) {
    const int64_t k0 = ch * kChunk, n = std::min(kChunk, a.N - k0);
    for (int64_t b = 0; b < a.B; ++b) {
      if (a.w) bwd_chunk<T, true>(a, b, k0, n);
      else bwd_chunk<T, false>(a, b, k0, n);
    }
  }
}

LSTMKIT_CLONES void fwd_chunks(const GateArgs<float>& a, int64_t c0, int64_t c1) {
  fwd_chunks_impl(a, c0, c1);
}
LSTMKIT_CLONES void fwd_chunks(const GateArgs<double>& a, int64_t c0, int64_t c1) {
  fwd_chunks_impl(a, c0, c1);
}
LSTMKIT_CLONES void bwd_chunks(const GateArgs<float>& a, int64_t c0, int64_t c1) {
  bwd_chunks_impl(a, c0, c1);
}
LSTMKIT_CLONES void bwd_chunks(const GateArgs<double>& a, int64_t c0, int64_t c1) {
  bwd_chunks_impl(a, c0, c1);
}

// Shapes: pre [B, 4C, *S], a state [B, C, *S]; returns N = C * prod(S).
int64_t check_shapes(const char* op, const at::Tensor& pre, const at::Tensor& state) {
  TORCH_CHECK(pre.dim() >= 3 && state.dim() == pre.dim(), op,
              ": expected pre [B, 4C, *S] and a state [B, C, *S], got ", pre.sizes(), " and ",
              state.sizes());
  TORCH_CHECK(pre.size(0) == state.size(0) && pre.size(1) == 4 * state.size(1) &&
                  pre.sizes().slice(2) == state.sizes().slice(2),
              op, ": pre ", pre.sizes(), " does not fit a state ", state.sizes());
  TORCH_CHECK(pre.scalar_type() == state.scalar_type(), op, ": dtypes differ");
  return state.size(0) == 0 ? 0 : state.numel() / state.size(0);
}

// The peepholes as [3, N] rows: [3C] repeated over each channel's pixels, or [3C, *S] as is.
at::Tensor peephole_rows(const at::Tensor& w, const at::Tensor& state) {
  const int64_t C = state.size(1), N = state.size(0) == 0 ? 0 : state.numel() / state.size(0);
  const int64_t pixels = C == 0 ? 0 : N / C;
  TORCH_CHECK(w.scalar_type() == state.scalar_type(), "convlstm_gates: peephole dtype differs");
  if (w.dim() == 1) {
    TORCH_CHECK(w.size(0) == 3 * C, "convlstm_gates: channel peepholes must be [3C] = [",
                3 * C, "], got ", w.sizes());
    return w.view({3 * C, 1}).expand({3 * C, pixels}).contiguous().view({3, N});
  }
  TORCH_CHECK(w.dim() == state.dim() - 1 && w.size(0) == 3 * C &&
                  w.sizes().slice(1) == state.sizes().slice(2),
              "convlstm_gates: spatial peepholes must be [3C, *S] for a state ", state.sizes(),
              ", got ", w.sizes());
  return w.contiguous().view({3, N});
}

// Chunks per task of at::parallel_for: enough work per task to pay for the fork.
int64_t chunk_grain(int64_t B) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(B * kChunk, 1));
}
}  // namespace

// -> h [B, C, *S], c [B, C, *S], and when ``save``: the activations [B, 4C, *S] and tanh(c_t)
// [B, C, *S] that backward reads (else empty tensors).
std::vector<at::Tensor> convlstm_gates_forward(const at::Tensor& pre, const at::Tensor& c_prev,
                                               const OptTensor& w_ch, bool save) {
  const int64_t N = check_shapes("convlstm_gates_forward", pre, c_prev);
  const at::Tensor prec = pre.contiguous(), cpc = c_prev.contiguous();
  const at::Tensor w = given(w_ch) ? peephole_rows(*w_ch, cpc) : at::Tensor();
  const auto opts = cpc.options();
  at::Tensor h = at::empty(cpc.sizes(), opts), c = at::empty(cpc.sizes(), opts);
  // saved-only buffers: recycled across calls (training touches warm memory)
  at::Tensor acts = save ? workspace(prec.sizes(), opts) : at::empty({0}, opts);
  at::Tensor tanh_c = save ? workspace(cpc.sizes(), opts) : at::empty({0}, opts);
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "convlstm_gates_forward", [&] {
    GateArgs<scalar_t> a{};
    a.B = cpc.size(0);
    a.N = N;
    a.w = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    a.pre = prec.data_ptr<scalar_t>();
    a.c_prev = cpc.data_ptr<scalar_t>();
    a.h = h.data_ptr<scalar_t>();
    a.c = c.data_ptr<scalar_t>();
    a.acts = save ? acts.data_ptr<scalar_t>() : nullptr;
    a.tanh_c = save ? tanh_c.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, chunks, chunk_grain(a.B),
                     [&](int64_t c0, int64_t c1) { fwd_chunks(a, c0, c1); });
  });
  return {h, c, acts, tanh_c};
}

// -> d pre [B, 4C, *S], d c_prev [B, C, *S], d w_ch (w_ch's shape; empty without peepholes).
std::vector<at::Tensor> convlstm_gates_backward(const at::Tensor& dh, const at::Tensor& dc,
                                                const at::Tensor& acts, const at::Tensor& tanh_c,
                                                const at::Tensor& c_prev, const at::Tensor& c,
                                                const OptTensor& w_ch) {
  const int64_t N = check_shapes("convlstm_gates_backward", acts, c_prev);
  for (const at::Tensor* t : {&dh, &dc, &tanh_c, &c}) {
    TORCH_CHECK(t->sizes() == c_prev.sizes() && t->scalar_type() == c_prev.scalar_type(),
                "convlstm_gates_backward: expected ", c_prev.sizes(), ", got ", t->sizes());
  }
  const at::Tensor cpc = c_prev.contiguous(), cc = c.contiguous(), dhc = dh.contiguous();
  const at::Tensor dcc = dc.contiguous(), actsc = acts.contiguous(), tcc = tanh_c.contiguous();
  const bool peep = given(w_ch);
  const at::Tensor w = peep ? peephole_rows(*w_ch, cpc) : at::Tensor();
  const auto opts = cpc.options();
  at::Tensor dpre = at::empty(actsc.sizes(), opts), dc_prev = at::empty(cpc.sizes(), opts);
  at::Tensor dw_rows = peep ? at::zeros({3, N}, opts) : at::Tensor();
  const int64_t B = cpc.size(0), chunks = (N + kChunk - 1) / kChunk;
  // spatial peepholes: the batch sum is the gradient; channel ones sum their pixels below
  at::Tensor dw = !peep                ? at::empty({0}, opts)
                  : w_ch->dim() == 1 ? at::empty(w_ch->sizes(), opts)
                                     : dw_rows.view(w_ch->sizes());
  AT_DISPATCH_FLOATING_TYPES(c_prev.scalar_type(), "convlstm_gates_backward", [&] {
    GateArgs<scalar_t> a{};
    a.B = B;
    a.N = N;
    a.w = peep ? w.data_ptr<scalar_t>() : nullptr;
    a.acts = actsc.data_ptr<scalar_t>();
    a.tanh_c = tcc.data_ptr<scalar_t>();
    a.c_prev = cpc.data_ptr<scalar_t>();
    a.c_t = cc.data_ptr<scalar_t>();
    a.dh = dhc.data_ptr<scalar_t>();
    a.dc = dcc.data_ptr<scalar_t>();
    a.dpre = dpre.data_ptr<scalar_t>();
    a.dc_prev = dc_prev.data_ptr<scalar_t>();
    a.dw = peep ? dw_rows.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, chunks, chunk_grain(B),
                     [&](int64_t c0, int64_t c1) { bwd_chunks(a, c0, c1); });
    if (peep && w_ch->dim() == 1) {  // channel peepholes: sum each channel's pixels, in double
      const int64_t rows = w_ch->size(0), pixels = rows == 0 ? 0 : 3 * N / rows;
      const scalar_t* src = dw_rows.data_ptr<scalar_t>();
      scalar_t* out = dw.data_ptr<scalar_t>();
      at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(pixels, 1)),
                       [&](int64_t r0, int64_t r1) {
                         for (int64_t r = r0; r < r1; ++r) {
                           double sum = 0;
                           for (int64_t p = 0; p < pixels; ++p) sum += double(src[r * pixels + p]);
                           out[r] = static_cast<scalar_t>(sum);
                         }
                       });
    }
  });
  return {dpre, dc_prev, dw};
}

}  // namespace lstmkit
