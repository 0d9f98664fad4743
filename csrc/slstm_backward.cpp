// The sLSTM's backward over a whole layer (see slstm.h): BPTT through h, c, n and m.
// FP operations never trap here (as everywhere in torch): saying so lets GCC turn the selects
// of the fused passes into vector blends, so that the loops over a head's units vectorise.
#pragma GCC optimize("no-trapping-math")
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>

#include "slstm.h"

namespace lstmkit {

template <typename T>
struct SlstmBwdStep {
  const T* acts;     // [B, K, 4, E] i', f', tanh(z~), sigmoid(o~)
  const T* aux;      // [B, 2, H] w, d log f / d f~
  const T* c_in;     // [B, H] slots entering the step (n likewise)
  const T* n_in;
  const T* h_out;    // [B, H] slots leaving it (c, n likewise)
  const T* c_out;
  const T* n_out;
  const T* dy;       // [B, H] or null (only merging)
  const T* dhin;     // [K, B, E] R^T dpre of the step processed before (later in time), or null
  const T* rmask;    // [B, H] or null
  T* dgates;         // [B, K, 4, E] dL/d pre-activations out
  T* dH;             // [B, H] carried dL/dh_t, dL/dc_t, dL/dn_t, dL/dm_t, updated in place
  T* dC;
  T* dN;
  T* dM;
  const int64_t* lengths;
  int64_t t;
};

// dH += (R^T dpre of the later step) * recurrent_mask: h_{t} reached that step's product.
template <typename T>
LSTMKIT_INLINE void slstm_merge_row(const SlstmConfig& cf, const SlstmBwdStep<T>& s, int64_t b) {
  if (s.dhin == nullptr) return;
  const int64_t H = cf.H, E = cf.E, B = cf.B;
  for (int64_t k = 0; k < cf.K; ++k) {
    const T* __restrict d = s.dhin + (k * B + b) * E;
    T* __restrict dh = s.dH + b * H + k * E;
    if (s.rmask) {
      const T* __restrict mask = s.rmask + b * H + k * E;
      for (int64_t e = 0; e < E; ++e) dh[e] += d[e] * mask[e];
    } else {
      for (int64_t e = 0; e < E; ++e) dh[e] += d[e];
    }
  }
}

// One head's E units: ai..ao its saved activations, dgi..dgo its pre-activations'
// gradients; c_in, n_in the states entering the step, h, c, n those leaving it; dH, dC, dN,
// dM the carried gradients, updated in place. (Restrict parameters: see slstm_fwd_units.)
template <typename T>
LSTMKIT_INLINE void slstm_bwd_units(
    int64_t E, const T* __restrict ai, const T* __restrict af, const T* __restrict az,
    const T* __restrict ao, const T* __restrict w_split, const T* __restrict dlf,
    const T* __restrict c_in, const T* __restrict n_in, const T* __restrict h,
    const T* __restrict c, const T* __restrict n, const T* __restrict dy, T* __restrict dgi,
    T* __restrict dgf, T* __restrict dgz, T* __restrict dgo, T* __restrict dH,
    T* __restrict dC, T* __restrict dN, T* __restrict dM) {
  for (int64_t e = 0; e < E; ++e) {
    const T i = ai[e], f = af[e], zt = az[e], og = ao[e];
    const T dh = dH[e] + dy[e];
    // h = (og c) / n: torch's div backward, -dh (h / n) for n
    const T dq = dh / n[e];
    const T dn = dN[e] - dh * (h[e] / n[e]);
    const T dc = dC[e] + dq * og;
    const T di = dc * zt + dn;                 // into i' (through c and n)
    const T df = dc * c_in[e] + dn * n_in[e];  // into f'
    const T gi = di * i;                       // into i~ - m_t and a - m_t, through exp
    const T gf = df * f;
    const T dm = dM[e] - gi - gf;              // into m_t = max(a, i~), or i~ when empty
    const T da = gf + w_split[e] * dm;         // a = log f + m_{t-1}
    dgi[e] = gi + (T(1) - w_split[e]) * dm;
    dgf[e] = da * dlf[e];
    dgz[e] = dc * i * (T(1) - zt * zt);
    dgo[e] = dq * c[e] * (T(1) - og) * og;
    dC[e] = dc * f;
    dN[e] = dn * f;
    dM[e] = da;
    dH[e] = T(0);  // h_{t-1} reaches only the recurrent product: added by the next merge
  }
}

template <typename T>
LSTMKIT_INLINE void slstm_bwd_row(const SlstmConfig& cf, const SlstmBwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H, E = cf.E;
  slstm_merge_row(cf, s, b);
  T* dg_row = s.dgates + b * 4 * H;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {  // the state passed through unchanged: so do its gradients; dy is dropped
    std::fill(dg_row, dg_row + 4 * H, T(0));
    return;
  }
  for (int64_t k = 0; k < cf.K; ++k) {
    const int64_t u = b * H + k * E;
    const T* a = s.acts + b * 4 * H + k * 4 * E;
    const T* aux = s.aux + b * 2 * H + k * E;
    T* dg = dg_row + k * 4 * E;
    slstm_bwd_units<T>(E, a, a + E, a + 2 * E, a + 3 * E, aux, aux + H, s.c_in + u, s.n_in + u,
                       s.h_out + u, s.c_out + u, s.n_out + u, s.dy + u, dg, dg + E, dg + 2 * E,
                       dg + 3 * E, s.dH + u, s.dC + u, s.dN + u, s.dM + u);
  }
}

LSTMKIT_CLONES void slstm_bwd_rows(const SlstmConfig& cf, const SlstmBwdStep<float>& s,
                                   int64_t b0, int64_t b1, bool merge_only) {
  for (int64_t b = b0; b < b1; ++b) {
    if (merge_only) slstm_merge_row<float>(cf, s, b);
    else slstm_bwd_row<float>(cf, s, b);
  }
}
LSTMKIT_CLONES void slstm_bwd_rows(const SlstmConfig& cf, const SlstmBwdStep<double>& s,
                                   int64_t b0, int64_t b1, bool merge_only) {
  for (int64_t b = b0; b < b1; ++b) {
    if (merge_only) slstm_merge_row<double>(cf, s, b);
    else slstm_bwd_row<double>(cf, s, b);
  }
}

template <typename T>
static std::vector<at::Tensor> slstm_backward_impl(
    const SlstmConfig& cf, const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n,
    const at::Tensor& dn_n, const at::Tensor& dm_n, const at::Tensor& x, const OptTensor& w_ih,
    const at::Tensor& w_hh, bool has_bias, const OptTensor& lengths, const OptTensor& rmask,
    const at::Tensor& acts, const at::Tensor& aux, const at::Tensor& hs, const at::Tensor& cs,
    const at::Tensor& ns) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H, K = cf.K, E = cf.E;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  at::Tensor dgates = workspace({T_, B, 4 * H}, opts);  // head-major
  const auto dense = at::MemoryFormat::Contiguous;
  at::Tensor dH = dh_n.clone(dense), dC = dc_n.clone(dense), dN = dn_n.clone(dense);
  at::Tensor dM = dm_n.clone(dense);
  at::Tensor dhin = at::empty({K, B, E}, opts);
  const Steps<T> acts_t = steps_of<T>(acts), aux_t = steps_of<T>(aux), hs_t = steps_of<T>(hs);
  const Steps<T> cs_t = steps_of<T>(cs), ns_t = steps_of<T>(ns), dy_t = steps_of<T>(dy);
  const Steps<T> dg_t = steps_of<T>(dgates);
  SlstmBwdStep<T> s{};
  s.rmask = ptr_or_null<T>(rmask);
  s.dH = dH.data_ptr<T>();
  s.dC = dC.data_ptr<T>();
  s.dN = dN.data_ptr<T>();
  s.dM = dM.data_ptr<T>();
  s.lengths = ptr_or_null<int64_t>(lengths);
  const int64_t grain = row_grain(4 * H);

  for (int64_t step = T_ - 1; step >= 0; --step) {
    const int64_t t = slots.time(step), in = slots.in(t), out = slots.out(t);
    s.acts = acts_t[t];
    s.aux = aux_t[t];
    s.c_in = cs_t[in];
    s.n_in = ns_t[in];
    s.h_out = hs_t[out];
    s.c_out = cs_t[out];
    s.n_out = ns_t[out];
    s.dy = dy_t[t];
    s.dgates = dg_t[t];
    s.t = t;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      slstm_bwd_rows(cf, s, b0, b1, false);
    });
    // dL/dh_in = R^T dpre per head: [K, B, 4E] x [K, 4E, E] -> [K, B, E], merged into dH by
    // the next pass
    for (int64_t k = 0; k < K; ++k)
      gemm_nn<T>(B, E, 4 * E, dg_t[t] + k * 4 * E, 4 * H, w_hh.data_ptr<T>() + k * 4 * E * E, E,
                 dhin.data_ptr<T>() + k * B * E, E, false);
    s.dhin = dhin.data_ptr<T>();
  }
  if (T_ > 0) {
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      slstm_bwd_rows(cf, s, b0, b1, true);
    });
  }

  // the weight gradients, one GEMM each over all T*B rows
  const at::Tensor dg2 = dgates.view({T_ * B, 4 * H});
  at::Tensor dx, dw_ih = at::empty({0}, opts), dbias = at::empty({0}, opts);
  if (cf.projected) {  // the input projection's gradient, gate-major as the input was
    dx = dgates.view({T_, B, K, 4, E}).transpose(2, 3).reshape({T_, B, 4 * H});
    if (has_bias) dbias = dg2.sum(0);
  } else {
    std::tie(dx, dw_ih, dbias) = input_grads<T>(dg2, x, *w_ih, has_bias);
  }
  at::Tensor h_in_all = slots.entering(hs);  // [T, B, H]
  if (rmask.has_value()) h_in_all = h_in_all.mul(*rmask);
  h_in_all = h_in_all.reshape({T_ * B, H});
  // dR_k = dpre_k^T h_in_k for every head k at once: [K, 4E, T*B] x [K, T*B, E]
  const at::Tensor dw_hh = at::bmm(dg2.view({T_ * B, K, 4 * E}).permute({1, 2, 0}),
                                   h_in_all.view({T_ * B, K, E}).transpose(0, 1));
  return {dx, dw_ih, dw_hh, dbias, dH, dC, dN, dM};
}

// Returns [dx, dW_ih, dW_hh, dbias, dh0, dc0, dn0, dm0] (empty when absent; dW_ih and dbias
// head-major like w_ih and bias); without w_ih, dx is the input projection's gradient
// (gate-major). saved: what slstm_forward returned after m_n.
std::vector<at::Tensor> slstm_backward(const at::Tensor& dy, const at::Tensor& dh_n,
                                       const at::Tensor& dc_n, const at::Tensor& dn_n,
                                       const at::Tensor& dm_n, const at::Tensor& x,
                                       const OptTensor& w_ih, const at::Tensor& w_hh,
                                       bool has_bias, const OptTensor& lengths,
                                       const OptTensor& rmask,
                                       const std::vector<at::Tensor>& saved,
                                       const std::vector<int64_t>& flags) {
  TORCH_CHECK(saved.size() == 5, "slstm engine: expected 5 saved tensors, got ", saved.size());
  const at::Tensor xc = x.contiguous(), dh_nc = dh_n.contiguous();
  const OptTensor w_ihc = contig(w_ih);
  const SlstmConfig cf = make_slstm_config(xc, dh_nc, w_ihc, flags);
  std::vector<at::Tensor> sv;
  for (const auto& t : saved) sv.push_back(t.contiguous());
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "slstm_backward", [&] {
    out = slstm_backward_impl<scalar_t>(cf, dy.contiguous(), dh_nc, dc_n.contiguous(),
                                        dn_n.contiguous(), dm_n.contiguous(), xc, w_ihc,
                                        w_hh.contiguous(), has_bias, contig(lengths),
                                        contig(rmask), sv[0], sv[1], sv[2], sv[3], sv[4]);
  });
  return out;
}

}  // namespace lstmkit
