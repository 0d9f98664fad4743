// The LSTM family's forward over a whole layer (see lstm.h): the input projection GEMMs, a
// few steps ahead of the loop, and per step the recurrent GEMM(s) and one fused pass over the
// gates.
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>

#include "lstm.h"

namespace lstmkit {

// --------------------------------------------------------------------------- forward
// Pointers for one time step; row b of a [B, n] matrix starts at ptr + b * n.
template <typename T>
struct FwdStep {
  T* pre;                      // [B, G*H] input and recurrent products in, activations out
  const T* gh;                 // [B, R*H] recurrent product under layer norm, else null
  const T* c_in;               // [B, H] c_{t-1}
  T* c_out;                    // [B, H] c_t (state slot)
  const T* h_in;               // [B, P] h_{t-1}
  T* h_out;                    // [B, P] h_t (without projection; else the tail pass writes it)
  const T* a_in;               // [B, F*H] FGR gate state
  T* a_out;
  T* craw;                     // [B, H] c before clip and zoneout, or null
  T* shc;                      // [B, H] sigma_h(c_t), saved
  T* hh;                       // [B, H] o * sigma_h(c) before the projection, or null
  T* y;                        // [B, P] output of this step
  const T *zh, *zc, *za;       // zoneout masks of this step, or null
  const int64_t* lengths;      // [B] or null
  int64_t t;
  const T* w_ch;               // [(G-1)*H] diagonal peepholes, or null
  const T* ones;               // [H] of 1: a missing gate
  // layer norm (null without): gains, and what backward needs
  const T *ln_hh_w, *ln_c_w, *ln_c_b;  // [R*H], [H], [H]
  T* lnh_n;                    // [B, R*H] normalised recurrent product
  T* lnh_rstd;                 // [B, R]
  T* lnc_n;                    // [B, H] normalised c
  T* lnc_rstd;                 // [B]
};

template <typename T>
LSTMKIT_INLINE void lstm_fwd_row(const LstmConfig& cf, const FwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H, G = cf.G;
  T* pre = s.pre + b * G * H;
  auto blk = [&](int64_t j) { return pre + j * H; };
  const T* __restrict cp = s.c_in + b * H;
  T* __restrict c = s.c_out + b * H;

  // pre-activations: the step's GEMMs added the recurrent (and feedback) products to the first
  // blocks already, except under layer norm: each recurrent block is normalised on its own
  // (its shift is in the input side)
  if (cf.ln_hh) {
    const T* __restrict gh = s.gh + b * cf.R * H;
    T* __restrict n = s.lnh_n + b * cf.R * H;
    for (int64_t j = 0; j < cf.R; ++j) {
      s.lnh_rstd[b * cf.R + j] = normalize_row(gh + j * H, n + j * H, H);
    }
    for (int64_t k = 0; k < cf.R * H; ++k) pre[k] += n[k] * s.ln_hh_w[k];
  }
  // diagonal peepholes: i and f read p * c_{t-1}
  if (cf.peephole == 1) {
    for (int64_t j : {cf.idx_i, cf.idx_f}) {
      if (j < 0) continue;
      T* __restrict p = blk(j);
      const T* __restrict w = s.w_ch + j * H;
      for (int64_t k = 0; k < H; ++k) p[k] += w[k] * cp[k];
    }
  }
  for (int64_t j = 0; j < G - 1; ++j)
    if (j != cf.idx_o) activate_inplace<T>(cf.act_g, blk(j), H);
  activate_inplace<T>(cf.act_c, blk(G - 1), H);

  // c_t = f * c_{t-1} + i * g
  const T* __restrict i = cf.idx_i >= 0 ? blk(cf.idx_i) : s.ones;
  const T* __restrict g = blk(G - 1);
  if (cf.coupled) {
    for (int64_t k = 0; k < H; ++k) c[k] = (T(1) - i[k]) * cp[k] + i[k] * g[k];
  } else {
    const T* __restrict f = cf.idx_f >= 0 ? blk(cf.idx_f) : s.ones;
    for (int64_t k = 0; k < H; ++k) c[k] = f[k] * cp[k] + i[k] * g[k];
  }
  if (cf.need_craw) std::copy(c, c + H, s.craw + b * H);
  if (cf.clip > 0) {
    const T lim = static_cast<T>(cf.clip);
    for (int64_t k = 0; k < H; ++k) c[k] = std::min(std::max(c[k], -lim), lim);
  }

  // o reads p * c_t; h = o * sigma_h(c_t)
  const T* __restrict o = s.ones;
  if (cf.idx_o >= 0) {
    T* __restrict po = blk(cf.idx_o);
    if (cf.peephole == 1) {
      const T* __restrict w = s.w_ch + cf.idx_o * H;
      for (int64_t k = 0; k < H; ++k) po[k] += w[k] * c[k];
    }
    activate_inplace<T>(cf.act_g, po, H);
    o = po;
  }
  T* __restrict shc = s.shc + b * H;
  if (cf.ln_c) {  // sigma_h reads layer_norm(c_t); the state stays c_t
    T* __restrict n = s.lnc_n + b * H;
    s.lnc_rstd[b] = normalize_row(c, n, H);
    for (int64_t k = 0; k < H; ++k) shc[k] = n[k] * s.ln_c_w[k] + s.ln_c_b[k];
    activate_inplace<T>(cf.act_h, shc, H);
  } else {
    activate_to<T>(cf.act_h, c, shc, H);
  }
  T* __restrict h = cf.proj ? s.hh + b * H : s.h_out + b * cf.P;
  for (int64_t k = 0; k < H; ++k) h[k] = o[k] * shc[k];

  // the new states: zoneout mixes in the old ones; past a sequence's end nothing changes
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {
    std::copy(cp, cp + H, c);
  } else if (s.zc) {
    const T* __restrict m = s.zc + b * H;
    for (int64_t k = 0; k < H; ++k) c[k] = lerp(c[k], cp[k], m[k]);
  }
  if (cf.fgr_slots) {
    const int64_t n = cf.F * H;
    const T* __restrict a_in = s.a_in + b * n;
    T* __restrict a_out = s.a_out + b * n;
    if (!valid) {
      std::copy(a_in, a_in + n, a_out);
    } else if (s.za) {
      const T* __restrict m = s.za + b * n;
      for (int64_t k = 0; k < n; ++k) a_out[k] = lerp(pre[k], a_in[k], m[k]);
    } else {
      std::copy(pre, pre + n, a_out);
    }
  }
  if (!cf.proj) {
    const T* __restrict hp = s.h_in + b * H;
    T* __restrict y = s.y + b * H;
    if (!valid) {
      std::copy(hp, hp + H, h);
      std::fill(y, y + H, T(0));
      return;
    }
    if (s.zh) {
      const T* __restrict m = s.zh + b * H;
      for (int64_t k = 0; k < H; ++k) h[k] = lerp(h[k], hp[k], m[k]);
    }
    std::copy(h, h + H, y);
  }
}

// After the projection GEMM: h_t from h_new = W_hr hh, with zoneout and lengths.
template <typename T>
LSTMKIT_INLINE void lstm_fwd_proj_row(const LstmConfig& cf, const FwdStep<T>& s, const T* h_new,
                                      int64_t b) {
  const int64_t P = cf.P;
  const T* __restrict hn = h_new + b * P;
  const T* __restrict hp = s.h_in + b * P;
  T* __restrict h = s.h_out + b * P;
  T* __restrict y = s.y + b * P;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {
    std::copy(hp, hp + P, h);
    std::fill(y, y + P, T(0));
    return;
  }
  if (s.zh) {
    const T* __restrict m = s.zh + b * P;
    for (int64_t k = 0; k < P; ++k) h[k] = lerp(hn[k], hp[k], m[k]);
  } else {
    std::copy(hn, hn + P, h);
  }
  std::copy(h, h + P, y);
}

LSTMKIT_CLONES void lstm_fwd_rows(const LstmConfig& cf, const FwdStep<float>& s, int64_t b0,
                                  int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_fwd_row<float>(cf, s, b);
}
LSTMKIT_CLONES void lstm_fwd_rows(const LstmConfig& cf, const FwdStep<double>& s, int64_t b0,
                                  int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_fwd_row<double>(cf, s, b);
}
LSTMKIT_CLONES void lstm_fwd_proj_rows(const LstmConfig& cf, const FwdStep<float>& s,
                                       const float* h_new, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_fwd_proj_row<float>(cf, s, h_new, b);
}
LSTMKIT_CLONES void lstm_fwd_proj_rows(const LstmConfig& cf, const FwdStep<double>& s,
                                       const double* h_new, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_fwd_proj_row<double>(cf, s, h_new, b);
}

template <typename T>
static std::vector<at::Tensor> lstm_forward_impl(
    const LstmConfig& cf, const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& bias, const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr,
    const OptTensor& ln_hh_w, const OptTensor& ln_c_w, const OptTensor& ln_c_b,
    const at::Tensor& h0, const at::Tensor& c0, const OptTensor& a0, const OptTensor& lengths,
    const OptTensor& zh, const OptTensor& zc, const OptTensor& za, const OptTensor& rmask) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H, P = cf.P, GH = cf.G * cf.H, FH = cf.F * cf.H;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  // input projection of every step, [T*B, D] x [D, G*H] (+ the folded biases), into a
  // recycled buffer, a few steps ahead of the loop (StepProjection); with layer norm Python
  // projected already (x is [T, B, G*H]) and the loop works on a copy
  at::Tensor gates = workspace({T_, B, GH}, opts);
  std::optional<StepProjection<T>> projection;
  if (cf.projected) {
    gates.copy_(x);
  } else {
    projection.emplace(x, *w_ih, bias, gates, cf.reverse);
  }

  at::Tensor hs = workspace({T_ + 1, B, P}, opts);  // h slots
  at::Tensor cs = workspace({T_ + 1, B, H}, opts);  // c slots
  // FGR gate-state slots, or only a0 in slot 0 when a_t is read from the activations
  const int64_t a_slots = cf.fgr_slots ? T_ + 1 : 1;
  at::Tensor as = cf.fgr ? workspace({a_slots, B, FH}, opts) : at::empty({0}, opts);
  at::Tensor shc = workspace({T_, B, H}, opts);
  at::Tensor craw = cf.need_craw ? workspace({T_, B, H}, opts) : at::empty({0}, opts);
  at::Tensor hh = cf.proj ? workspace({T_, B, H}, opts) : at::empty({0}, opts);
  at::Tensor y = at::empty({T_, B, P}, opts);
  at::Tensor lnh_n = cf.ln_hh ? workspace({T_, B, cf.R * H}, opts) : at::empty({0}, opts);
  at::Tensor lnh_rstd = cf.ln_hh ? workspace({T_, B, cf.R}, opts) : at::empty({0}, opts);
  at::Tensor lnc_n = cf.ln_c ? workspace({T_, B, H}, opts) : at::empty({0}, opts);
  at::Tensor lnc_rstd = cf.ln_c ? workspace({T_, B}, opts) : at::empty({0}, opts);
  const int64_t RH = cf.R * H, Rin = cf.Rin;
  at::Tensor h_new_buf = cf.proj ? at::empty({B, P}, opts) : at::Tensor();
  at::Tensor gh_buf = cf.ln_hh ? at::empty({B, RH}, opts) : at::Tensor();
  at::Tensor rin_masked = rmask.has_value() ? at::empty({B, Rin}, opts) : at::Tensor();
  // the step GEMMs read weights as [in, out]
  const RightFactor<T> w_hh_t = prepare_right<T>(w_hh.t());                  // [Rin, R*H]
  // [F*H, F*H]
  const RightFactor<T> w_gg_t = cf.fgr ? prepare_right<T>(w_gg->t()) : RightFactor<T>{};
  const at::Tensor w_hr_t = cf.proj ? w_hr->t().contiguous() : at::Tensor();  // [H, P]
  const at::Tensor ones = at::ones({H}, opts);
  hs[slots.first()].copy_(h0);
  cs[slots.first()].copy_(c0);
  if (cf.fgr) as[cf.fgr_slots ? slots.first() : 0].copy_(*a0);

  const Steps<T> gates_t = steps_of<T>(gates), hs_t = steps_of<T>(hs), cs_t = steps_of<T>(cs);
  const Steps<T> as_t = steps_of<T>(as), shc_t = steps_of<T>(shc), craw_t = steps_of<T>(craw);
  const Steps<T> hh_t = steps_of<T>(hh), y_t = steps_of<T>(y);
  const Steps<T> zh_t = steps_of<T>(zh), zc_t = steps_of<T>(zc), za_t = steps_of<T>(za);
  const Steps<T> lnh_n_t = steps_of<T>(lnh_n), lnh_rstd_t = steps_of<T>(lnh_rstd);
  const Steps<T> lnc_n_t = steps_of<T>(lnc_n), lnc_rstd_t = steps_of<T>(lnc_rstd);
  FwdStep<T> s{};
  s.lengths = ptr_or_null<int64_t>(lengths);
  s.w_ch = ptr_or_null<T>(w_ch);
  s.ones = ones.data_ptr<T>();
  s.ln_hh_w = ptr_or_null<T>(ln_hh_w);
  s.ln_c_w = ptr_or_null<T>(ln_c_w);
  s.ln_c_b = ptr_or_null<T>(ln_c_b);
  const int64_t grain = row_grain(GH);

  for (int64_t step = 0; step < T_; ++step) {
    const int64_t t = slots.time(step), in = slots.in(t), out = slots.out(t);
    if (projection) projection->before(step);
    // the recurrent GEMM, [B, Rin] x [Rin, R*H], reads h_{t-1} (or c_{t-1}), maybe masked,
    // and adds into the step's gate rows (into its own buffer under layer norm)
    const T* rin = masked_input<T>((cf.peephole == 2 ? cs_t : hs_t)[in], rmask, rin_masked, B * Rin);
    if (cf.ln_hh) {
      gemm_right<T>(B, rin, Rin, w_hh_t, gh_buf.data_ptr<T>(), RH, false);
    } else {
      gemm_right<T>(B, rin, Rin, w_hh_t, gates_t[t], GH, true);
    }
    // FGR: the gate state's feedback, [B, F*H] x [F*H, F*H], into the first F blocks; a_{t-1}
    // is a0, its slot, or the first F blocks of the previous step's activations
    if (cf.fgr) {
      const bool own = cf.fgr_slots || step == 0;  // a slot: [B, F*H] rows, else [B, G*H]
      const T* a_prev = own ? as_t[cf.fgr_slots ? in : 0] : gates_t[slots.time(step - 1)];
      gemm_right<T>(B, a_prev, own ? FH : GH, w_gg_t, gates_t[t], GH, true);
    }

    s.pre = gates_t[t];
    s.gh = cf.ln_hh ? gh_buf.data_ptr<T>() : nullptr;
    s.c_in = cs_t[in];
    s.c_out = cs_t[out];
    s.h_in = hs_t[in];
    s.h_out = hs_t[out];
    s.a_in = cf.fgr_slots ? as_t[in] : nullptr;
    s.a_out = cf.fgr_slots ? as_t[out] : nullptr;
    s.craw = craw_t[t];
    s.shc = shc_t[t];
    s.hh = hh_t[t];
    s.y = y_t[t];
    s.zh = zh_t[t];
    s.zc = zc_t[t];
    s.za = za_t[t];
    s.lnh_n = lnh_n_t[t];
    s.lnh_rstd = lnh_rstd_t[t];
    s.lnc_n = lnc_n_t[t];
    s.lnc_rstd = lnc_rstd_t[t];
    s.t = t;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { lstm_fwd_rows(cf, s, b0, b1); });
    if (cf.proj) {  // h_t = W_hr (o * sigma_h(c)): [B, H] x [H, P]
      T* hn = h_new_buf.data_ptr<T>();
      gemm_nn<T>(B, P, H, hh_t[t], H, w_hr_t.data_ptr<T>(), P, hn, P, false);
      at::parallel_for(0, B, row_grain(P),
                       [&](int64_t b0, int64_t b1) { lstm_fwd_proj_rows(cf, s, hn, b0, b1); });
    }
  }
  const int64_t last = slots.last();
  at::Tensor a_n = at::empty({0}, opts);
  if (cf.fgr)
    a_n = cf.fgr_slots ? as[last].clone() : gates[slots.time(T_ - 1)].narrow(1, 0, FH).clone();
  return {y,  hs[last].clone(), cs[last].clone(), a_n, gates, hs, cs, shc, craw, hh, as,
          lnh_n, lnh_rstd, lnc_n, lnc_rstd};
}

// Returns [y, h_n, c_n, a_n, then what backward needs: acts, h slots, c slots, sigma_h(c),
// c before clip/zoneout, o * sigma_h(c) before the projection, gate-state slots, layer-norm
// normalised recurrent product and its 1/std, normalised c and its 1/std]. Absent pieces are
// empty tensors. Without w_ih, x is the input projection already ([T, B, G*H]).
std::vector<at::Tensor> lstm_forward(
    const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh, const OptTensor& bias,
    const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr, const OptTensor& ln_hh_w,
    const OptTensor& ln_c_w, const OptTensor& ln_c_b, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& a0, const OptTensor& lengths, const OptTensor& zh, const OptTensor& zc,
    const OptTensor& za, const OptTensor& rmask, const std::vector<int64_t>& flags, double clip) {
  const at::Tensor xc = x.contiguous(), w_hhc = w_hh.contiguous();
  const at::Tensor h0c = h0.contiguous(), c0c = c0.contiguous();
  const OptTensor w_ihc = contig(w_ih), w_hrc = contig(w_hr), zcc = contig(zc);
  const OptTensor ln_hh_wc = contig(ln_hh_w), ln_c_wc = contig(ln_c_w);
  const LstmConfig cf =
      make_config(xc, w_ihc, w_hhc, h0c, c0c, w_hrc, zcc, ln_hh_wc, ln_c_wc, za, lengths, flags,
                  clip);
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_forward", [&] {
    out = lstm_forward_impl<scalar_t>(
        cf, xc, w_ihc, w_hhc, contig(bias), contig(w_ch), contig(w_gg), w_hrc, ln_hh_wc, ln_c_wc,
        contig(ln_c_b), h0c, c0c, contig(a0), contig(lengths), contig(zh), zcc, contig(za),
        contig(rmask));
  });
  return out;
}

}  // namespace lstmkit
