// The LSTM family's backward over a whole layer (see lstm.h): per step the transposed GEMMs
// and one fused pass; then every weight gradient as one GEMM or reduction over all steps.
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/ones.h>

#include "lstm.h"

namespace lstmkit {

// --------------------------------------------------------------------------- backward
template <typename T>
struct BwdStep {
  const T* acts;               // [B, G*H] activations of step t
  T* dpre;                     // [B, G*H] gradient of the pre-activations (saved for GEMMs)
  const T* c_in;               // [B, H] c_{t-1}
  const T* craw;               // [B, H] c before clip, or null
  const T* shc;                // [B, H] sigma_h(c_t)
  T* dH;                       // [B, P] carried dL/dh (no projection: updated here)
  T* dC;                       // [B, H] carried dL/dc, in: of c_t, out: of c_{t-1}
  T* dA;                       // [B, F*H] carried dL/da (FGR)
  const T* dy;                 // [B, P] upstream gradient of this step's output
  T* dhh;                      // [B, H] dL/d(o * sigma_h(c)): from the GEMM, or written here
  T* dc;                       // [B, H] scratch: dL/dc_t through this step
  const T *zh, *zc, *za;
  const int64_t* lengths;
  int64_t t;
  const T* w_ch;
  const T* ones;
  // layer norm (null without)
  const T *ln_hh_w, *ln_c_w;   // [R*H], [H]
  const T *lnh_n, *lnh_rstd;   // [B, R*H], [B, R]
  const T *lnc_n, *lnc_rstd;   // [B, H], [B]
  T* dgh;                      // [B, R*H] dL/d(recurrent product), before its layer norm
  T* dcout;                    // [B, H] dL/d(layer_norm(c)), saved for the gains' gradient
};

template <typename T>
LSTMKIT_INLINE void lstm_bwd_row(const LstmConfig& cf, const BwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H, G = cf.G, GH = G * H;
  T* dpre = s.dpre + b * GH;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {  // the step left every state as it was: gradients pass straight through
    std::fill(dpre, dpre + GH, T(0));
    if (cf.ln_hh) std::fill(s.dgh + b * cf.R * H, s.dgh + (b + 1) * cf.R * H, T(0));
    if (cf.ln_c) std::fill(s.dcout + b * H, s.dcout + (b + 1) * H, T(0));
    return;
  }
  const T* acts = s.acts + b * GH;
  auto blk = [&](int64_t j) { return acts + j * H; };
  auto dblk = [&](int64_t j) { return dpre + j * H; };
  T* __restrict dhh = s.dhh + b * H;
  T* __restrict dc = s.dc + b * H;
  T* __restrict dC = s.dC + b * H;
  const T* __restrict cp = s.c_in + b * H;
  const T* __restrict shc = s.shc + b * H;

  // through zoneout: the new state got (1 - m) of the gradient, the old one m
  if (!cf.proj) {
    T* __restrict dH = s.dH + b * H;
    const T* __restrict dy = s.dy + b * H;
    if (s.zh) {
      const T* __restrict m = s.zh + b * H;
      for (int64_t k = 0; k < H; ++k) {
        const T gk = dH[k] + dy[k];
        dhh[k] = (T(1) - m[k]) * gk;
        dH[k] = m[k] * gk;
      }
    } else {
      for (int64_t k = 0; k < H; ++k) {
        dhh[k] = dH[k] + dy[k];
        dH[k] = T(0);
      }
    }
  }
  if (s.zc) {
    const T* __restrict m = s.zc + b * H;
    for (int64_t k = 0; k < H; ++k) {
      dc[k] = (T(1) - m[k]) * dC[k];
      dC[k] = m[k] * dC[k];
    }
  } else {
    for (int64_t k = 0; k < H; ++k) {
      dc[k] = dC[k];
      dC[k] = T(0);
    }
  }
  // FGR: the gate state is the activations of the first F blocks; its gradient seeds them
  if (cf.fgr) {
    const int64_t n = cf.F * H;
    T* __restrict dA = s.dA + b * n;
    if (s.za) {
      const T* __restrict m = s.za + b * n;
      for (int64_t k = 0; k < n; ++k) {
        dpre[k] = (T(1) - m[k]) * dA[k];
        dA[k] = m[k] * dA[k];
      }
    } else {
      std::copy(dA, dA + n, dpre);
      std::fill(dA, dA + n, T(0));
    }
  }
  // dpre_j = (seed_j + direct_j) * sigma'(a_j), seed from the FGR gate state or 0
  auto finish = [&](int64_t j, int64_t act, auto direct) {
    const T* __restrict a = blk(j);
    T* dp = dblk(j);
    const bool seeded = cf.fgr && j < cf.F;
    with_act(act, [&](auto A) {
      if (seeded)
        for (int64_t k = 0; k < H; ++k) dp[k] = (dp[k] + direct(k)) * activate_grad<T>(A, a[k]);
      else
        for (int64_t k = 0; k < H; ++k) dp[k] = direct(k) * activate_grad<T>(A, a[k]);
    });
  };

  // h = o * sigma_h(c)
  const T* __restrict o = cf.idx_o >= 0 ? blk(cf.idx_o) : s.ones;
  if (cf.ln_c) {  // through sigma_h and the layer norm of c
    T* __restrict dco = s.dcout + b * H;
    with_act(cf.act_h, [&](auto A) {
      for (int64_t k = 0; k < H; ++k) dco[k] = dhh[k] * o[k] * activate_grad<T>(A, shc[k]);
    });
    normalize_row_backward(dco, s.ln_c_w, s.lnc_n + b * H, s.lnc_rstd[b], dc, H, true);
  } else {
    with_act(cf.act_h, [&](auto A) {
      for (int64_t k = 0; k < H; ++k) dc[k] += dhh[k] * o[k] * activate_grad<T>(A, shc[k]);
    });
  }
  if (cf.idx_o >= 0) {
    finish(cf.idx_o, cf.act_g, [&](int64_t k) { return dhh[k] * shc[k]; });
    if (cf.peephole == 1) {
      const T* __restrict w = s.w_ch + cf.idx_o * H;
      const T* __restrict dpo = dblk(cf.idx_o);
      for (int64_t k = 0; k < H; ++k) dc[k] += dpo[k] * w[k];
    }
  }
  if (cf.clip > 0) {  // as torch.clamp's backward: gradient where lo <= c <= hi
    const T lim = static_cast<T>(cf.clip);
    const T* __restrict cr = s.craw + b * H;
    for (int64_t k = 0; k < H; ++k) dc[k] = (cr[k] >= -lim && cr[k] <= lim) ? dc[k] : T(0);
  }

  // c = f * c_{t-1} + i * g
  const T* __restrict i = cf.idx_i >= 0 ? blk(cf.idx_i) : s.ones;
  const T* __restrict g = blk(G - 1);
  finish(G - 1, cf.act_c, [&](int64_t k) { return dc[k] * i[k]; });
  if (cf.coupled) {  // f = 1 - i: f's gradient goes to i with a minus sign
    if (cf.idx_i >= 0) finish(cf.idx_i, cf.act_g, [&](int64_t k) { return dc[k] * (g[k] - cp[k]); });
    for (int64_t k = 0; k < H; ++k) dC[k] += dc[k] * (T(1) - i[k]);
  } else {
    const T* __restrict f = cf.idx_f >= 0 ? blk(cf.idx_f) : s.ones;
    if (cf.idx_i >= 0) finish(cf.idx_i, cf.act_g, [&](int64_t k) { return dc[k] * g[k]; });
    if (cf.idx_f >= 0) finish(cf.idx_f, cf.act_g, [&](int64_t k) { return dc[k] * cp[k]; });
    for (int64_t k = 0; k < H; ++k) dC[k] += dc[k] * f[k];
  }
  if (cf.peephole == 1) {  // i and f read p * c_{t-1}
    for (int64_t j : {cf.idx_i, cf.idx_f}) {
      if (j < 0) continue;
      const T* __restrict w = s.w_ch + j * H;
      const T* __restrict dp = dblk(j);
      for (int64_t k = 0; k < H; ++k) dC[k] += dp[k] * w[k];
    }
  }
  if (cf.ln_hh) {  // the recurrent blocks' gradient, back through their layer norms
    const int64_t RH = cf.R * H;
    for (int64_t j = 0; j < cf.R; ++j) {
      normalize_row_backward<T>(dblk(j), s.ln_hh_w + j * H, s.lnh_n + b * RH + j * H,
                                s.lnh_rstd[b * cf.R + j], s.dgh + b * RH + j * H, H, false);
    }
  }
}

// With a projection: dL/dh_new for this step (saved for dW_hr), before the GEMM with W_hr.
template <typename T>
LSTMKIT_INLINE void lstm_bwd_proj_row(const LstmConfig& cf, const BwdStep<T>& s, T* dh_new,
                                      int64_t b) {
  const int64_t P = cf.P;
  T* __restrict dn = dh_new + b * P;
  T* __restrict dH = s.dH + b * P;
  const T* __restrict dy = s.dy + b * P;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {
    std::fill(dn, dn + P, T(0));
    return;
  }
  if (s.zh) {
    const T* __restrict m = s.zh + b * P;
    for (int64_t k = 0; k < P; ++k) {
      const T gk = dH[k] + dy[k];
      dn[k] = (T(1) - m[k]) * gk;
      dH[k] = m[k] * gk;
    }
  } else {
    for (int64_t k = 0; k < P; ++k) {
      dn[k] = dH[k] + dy[k];
      dH[k] = T(0);
    }
  }
}

LSTMKIT_CLONES void lstm_bwd_rows(const LstmConfig& cf, const BwdStep<float>& s, int64_t b0,
                                  int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_bwd_row<float>(cf, s, b);
}
LSTMKIT_CLONES void lstm_bwd_rows(const LstmConfig& cf, const BwdStep<double>& s, int64_t b0,
                                  int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_bwd_row<double>(cf, s, b);
}
LSTMKIT_CLONES void lstm_bwd_proj_rows(const LstmConfig& cf, const BwdStep<float>& s,
                                       float* dh_new, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_bwd_proj_row<float>(cf, s, dh_new, b);
}
LSTMKIT_CLONES void lstm_bwd_proj_rows(const LstmConfig& cf, const BwdStep<double>& s,
                                       double* dh_new, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) lstm_bwd_proj_row<double>(cf, s, dh_new, b);
}

template <typename T>
static std::vector<at::Tensor> lstm_backward_impl(
    const LstmConfig& cf, const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n,
    const OptTensor& da_n, const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh,
    bool has_bias, const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr,
    const OptTensor& ln_hh_w, const OptTensor& ln_c_w, const OptTensor& lengths,
    const OptTensor& zh, const OptTensor& zc, const OptTensor& za, const OptTensor& rmask,
    const at::Tensor& acts, const at::Tensor& hs, const at::Tensor& cs, const at::Tensor& shc,
    const at::Tensor& craw, const at::Tensor& hh, const at::Tensor& as, const at::Tensor& lnh_n,
    const at::Tensor& lnh_rstd, const at::Tensor& lnc_n, const at::Tensor& lnc_rstd) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H, P = cf.P, GH = cf.G * cf.H, FH = cf.F * cf.H;
  const int64_t RH = cf.R * cf.H;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  // dpre is the input projection's gradient: handed out as dx when Python projected
  at::Tensor dpre = cf.projected ? at::empty({T_, B, GH}, opts) : workspace({T_, B, GH}, opts);
  at::Tensor dgh = cf.ln_hh ? workspace({T_, B, RH}, opts) : at::empty({0}, opts);
  at::Tensor dcout = cf.ln_c ? workspace({T_, B, H}, opts) : at::empty({0}, opts);
  at::Tensor dH = dh_n.clone(), dC = dc_n.clone();
  at::Tensor dA = cf.fgr ? da_n->clone() : at::empty({0}, opts);
  at::Tensor dhh_buf = at::empty({B, H}, opts), dc = at::empty({B, H}, opts);
  at::Tensor drin_buf = rmask.has_value() ? at::empty({B, cf.Rin}, opts) : at::Tensor();
  at::Tensor dh_new = cf.proj ? workspace({T_, B, P}, opts) : at::empty({0}, opts);
  const at::Tensor ones = at::ones({H}, opts);
  at::Tensor& d_rin_target = cf.peephole == 2 ? dC : dH;  // what the recurrence read
  const int64_t grain = row_grain(GH);
  const RightFactor<T> w_hh_r = prepare_right<T>(w_hh);  // [R*H, Rin], read by every step
  const RightFactor<T> w_gg_r = cf.fgr ? prepare_right<T>(*w_gg) : RightFactor<T>{};  // [FH, FH]

  const Steps<T> acts_t = steps_of<T>(acts), dpre_t = steps_of<T>(dpre), cs_t = steps_of<T>(cs);
  const Steps<T> craw_t = steps_of<T>(craw), shc_t = steps_of<T>(shc), dy_t = steps_of<T>(dy);
  const Steps<T> dh_new_t = steps_of<T>(dh_new), dgh_t = steps_of<T>(dgh);
  const Steps<T> dcout_t = steps_of<T>(dcout), lnh_n_t = steps_of<T>(lnh_n);
  const Steps<T> lnh_rstd_t = steps_of<T>(lnh_rstd), lnc_n_t = steps_of<T>(lnc_n);
  const Steps<T> lnc_rstd_t = steps_of<T>(lnc_rstd);
  const Steps<T> zh_t = steps_of<T>(zh), zc_t = steps_of<T>(zc), za_t = steps_of<T>(za);
  BwdStep<T> s{};
  s.dH = dH.data_ptr<T>();
  s.dC = dC.data_ptr<T>();
  s.dA = cf.fgr ? dA.data_ptr<T>() : nullptr;
  s.dc = dc.data_ptr<T>();
  s.lengths = ptr_or_null<int64_t>(lengths);
  s.w_ch = ptr_or_null<T>(w_ch);
  s.ones = ones.data_ptr<T>();
  s.ln_hh_w = ptr_or_null<T>(ln_hh_w);
  s.ln_c_w = ptr_or_null<T>(ln_c_w);

  for (int64_t step = T_ - 1; step >= 0; --step) {
    const int64_t t = slots.time(step);
    s.acts = acts_t[t];
    s.dpre = dpre_t[t];
    s.c_in = cs_t[slots.in(t)];
    s.craw = cf.clip > 0 ? craw_t[t] : nullptr;
    s.shc = shc_t[t];
    s.dy = dy_t[t];
    s.dhh = dhh_buf.data_ptr<T>();
    s.zh = zh_t[t];
    s.zc = zc_t[t];
    s.za = za_t[t];
    s.lnh_n = lnh_n_t[t];
    s.lnh_rstd = lnh_rstd_t[t];
    s.lnc_n = lnc_n_t[t];
    s.lnc_rstd = lnc_rstd_t[t];
    s.dgh = dgh_t[t];
    s.dcout = dcout_t[t];
    s.t = t;
    if (cf.proj) {
      T* dn = dh_new_t[t];
      at::parallel_for(0, B, row_grain(P),
                       [&](int64_t b0, int64_t b1) { lstm_bwd_proj_rows(cf, s, dn, b0, b1); });
      gemm_nn<T>(B, H, P, dn, P, w_hr->data_ptr<T>(), H, s.dhh, H, false);  // [B, P] x [P, H]
    }
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { lstm_bwd_rows(cf, s, b0, b1); });

    // what the recurrence read gets dpre W_hh, [B, R*H] x [R*H, Rin], added in place
    const T* dgh_step = cf.ln_hh ? dgh_t[t] : dpre_t[t];
    const int64_t ld_dgh = cf.ln_hh ? RH : GH;
    if (rmask.has_value()) {
      gemm_right<T>(B, dgh_step, ld_dgh, w_hh_r, drin_buf.data_ptr<T>(), cf.Rin, false);
      d_rin_target.addcmul_(drin_buf, *rmask);
    } else {
      gemm_right<T>(B, dgh_step, ld_dgh, w_hh_r, d_rin_target.data_ptr<T>(), cf.Rin, true);
    }
    if (cf.fgr)  // the gate state's feedback: [B, F*H] x [F*H, F*H]
      gemm_right<T>(B, dpre_t[t], GH, w_gg_r, s.dA, FH, true);
  }

  // weight gradients: one GEMM (or reduction) each over all steps
  const at::Tensor dpre2 = dpre.view({T_ * B, GH});
  at::Tensor dx = dpre, dw_ih = at::empty({0}, opts), dbias = at::empty({0}, opts);
  if (!cf.projected) {
    std::tie(dx, dw_ih, dbias) = input_grads<T>(dpre2, x, *w_ih, has_bias);
  } else if (has_bias) {
    dbias = dpre2.sum(0);
  }
  at::Tensor rin_all = slots.entering(cf.peephole == 2 ? cs : hs);
  if (rmask.has_value()) rin_all = rin_all.mul(*rmask);
  const at::Tensor dgh2 = cf.ln_hh ? dgh.view({T_ * B, RH}) : dpre2.narrow(1, 0, RH);
  at::Tensor dw_hh = mm_tn(dgh2, rin_all.reshape({T_ * B, cf.Rin}));
  at::Tensor dw_hr = cf.proj ? mm_tn(dh_new.view({T_ * B, P}), hh.view({T_ * B, H}))
                             : at::empty({0}, opts);
  at::Tensor dw_gg = at::empty({0}, opts);
  if (cf.fgr_slots) {
    dw_gg = mm_tn(dpre2.narrow(1, 0, FH), slots.entering(as).reshape({T_ * B, FH}));
  } else if (cf.fgr) {  // a_{t-1}: a0 at the first step, then the previous step's activations
    const int64_t first = slots.time(0);
    dw_gg = mm_tn(dpre[first].narrow(1, 0, FH), as[0]);
    if (T_ > 1) {
      const int64_t later = cf.reverse ? 0 : 1, earlier = cf.reverse ? 1 : 0;
      const at::Tensor a_prev = acts.narrow(0, earlier, T_ - 1).narrow(2, 0, FH);
      const at::Tensor d_later = dpre.narrow(0, later, T_ - 1).narrow(2, 0, FH);
      dw_gg.add_(mm_tn(d_later.reshape({(T_ - 1) * B, FH}), a_prev.reshape({(T_ - 1) * B, FH})));
    }
  }
  at::Tensor dw_ch = at::empty({0}, opts);
  if (cf.peephole == 1) {
    // i and f read c_{t-1}; o reads c_t (after the clip, before zoneout)
    const at::Tensor c_prev = slots.entering(cs);
    at::Tensor c_new = slots.leaving(cs);
    if (cf.need_craw) c_new = cf.clip > 0 ? craw.clamp(-cf.clip, cf.clip) : craw;
    c_new = c_new.reshape({T_ * B, H});
    const at::Tensor c_prev2 = c_prev.reshape({T_ * B, H});
    dw_ch = at::empty({(cf.G - 1) * H}, opts);
    for (int64_t j = 0; j < cf.G - 1; ++j)
      col_dot(dpre2.narrow(1, j * H, H), j == cf.idx_o ? c_new : c_prev2, dw_ch.narrow(0, j * H, H));
  }
  at::Tensor dln_hh_w = at::empty({0}, opts), dln_c_w = at::empty({0}, opts);
  at::Tensor dln_c_b = at::empty({0}, opts);
  if (cf.ln_hh) {  // gain of each recurrent unit: sum of dpre * its normalised input
    dln_hh_w = at::empty({RH}, opts);
    col_dot(dpre2.narrow(1, 0, RH), lnh_n.view({T_ * B, RH}), dln_hh_w);
  }
  if (cf.ln_c) {
    dln_c_w = at::empty({H}, opts);
    dln_c_b = at::empty({H}, opts);
    col_dot(dcout.view({T_ * B, H}), lnc_n.view({T_ * B, H}), dln_c_w);
    col_dot(dcout.view({T_ * B, H}), std::nullopt, dln_c_b);
  }
  return {dx, dw_ih, dw_hh, dbias, dw_ch, dw_gg, dw_hr, dln_hh_w, dln_c_w, dln_c_b, dH, dC, dA};
}

// Returns [dx, dW_ih, dW_hh, dbias, dW_ch, dW_gg, dW_hr, d ln_hh_w, d ln_c_w, d ln_c_b, dh0,
// dc0, da0] (empty when absent); dx is the input projection's gradient without w_ih.
std::vector<at::Tensor> lstm_backward(
    const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n, const OptTensor& da_n,
    const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh, bool has_bias,
    const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr, const OptTensor& ln_hh_w,
    const OptTensor& ln_c_w, const OptTensor& lengths, const OptTensor& zh, const OptTensor& zc,
    const OptTensor& za, const OptTensor& rmask, const std::vector<at::Tensor>& saved,
    const std::vector<int64_t>& flags, double clip) {
  TORCH_CHECK(saved.size() == 11, "lstm engine: expected 11 saved tensors, got ", saved.size());
  const at::Tensor xc = x.contiguous(), w_hhc = w_hh.contiguous();
  const OptTensor w_ihc = contig(w_ih), w_hrc = contig(w_hr), zcc = contig(zc);
  const OptTensor ln_hh_wc = contig(ln_hh_w), ln_c_wc = contig(ln_c_w);
  const LstmConfig cf =
      make_config(xc, w_ihc, w_hhc, dh_n, dc_n, w_hrc, zcc, ln_hh_wc, ln_c_wc, za, lengths, flags,
                  clip);
  std::vector<at::Tensor> s;
  for (const auto& t : saved) s.push_back(t.contiguous());
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_backward", [&] {
    out = lstm_backward_impl<scalar_t>(
        cf, dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(), contig(da_n), xc, w_ihc,
        w_hhc, has_bias, contig(w_ch), contig(w_gg), w_hrc, ln_hh_wc, ln_c_wc, contig(lengths),
        contig(zh), zcc, contig(za), contig(rmask), s[0], s[1], s[2], s[3], s[4], s[5], s[6],
        s[7], s[8], s[9], s[10]);
  });
  return out;
}

}  // namespace lstmkit
