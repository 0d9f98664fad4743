// The GRU's backward over a whole layer (see gru.h).
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>

#include "gru.h"

namespace lstmkit {

// --------------------------------------------------------------------------- backward
template <typename T>
struct GruBwdStep {
  const T* acts;               // [B, 3H] r, z, n
  const T* aux;                // [B, H] U_n h_in + b_hn (after) or r * h_in (before)
  const T* h_in;               // [B, H] h_{t-1}
  const T* rmask;              // [B, H] or null
  T* dgx;                      // [B, 3H] dL/d(input projection)
  T* dgh_n;                    // [B, H] dL/d(U_n h_in + b_hn) (reset-after only; for r and z
                               // the recurrent side's gradient is dgx's own)
  T* dH;                       // [B, H] carried dL/dh, updated in place
  T* dhin;                     // [B, H] scratch: dL/d(h_in) from r * h_in (reset-before)
  const T* drh;                // [B, H] dL/d(r * h_in) from the GEMM (reset-before)
  const T* dy;
  const T* zh;
  const int64_t* lengths;
  int64_t t;
  const T *ln_w, *ln_n, *ln_rstd;  // layer norm: gains [3H], saved [B, 3H] and [B, 3]
  T* dU;                       // [B, 3H] dL/d(U h_in) (and U_n (r h_in)) before the norm
};

// Through h = (1 - z) n + z h_{t-1} and n's tanh; reset-after also through r.
template <typename T>
LSTMKIT_INLINE void gru_bwd_row_h(const GruConfig& cf, const GruBwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H;
  T* __restrict dgx = s.dgx + b * 3 * H;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {
    std::fill(dgx, dgx + 3 * H, T(0));
    if (cf.reset_after) std::fill(s.dgh_n + b * H, s.dgh_n + (b + 1) * H, T(0));
    if (cf.ln) std::fill(s.dU + b * 3 * H, s.dU + (b + 1) * 3 * H, T(0));
    return;
  }
  const T* __restrict a = s.acts + b * 3 * H;
  const T *__restrict r = a, *__restrict z = a + H, *__restrict n = a + 2 * H;
  const T* __restrict hp = s.h_in + b * H;
  const T* __restrict dy = s.dy + b * H;
  T* __restrict dH = s.dH + b * H;
  for (int64_t k = 0; k < H; ++k) {
    T dh = dH[k] + dy[k];
    T keep = T(0);
    if (s.zh) {  // zoneout: (1 - m) of the gradient reached the new state, m the old one
      const T m = s.zh[b * H + k];
      keep = m * dh;
      dh = (T(1) - m) * dh;
    }
    const T dpn = dh * (T(1) - z[k]) * (T(1) - n[k] * n[k]);
    dgx[2 * H + k] = dpn;
    dgx[H + k] = dh * (hp[k] - n[k]) * (T(1) - z[k]) * z[k];
    dH[k] = keep + dh * z[k];
  }
  if (cf.reset_after) {
    const T* __restrict un = s.aux + b * H;
    T* __restrict dgh_n = s.dgh_n + b * H;
    for (int64_t k = 0; k < H; ++k) {
      const T dpn = dgx[2 * H + k];
      dgx[k] = dpn * un[k] * (T(1) - r[k]) * r[k];
      dgh_n[k] = dpn * r[k];
    }
    if (cf.ln) {
      for (int64_t j = 0; j < 3; ++j) {
        const T* post = j < 2 ? dgx + j * H : dgh_n;
        normalize_row_backward<T>(post, s.ln_w + j * H, s.ln_n + b * 3 * H + j * H,
                                  s.ln_rstd[b * 3 + j], s.dU + b * 3 * H + j * H, H, false);
      }
    }
  } else if (cf.ln) {  // n read U_n (r h_in) through its layer norm
    normalize_row_backward<T>(dgx + 2 * H, s.ln_w + 2 * H, s.ln_n + b * 3 * H + 2 * H,
                              s.ln_rstd[b * 3 + 2], s.dU + b * 3 * H + 2 * H, H, false);
  }
}

// Reset-before: through r * h_in, given d(r * h_in) from the GEMM with U_n.
template <typename T>
LSTMKIT_INLINE void gru_bwd_row_r(const GruConfig& cf, const GruBwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H;
  T* __restrict dgx = s.dgx + b * 3 * H;
  T* __restrict dhin = s.dhin + b * H;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {  // dgx is already zero; nothing reaches h_in
    std::fill(dhin, dhin + H, T(0));
    return;
  }
  const T* __restrict r = s.acts + b * 3 * H;
  const T* __restrict hp = s.h_in + b * H;
  const T* __restrict drh = s.drh + b * H;
  if (s.rmask) {
    const T* __restrict m = s.rmask + b * H;
    for (int64_t k = 0; k < H; ++k) dgx[k] = drh[k] * (hp[k] * m[k]) * (T(1) - r[k]) * r[k];
  } else {
    for (int64_t k = 0; k < H; ++k) dgx[k] = drh[k] * hp[k] * (T(1) - r[k]) * r[k];
  }
  for (int64_t k = 0; k < H; ++k) dhin[k] = drh[k] * r[k];
  if (cf.ln) {
    for (int64_t j = 0; j < 2; ++j) {
      normalize_row_backward<T>(dgx + j * H, s.ln_w + j * H, s.ln_n + b * 3 * H + j * H,
                                s.ln_rstd[b * 3 + j], s.dU + b * 3 * H + j * H, H, false);
    }
  }
}

LSTMKIT_CLONES void gru_bwd_rows(const GruConfig& cf, const GruBwdStep<float>& s, int64_t b0,
                                 int64_t b1, int part) {
  for (int64_t b = b0; b < b1; ++b) {
    if (part == 0) gru_bwd_row_h<float>(cf, s, b);
    else gru_bwd_row_r<float>(cf, s, b);
  }
}
LSTMKIT_CLONES void gru_bwd_rows(const GruConfig& cf, const GruBwdStep<double>& s, int64_t b0,
                                 int64_t b1, int part) {
  for (int64_t b = b0; b < b1; ++b) {
    if (part == 0) gru_bwd_row_h<double>(cf, s, b);
    else gru_bwd_row_r<double>(cf, s, b);
  }
}

template <typename T>
static std::vector<at::Tensor> gru_backward_impl(
    const GruConfig& cf, const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& x,
    const OptTensor& w_ih, const at::Tensor& w_hh, bool has_bias, bool has_bhn,
    const OptTensor& ln_w, const OptTensor& lengths, const OptTensor& zh, const OptTensor& rmask,
    const at::Tensor& acts, const at::Tensor& hs, const at::Tensor& aux, const at::Tensor& ln_n,
    const at::Tensor& ln_rstd) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  // dgx is the input projection's gradient: handed out as dx when Python projected
  at::Tensor dgx = cf.projected ? at::empty({T_, B, 3 * H}, opts) : workspace({T_, B, 3 * H}, opts);
  at::Tensor dU = cf.ln ? workspace({T_, B, 3 * H}, opts) : at::empty({0}, opts);
  at::Tensor dgh_n = cf.reset_after ? workspace({T_, B, H}, opts) : at::Tensor();
  at::Tensor dH = dh_n.clone();
  at::Tensor dhin = at::empty({B, H}, opts);
  at::Tensor drin_buf = at::empty({B, H}, opts), drh_buf = at::empty({B, H}, opts);
  // the step GEMMs' right factors (packed where large, see prepare_right): U_r and U_z
  // together [2H, H], U_n [H, H]
  const RightFactor<T> w_rz = prepare_right<T>(w_hh.narrow(0, 0, 2 * H));
  const RightFactor<T> w_n = prepare_right<T>(w_hh.narrow(0, 2 * H, H));
  const int64_t grain = row_grain(3 * H);
  const Steps<T> acts_t = steps_of<T>(acts), aux_t = steps_of<T>(aux), hs_t = steps_of<T>(hs);
  const Steps<T> dgx_t = steps_of<T>(dgx), dgh_n_t = steps_of<T>(dgh_n), dy_t = steps_of<T>(dy);
  const Steps<T> zh_t = steps_of<T>(zh), dU_t = steps_of<T>(dU);
  const Steps<T> ln_n_t = steps_of<T>(ln_n), ln_rstd_t = steps_of<T>(ln_rstd);
  GruBwdStep<T> s{};
  s.ln_w = ptr_or_null<T>(ln_w);
  s.rmask = ptr_or_null<T>(rmask);
  s.dH = dH.data_ptr<T>();
  s.dhin = dhin.data_ptr<T>();
  s.lengths = ptr_or_null<int64_t>(lengths);

  for (int64_t step = T_ - 1; step >= 0; --step) {
    const int64_t t = slots.time(step), in = slots.in(t);
    s.acts = acts_t[t];
    s.aux = aux_t[t];
    s.h_in = hs_t[in];
    s.dgx = dgx_t[t];
    s.dgh_n = dgh_n_t[t];
    s.dy = dy_t[t];
    s.zh = zh_t[t];
    s.ln_n = ln_n_t[t];
    s.ln_rstd = ln_rstd_t[t];
    s.dU = dU_t[t];
    s.t = t;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { gru_bwd_rows(cf, s, b0, b1, 0); });

    // dL/dh_in through the recurrent products, as U_rz [B, 2H] x [2H, H] and U_n [B, H] x
    // [H, H] parts (reset-before: U_n read r * h_in, so its part goes through the row pass)
    const T* du = (cf.ln ? dU_t : dgx_t)[t];  // [B, 3H]
    T* d_in = drin_buf.data_ptr<T>();
    if (cf.reset_after) {
      gemm_right<T>(B, du, 3 * H, w_rz, d_in, H, false);
      // n's gradient: beside r's and z's in du under layer norm, else its own [B, H] dgh_n
      const T* dn = cf.ln ? du + 2 * H : dgh_n_t[t];
      gemm_right<T>(B, dn, cf.ln ? 3 * H : H, w_n, d_in, H, true);
    } else {
      gemm_right<T>(B, du + 2 * H, 3 * H, w_n, drh_buf.data_ptr<T>(), H, false);
      s.drh = drh_buf.data_ptr<T>();
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { gru_bwd_rows(cf, s, b0, b1, 1); });
      std::copy(s.dhin, s.dhin + B * H, d_in);
      gemm_right<T>(B, du, 3 * H, w_rz, d_in, H, true);
    }
    if (rmask.has_value()) {
      dH.addcmul_(drin_buf, *rmask);
    } else {
      dH.add_(drin_buf);
    }
  }

  const at::Tensor dgx2 = dgx.view({T_ * B, 3 * H});
  at::Tensor dx = dgx, dw_ih = at::empty({0}, opts), dbias = at::empty({0}, opts);
  if (!cf.projected) {
    std::tie(dx, dw_ih, dbias) = input_grads<T>(dgx2, x, *w_ih, has_bias);
  } else if (has_bias) {
    dbias = dgx2.sum(0);
  }
  at::Tensor h_in_all = slots.entering(hs).reshape({T_ * B, H});
  if (rmask.has_value()) h_in_all = slots.entering(hs).mul(*rmask).reshape({T_ * B, H});
  at::Tensor dw_hh, db_hn = at::empty({0}, opts), dln_w = at::empty({0}, opts);
  // what the weights multiplied got: the gradient before the layer norm when there is one;
  // the gains get the gradient after it times the normalised products. After the norm the
  // r and z blocks' gradient is dgx's; n's is dgh_n (reset-after) or dgx's (reset-before)
  const at::Tensor post_n = cf.reset_after ? dgh_n.view({T_ * B, H}) : dgx2.narrow(1, 2 * H, H);
  const at::Tensor du_rz = cf.ln ? dU.view({T_ * B, 3 * H}).narrow(1, 0, 2 * H)
                                 : dgx2.narrow(1, 0, 2 * H);
  const at::Tensor du_n = cf.ln ? dU.view({T_ * B, 3 * H}).narrow(1, 2 * H, H) : post_n;
  const at::Tensor n_read = cf.reset_after ? h_in_all : aux.view({T_ * B, H});
  dw_hh = at::cat({mm_tn(du_rz, h_in_all), mm_tn(du_n, n_read)});
  if (cf.reset_after && has_bhn) db_hn = post_n.sum(0);
  if (cf.ln) {
    const at::Tensor ln_n2 = ln_n.view({T_ * B, 3 * H});
    dln_w = at::empty({3 * H}, opts);
    col_dot(dgx2.narrow(1, 0, 2 * H), ln_n2.narrow(1, 0, 2 * H), dln_w.narrow(0, 0, 2 * H));
    col_dot(post_n, ln_n2.narrow(1, 2 * H, H), dln_w.narrow(0, 2 * H, H));
  }
  return {dx, dw_ih, dw_hh, dbias, db_hn, dln_w, dH};
}

// Returns [dx, dW_ih, dW_hh, dbias, db_hn, d ln_w, dh0] (empty when absent); dx is the
// input projection's gradient without w_ih. saved: what gru_forward returned after h_n.
std::vector<at::Tensor> gru_backward(const at::Tensor& dy, const at::Tensor& dh_n,
                                     const at::Tensor& x, const OptTensor& w_ih,
                                     const at::Tensor& w_hh, bool has_bias, bool has_bhn,
                                     const OptTensor& ln_w, const OptTensor& lengths,
                                     const OptTensor& zh, const OptTensor& rmask,
                                     const std::vector<at::Tensor>& saved,
                                     const std::vector<int64_t>& flags) {
  TORCH_CHECK(saved.size() == 5, "gru engine: expected 5 saved tensors, got ", saved.size());
  const at::Tensor xc = x.contiguous(), dh_nc = dh_n.contiguous();
  const OptTensor w_ihc = contig(w_ih), ln_wc = contig(ln_w);
  const GruConfig cf = make_gru_config(xc, dh_nc, w_ihc, ln_wc, flags);
  std::vector<at::Tensor> sv;
  for (const auto& t : saved) sv.push_back(t.contiguous());
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_backward", [&] {
    out = gru_backward_impl<scalar_t>(cf, dy.contiguous(), dh_nc, xc, w_ihc, w_hh.contiguous(),
                                      has_bias, has_bhn, ln_wc, contig(lengths), contig(zh),
                                      contig(rmask), sv[0], sv[1], sv[2], sv[3], sv[4]);
  });
  return out;
}

}  // namespace lstmkit
