// The sLSTM's forward over a whole layer (see slstm.h).
// FP operations never trap here (as everywhere in torch): saying so lets GCC turn the selects
// of the fused passes into vector blends, so that the loops over a head's units vectorise.
#pragma GCC optimize("no-trapping-math")
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>

#include "slstm.h"

namespace lstmkit {

template <typename T>
struct SlstmFwdStep {
  T* gates;        // [B, K, 4, E] pre-activations in; i', f', tanh(z~), sigmoid(o~) out
  const T* gh;     // [K, B, 4E] R h_in
  T* aux;          // [B, 2, H] saved: w (share of dm_t that reaches a_t), d log f / d f~
  const T* h_in;   // [B, H] slot entering the step (c, n, m likewise)
  const T* c_in;
  const T* n_in;
  const T* m_in;
  T* h_out;        // [B, H] slots leaving it
  T* c_out;
  T* n_out;
  T* m_out;
  T* y;            // [B, H]
  const int64_t* lengths;
  int64_t t;
};

// One head's E units: gi..go are its four gate blocks of the step's pre-activations (the
// activations replace them), ri..ro the recurrent product's. Restrict-qualified parameters
// (not locals) tell GCC that no two of them alias, so the loop vectorises without checks.
template <typename T, bool kSigmoidForget>
LSTMKIT_INLINE void slstm_fwd_units(
    int64_t E, T* __restrict gi, T* __restrict gf, T* __restrict gz, T* __restrict go,
    const T* __restrict ri, const T* __restrict rf, const T* __restrict rz,
    const T* __restrict ro, T* __restrict w_split, T* __restrict dlf, const T* __restrict c_in,
    const T* __restrict n_in, const T* __restrict m_in, T* __restrict c, T* __restrict n,
    T* __restrict m, T* __restrict h, T* __restrict y) {
  for (int64_t e = 0; e < E; ++e) {
    const T i_pre = gi[e] + ri[e];
    const T f_pre = gf[e] + rf[e];
    const T z_pre = gz[e] + rz[e];
    const T o_pre = go[e] + ro[e];
    T d_log_f = T(1);
    const T log_f = kSigmoidForget ? log_sigmoid(f_pre, &d_log_f) : f_pre;
    const T a = log_f + m_in[e];
    // an empty memory starts its stabiliser at i~ and forgets nothing (cells/slstm.py)
    const bool empty = n_in[e] == T(0);
    const T m_t = empty ? i_pre : std::max(a, i_pre);
    const T i = exp_approx(i_pre - m_t);
    const T f = empty ? T(0) : exp_approx(a - m_t);
    const T zt = tanh_approx(z_pre);
    const T og = sigmoid(o_pre);
    const T c_t = f * c_in[e] + i * zt;
    const T n_t = f * n_in[e] + i;
    const T h_t = og * c_t / n_t;
    gi[e] = i;
    gf[e] = f;
    gz[e] = zt;
    go[e] = og;
    // torch.maximum's gradient goes to the larger argument, half to each on a tie
    w_split[e] = empty ? T(0) : (a > i_pre ? T(1) : (a < i_pre ? T(0) : T(0.5)));
    dlf[e] = d_log_f;
    c[e] = c_t;
    n[e] = n_t;
    m[e] = m_t;
    h[e] = h_t;
    y[e] = h_t;
  }
}

template <typename T, bool kSigmoidForget>
LSTMKIT_INLINE void slstm_fwd_row(const SlstmConfig& cf, const SlstmFwdStep<T>& s, int64_t b) {
  const int64_t H = cf.H, E = cf.E, B = cf.B;
  const int64_t row = b * H;
  const bool valid = s.lengths == nullptr || s.t < s.lengths[b];
  if (!valid) {  // past the end: the state stays, the output is zero
    std::copy(s.h_in + row, s.h_in + row + H, s.h_out + row);
    std::copy(s.c_in + row, s.c_in + row + H, s.c_out + row);
    std::copy(s.n_in + row, s.n_in + row + H, s.n_out + row);
    std::copy(s.m_in + row, s.m_in + row + H, s.m_out + row);
    std::fill(s.y + row, s.y + row + H, T(0));
    // backward never reads these; zeros keep every output of the op a function of its inputs
    std::fill(s.gates + b * 4 * H, s.gates + (b + 1) * 4 * H, T(0));
    std::fill(s.aux + b * 2 * H, s.aux + (b + 1) * 2 * H, T(0));
    return;
  }
  for (int64_t k = 0; k < cf.K; ++k) {
    const int64_t u = row + k * E;  // this head's units in a [B, H] row
    T* g = s.gates + b * 4 * H + k * 4 * E;
    const T* r = s.gh + (k * B + b) * 4 * E;
    T* aux = s.aux + b * 2 * H + k * E;
    slstm_fwd_units<T, kSigmoidForget>(
        E, g, g + E, g + 2 * E, g + 3 * E, r, r + E, r + 2 * E, r + 3 * E, aux, aux + H,
        s.c_in + u, s.n_in + u, s.m_in + u, s.c_out + u, s.n_out + u, s.m_out + u,
        s.h_out + u, s.y + u);
  }
}

LSTMKIT_CLONES void slstm_fwd_rows(const SlstmConfig& cf, const SlstmFwdStep<float>& s,
                                   int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    if (cf.sigmoid_forget) slstm_fwd_row<float, true>(cf, s, b);
    else slstm_fwd_row<float, false>(cf, s, b);
  }
}
LSTMKIT_CLONES void slstm_fwd_rows(const SlstmConfig& cf, const SlstmFwdStep<double>& s,
                                   int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    if (cf.sigmoid_forget) slstm_fwd_row<double, true>(cf, s, b);
    else slstm_fwd_row<double, false>(cf, s, b);
  }
}

template <typename T>
static std::vector<at::Tensor> slstm_forward_impl(
    const SlstmConfig& cf, const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& bias, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& n0,
    const at::Tensor& m0, const OptTensor& lengths, const OptTensor& rmask) {
  const int64_t T_ = cf.T, B = cf.B, H = cf.H, K = cf.K, E = cf.E;
  const auto opts = x.options();
  const Slots slots{T_, cf.reverse};

  // input projection of every step, [T*B, D] x [D, 4H] (+ bias), head-major rows, a few
  // steps ahead of the loop
  at::Tensor gates = workspace({T_, B, 4 * H}, opts);
  std::optional<StepProjection<T>> projection;
  if (cf.projected) {  // x is gate-major, [T, B, 4, K, E]: the copy into the buffer permutes it
    at::Tensor gates5 = gates.view({T_, B, K, 4, E});
    const at::Tensor x5 = x.view({T_, B, 4, K, E}).transpose(2, 3);
    if (bias.has_value()) {
      at::add_out(gates5, x5, bias->view({K, 4, E}));
    } else {
      gates5.copy_(x5);
    }
  } else {
    projection.emplace(x, *w_ih, bias, gates, cf.reverse);
  }
  at::Tensor hs = workspace({T_ + 1, B, H}, opts);  // state slots (see Slots)
  at::Tensor cs = workspace({T_ + 1, B, H}, opts);
  at::Tensor ns = workspace({T_ + 1, B, H}, opts);
  at::Tensor ms = workspace({T_ + 1, B, H}, opts);
  at::Tensor aux = workspace({T_, B, 2 * H}, opts);
  at::Tensor y = at::empty({T_, B, H}, opts);
  at::Tensor gh = at::empty({K, B, 4 * E}, opts);
  at::Tensor rin_masked = rmask.has_value() ? at::empty({B, H}, opts) : at::Tensor();
  const at::Tensor w_hh_t = w_hh.transpose(1, 2).contiguous();  // [K, E, 4E]
  hs[slots.first()].copy_(h0);
  cs[slots.first()].copy_(c0);
  ns[slots.first()].copy_(n0);
  ms[slots.first()].copy_(m0);

  const Steps<T> gates_t = steps_of<T>(gates), aux_t = steps_of<T>(aux), y_t = steps_of<T>(y);
  const Steps<T> hs_t = steps_of<T>(hs), cs_t = steps_of<T>(cs), ns_t = steps_of<T>(ns);
  const Steps<T> ms_t = steps_of<T>(ms);
  SlstmFwdStep<T> s{};
  s.gh = gh.data_ptr<T>();
  s.lengths = ptr_or_null<int64_t>(lengths);
  const int64_t grain = row_grain(4 * H);

  for (int64_t step = 0; step < T_; ++step) {
    const int64_t t = slots.time(step), in = slots.in(t), out = slots.out(t);
    if (projection) projection->before(step);
    // the block-diagonal recurrent product, a GEMM per head: [B, E] x [E, 4E] -> gh[k]
    const T* rin = masked_input<T>(hs_t[in], rmask, rin_masked, B * H);
    for (int64_t k = 0; k < K; ++k)
      gemm_nn<T>(B, 4 * E, E, rin + k * E, H, w_hh_t.data_ptr<T>() + k * E * 4 * E, 4 * E,
                 gh.data_ptr<T>() + k * B * 4 * E, 4 * E, false);

    s.gates = gates_t[t];
    s.aux = aux_t[t];
    s.y = y_t[t];
    s.h_in = hs_t[in];
    s.c_in = cs_t[in];
    s.n_in = ns_t[in];
    s.m_in = ms_t[in];
    s.h_out = hs_t[out];
    s.c_out = cs_t[out];
    s.n_out = ns_t[out];
    s.m_out = ms_t[out];
    s.t = t;
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) { slstm_fwd_rows(cf, s, b0, b1); });
  }
  const int64_t last = slots.last();
  return {y, hs[last].clone(), cs[last].clone(), ns[last].clone(), ms[last].clone(),
          gates, aux, hs, cs, ns};
}

// Returns [y, h_n, c_n, n_n, m_n, then what backward needs: activations (i', f', tanh z~,
// sigmoid o~, head-major), aux (w, d log f), the h, c and n slots]. Without w_ih, x is the
// input projection already (gate-major as the cell's, without the bias).
std::vector<at::Tensor> slstm_forward(const at::Tensor& x, const OptTensor& w_ih,
                                      const at::Tensor& w_hh, const OptTensor& bias,
                                      const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& n0, const at::Tensor& m0,
                                      const OptTensor& lengths, const OptTensor& rmask,
                                      const std::vector<int64_t>& flags) {
  const at::Tensor xc = x.contiguous(), h0c = h0.contiguous();
  const OptTensor w_ihc = contig(w_ih);
  const SlstmConfig cf = make_slstm_config(xc, h0c, w_ihc, flags);
  TORCH_CHECK(w_hh.dim() == 3 && w_hh.size(0) == cf.K && w_hh.size(1) == 4 * cf.E &&
                  w_hh.size(2) == cf.E,
              "slstm engine: weight_hh must be [K, 4E, E] = [", cf.K, ", ", 4 * cf.E, ", ",
              cf.E, "], got ", w_hh.sizes());
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "slstm_forward", [&] {
    out = slstm_forward_impl<scalar_t>(cf, xc, w_ihc, w_hh.contiguous(), contig(bias), h0c,
                                       c0.contiguous(), n0.contiguous(), m0.contiguous(),
                                       contig(lengths), contig(rmask));
  });
  return out;
}

}  // namespace lstmkit
