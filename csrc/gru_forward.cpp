// The GRU's forward over a whole layer (see gru.h).
#include <ATen/ops/empty.h>

#include "gru.h"

namespace lstmkit {

// --------------------------------------------------------------------------- forward
template <typename T>
struct GruFwdStep {
  T* gates;                    // [B, 3H] input projection in, activations r, z, n out
  const T* gh;                 // [B, 3H] (reset-after) or [B, 2H] / [B, H] (reset-before)
  const T* b_hn;               // [H] or null
  const T* h_in;               // [B, H] h_{t-1}
  T* h_out;                    // [B, H] h_t
  const T* rmask;              // [B, H] or null
  T* aux;                      // [B, H] saved: U_n h_in + b_hn (after) or r * h_in (before)
  T* y;                        // [B, H]
  const T* zh;                 // [B, H] zoneout mask of this step or null
  const int64_t* lengths;
  int64_t t;
  const T* ln_w;               // [3H] layer-norm gains, or null
  T* ln_n;                     // [B, 3H] normalised recurrent products (saved)
  T* ln_rstd;                  // [B, 3]
};

// Reset-after, whole step; reset-before, part 1 (r, z and r * h_in).
template <typename T>
LSTMKIT_INLINE void gru_fwd_row_rz(const GruConfig& cf, const GruFwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H;
  T* __restrict g = s.gates + b * 3 * H;
  const int64_t ghn = cf.reset_after ? 3 * H : 2 * H;
  const T* __restrict gh = s.gh + b * ghn;
  const T* __restrict n = s.ln_n ? s.ln_n + b * 3 * H : nullptr;
  if (cf.ln) {  // each block normalised on its own; the gates read n * gain
    for (int64_t j = 0; j < ghn / H; ++j) {
      s.ln_rstd[b * 3 + j] = normalize_row(gh + j * H, s.ln_n + b * 3 * H + j * H, H);
    }
    for (int64_t k = 0; k < 2 * H; ++k) g[k] = sigmoid(g[k] + n[k] * s.ln_w[k]);
  } else {
    for (int64_t k = 0; k < 2 * H; ++k) g[k] = sigmoid(g[k] + gh[k]);
  }
  const T* __restrict r = g;
  T* __restrict aux = s.aux + b * H;
  if (cf.reset_after) {  // aux = U_n h_in (normalised and scaled) + b_hn, which r multiplies
    if (cf.ln) {
      for (int64_t k = 0; k < H; ++k) aux[k] = n[2 * H + k] * s.ln_w[2 * H + k];
    } else {
      std::copy(gh + 2 * H, gh + 3 * H, aux);
    }
    if (s.b_hn) {
      for (int64_t k = 0; k < H; ++k) aux[k] += s.b_hn[k];
    }
    T* __restrict gn = g + 2 * H;
    for (int64_t k = 0; k < H; ++k) gn[k] = tanh_approx(gn[k] + r[k] * aux[k]);
  } else {  // aux = r * h_in, which U_n reads next
    const T* __restrict hp = s.h_in + b * H;
    if (s.rmask) {
      const T* __restrict m = s.rmask + b * H;
      for (int64_t k = 0; k < H; ++k) aux[k] = r[k] * (hp[k] * m[k]);
    } else {
      for (int64_t k = 0; k < H; ++k) aux[k] = r[k] * hp[k];
    }
  }
}

// n (reset-before: from U_n (r * h_in) in gh) and the new state, zoneout and lengths.
template <typename T>
LSTMKIT_INLINE void gru_fwd_row_h(const GruConfig& cf, const GruFwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H;
  T* __restrict g = s.gates + b * 3 * H;
  T* __restrict n = g + 2 * H;
  const T* __restrict z = g + H;
  if (!cf.reset_after) {
    const T* __restrict un = s.gh + b * H;
    if (cf.ln) {
      T* __restrict ln = s.ln_n + b * 3 * H + 2 * H;
      s.ln_rstd[b * 3 + 2] = normalize_row(un, ln, H);
      const T* __restrict w = s.ln_w + 2 * H;
      for (int64_t k = 0; k < H; ++k) n[k] = tanh_approx(n[k] + ln[k] * w[k]);
    } else {
      for (int64_t k = 0; k < H; ++k) n[k] = tanh_approx(n[k] + un[k]);
    }
  }
  const T* __restrict hp = s.h_in + b * H;
  T* __restrict h = s.h_out + b * H;
  T* __restrict y = s.y + b * H;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {
    std::copy(hp, hp + H, h);
    std::fill(y, y + H, T(0));
    return;
  }
  for (int64_t k = 0; k < H; ++k) h[k] = (T(1) - z[k]) * n[k] + z[k] * hp[k];
  if (s.zh) {
    const T* __restrict m = s.zh + b * H;
    for (int64_t k = 0; k < H; ++k) h[k] = lerp(h[k], hp[k], m[k]);
  }
  std::copy(h, h + H, y);
}

LSTMKIT_CLONES void gru_fwd_rows(const GruConfig& cf, const GruFwdStep<float>& s, int64_t b0,
                                 int64_t b1, int part) {
  for (int64_t b = b0; b < b1; ++b) {
    if (part != 2) gru_fwd_row_rz<float>(cf, s, b);
    if (part != 1) gru_fwd_row_h<float>(cf, s, b);
  }
}
LSTMKIT_CLONES void gru_fwd_rows(const GruConfig& cf, const GruFwdStep<double>& s, int64_t b0,
                                 int64_t b1, int part) {
  for (int64_t b = b0; b < b1; ++b) {
    if (part != 2) gru_fwd_row_rz<double>(cf, s, b);
    if (part != 1) gru_fwd_row_h<double>(cf, s, b);
  }
}

template <typename T>
static std::vector<at::Tensor> gru_forward_impl(const GruConfig& cf, const at::Tensor& x,
                                                const OptTensor& w_ih, const at::Tensor& w_hh,
                                                const OptTensor& bias, const OptTensor& b_hn,
                                                const OptTensor& ln_w, const at::Tensor& h0,
                                                const OptTensor& lengths, const OptTensor& zh,
                                                const OptTensor& rmask) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  // input projection of every step, [T*B, D] x [D, 3H], a few steps ahead of the loop
  at::Tensor gates = workspace({T_, B, 3 * H}, opts);
  std::optional<StepProjection<T>> projection;
  if (cf.projected) {
    gates.copy_(x);
  } else {
    projection.emplace(x, *w_ih, bias, gates, cf.reverse);
  }
  at::Tensor hs = workspace({T_ + 1, B, H}, opts);
  at::Tensor aux = workspace({T_, B, H}, opts);
  at::Tensor ln_n = cf.ln ? workspace({T_, B, 3 * H}, opts) : at::empty({0}, opts);
  at::Tensor ln_rstd = cf.ln ? workspace({T_, B, 3}, opts) : at::empty({0}, opts);
  at::Tensor y = at::empty({T_, B, H}, opts);
  at::Tensor rin_masked = rmask.has_value() ? at::empty({B, H}, opts) : at::Tensor();
  const int64_t n_gh = cf.reset_after ? 3 * H : 2 * H;  // U_rz (and U_n) read h_in at once
  at::Tensor gh_buf = at::empty({B, n_gh}, opts);
  at::Tensor un_buf = cf.reset_after ? at::Tensor() : at::empty({B, H}, opts);
  const at::Tensor w_hh_t = w_hh.t().contiguous();  // [H, 3H]: U_r, U_z, U_n column blocks
  const T* w_t = w_hh_t.data_ptr<T>();
  const RightFactor<T> w_gh = prepare_right<T>(w_hh_t.narrow(1, 0, n_gh));  // [H, n_gh]
  hs[slots.first()].copy_(h0);
  const int64_t grain = row_grain(3 * H);
  const Steps<T> gates_t = steps_of<T>(gates), hs_t = steps_of<T>(hs), aux_t = steps_of<T>(aux);
  const Steps<T> y_t = steps_of<T>(y), zh_t = steps_of<T>(zh);
  const Steps<T> ln_n_t = steps_of<T>(ln_n), ln_rstd_t = steps_of<T>(ln_rstd);
  GruFwdStep<T> s{};
  s.ln_w = ptr_or_null<T>(ln_w);
  s.b_hn = ptr_or_null<T>(b_hn);
  s.rmask = ptr_or_null<T>(rmask);
  s.lengths = ptr_or_null<int64_t>(lengths);

  for (int64_t step = 0; step < T_; ++step) {
    const int64_t t = slots.time(step), in = slots.in(t), out = slots.out(t);
    if (projection) projection->before(step);
    // [B, H] x [H, 3H] (reset-after) or [H, 2H] (reset-before: U_rz only)
    const T* rin = masked_input<T>(hs_t[in], rmask, rin_masked, B * H);
    gemm_right<T>(B, rin, H, w_gh, gh_buf.data_ptr<T>(), n_gh, false);

    s.gates = gates_t[t];
    s.gh = gh_buf.data_ptr<T>();
    s.h_in = hs_t[in];
    s.h_out = hs_t[out];
    s.aux = aux_t[t];
    s.y = y_t[t];
    s.zh = zh_t[t];
    s.ln_n = ln_n_t[t];
    s.ln_rstd = ln_rstd_t[t];
    s.t = t;
    if (cf.reset_after) {
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { gru_fwd_rows(cf, s, b0, b1, 0); });
    } else {
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { gru_fwd_rows(cf, s, b0, b1, 1); });
      // U_n (r h_in), [B, H] x [H, H]
      gemm_nn<T>(B, H, H, aux_t[t], H, w_t + 2 * H, 3 * H, un_buf.data_ptr<T>(), H, false);
      s.gh = un_buf.data_ptr<T>();
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { gru_fwd_rows(cf, s, b0, b1, 2); });
    }
  }
  return {y, hs[slots.last()].clone(), gates, hs, aux, ln_n, ln_rstd};
}

// Returns [y, h_n, then what backward needs: activations r, z, n; h slots; aux; layer-norm
// normalised products and their 1/std]. Without w_ih, x is the input projection already.
std::vector<at::Tensor> gru_forward(const at::Tensor& x, const OptTensor& w_ih,
                                    const at::Tensor& w_hh, const OptTensor& bias,
                                    const OptTensor& b_hn, const OptTensor& ln_w,
                                    const at::Tensor& h0, const OptTensor& lengths,
                                    const OptTensor& zh, const OptTensor& rmask,
                                    const std::vector<int64_t>& flags) {
  const at::Tensor xc = x.contiguous(), h0c = h0.contiguous();
  const OptTensor w_ihc = contig(w_ih), ln_wc = contig(ln_w);
  const GruConfig cf = make_gru_config(xc, h0c, w_ihc, ln_wc, flags);
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_forward", [&] {
    out = gru_forward_impl<scalar_t>(cf, xc, w_ihc, w_hh.contiguous(), contig(bias),
                                     contig(b_hn), ln_wc, h0c, contig(lengths), contig(zh),
                                     contig(rmask));
  });
  return out;
}

}  // namespace lstmkit
