// The gate-flag LSTM family (lstmkit/cells/lstm.py): forward and backward over a whole layer.
//
// One compiled function serves every variant; the variant arrives as flags. Gates use an
// *internal* block order: the gates other than g in i, f, o order, then g last. So the
// blocks that read the recurrent product (all, or all but g for the full peephole), the
// diagonal-peephole blocks and the FGR feedback blocks are always a prefix of a [B, G*H] row,
// and each of their GEMMs reads or writes one strided matrix. Python permutes weights into
// this order (and autograd permutes their gradients back).
//
// Shapes: T steps, B batch, D input, H hidden, P output (proj or H), G gate blocks with
// weights, R of them recurrent, F = G - 1 feedback blocks (FGR only), Rin the recurrent
// input size (P, or H for the full peephole, which reads c_{t-1}).
//
// Forward: one GEMM for the input projection of all steps; per step the recurrent GEMM (and
// the FGR and projection GEMMs) plus one fused pass over the gates. Backward: per step the
// same GEMMs transposed plus one fused pass; then every weight gradient is one GEMM (or one
// reduction) over the per-step buffers that forward and backward saved.
#pragma once

#include "common.h"

namespace lstmkit {

// --------------------------------------------------------------------------- configuration
struct LstmConfig {
  int64_t T, B, D, H, P, G, R, F, Rin;
  int64_t idx_i, idx_f, idx_o;  // internal block of each gate, -1 when absent; g is G - 1
  bool coupled;                 // f = 1 - i (CIFG)
  int64_t peephole;             // 0 none, 1 diagonal, 2 full (gates read U c_{t-1})
  bool fgr;                     // the first F blocks also read W_gg a_{t-1}
  bool fgr_slots;               // the gate state needs slots of its own (see make_config)
  bool proj;                    // h = W_hr (o * sigma_h(c))
  bool projected;               // x is the input projection already (layer norm: Python)
  bool ln_hh, ln_c;             // layer norm of the recurrent product / of c before sigma_h
  int64_t act_g, act_c, act_h;
  bool reverse;
  double clip;                  // <= 0: no clipping
  bool need_craw;               // c before clipping and zoneout is kept for backward
};

// flags: [idx_i, idx_f, idx_o, coupled, peephole, fgr, act_g, act_c, act_h, reverse]
inline LstmConfig make_config(const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh,
                              const at::Tensor& h0, const at::Tensor& c0, const OptTensor& w_hr,
                              const OptTensor& zoneout_c, const OptTensor& ln_hh_w,
                              const OptTensor& ln_c_w, const OptTensor& zoneout_a,
                              const OptTensor& lengths, const std::vector<int64_t>& flags,
                              double clip) {
  TORCH_CHECK(flags.size() == 10, "lstm engine: expected 10 flags, got ", flags.size());
  LstmConfig c{};
  c.T = x.size(0);
  c.B = x.size(1);
  c.D = x.size(2);
  c.H = c0.size(1);
  c.P = h0.size(1);
  c.projected = !given(w_ih);
  c.G = (c.projected ? x.size(2) : w_ih->size(0)) / c.H;
  c.R = w_hh.size(0) / c.H;
  c.Rin = w_hh.size(1);
  c.idx_i = flags[0];
  c.idx_f = flags[1];
  c.idx_o = flags[2];
  c.coupled = flags[3] != 0;
  c.peephole = flags[4];
  c.fgr = flags[5] != 0;
  c.F = c.fgr ? c.G - 1 : 0;
  // FGR's gate state a_t is the first F blocks of step t's activations, unless zoneout mixes
  // in a_{t-1} or a sequence has ended (a_t = a_{t-1}). Only then does it get [T + 1, B, F*H]
  // slots of its own; otherwise the loop and the weight gradient read a_{t-1} from the
  // previous step's activations, and only a0 is kept ([1, B, F*H]): a quarter less memory.
  c.fgr_slots = c.fgr && (given(zoneout_a) || given(lengths));
  c.act_g = flags[6];
  c.act_c = flags[7];
  c.act_h = flags[8];
  c.reverse = flags[9] != 0;
  c.proj = given(w_hr);
  c.clip = clip;
  c.need_craw = clip > 0 || given(zoneout_c);
  c.ln_hh = given(ln_hh_w);
  c.ln_c = given(ln_c_w);
  return c;
}

}  // namespace lstmkit
