// The GRU (lstmkit/cells/gru.py), both reset forms: forward and backward over a whole layer.
//
// Gate blocks r, z, n as torch.nn.GRU. Shapes: T steps, B batch, D input, H hidden.
//   reset_after  (torch):  n = tanh(W_n x + b_in + r * (U_n h_in + b_hn))
//   reset_before (paper):  n = tanh(W_n x + b_in + U_n (r * h_in) + b_hn)
//   h_t = (1 - z) * n + z * h_{t-1},  h_in = h_{t-1} * recurrent_mask
// Python folds every bias that only adds into the input projection's bias; b_hn stays apart
// in the reset-after form, where r multiplies it. With layer norm Python also computes the
// input side (x is then the projection, [T, B, 3H]) and each recurrent product is normalised
// per gate block here (gains ln_w; the shifts are folded like the biases).
//
// Per step: reset-after runs one recurrent GEMM ([B, H] x [H, 3H]) and one fused pass;
// reset-before runs U_rz h_in, a pass for r and z, U_n (r * h_in), a pass for n and h.
// Backward mirrors it; the weight gradients are GEMMs over all steps after the loop.
#pragma once

#include "common.h"

namespace lstmkit {

struct GruConfig {
  int64_t T, B, D, H;
  bool reset_after;
  bool reverse;
  bool projected;  // x is the input projection already
  bool ln;         // layer norm of the recurrent products
};

// flags: [reset_after, reverse]
inline GruConfig make_gru_config(const at::Tensor& x, const at::Tensor& h0, const OptTensor& w_ih,
                                 const OptTensor& ln_w, const std::vector<int64_t>& flags) {
  TORCH_CHECK(flags.size() == 2, "gru engine: expected 2 flags, got ", flags.size());
  return GruConfig{x.size(0),     x.size(1),      x.size(2),    h0.size(1),
                   flags[0] != 0, flags[1] != 0, !given(w_ih), given(ln_w)};
}

}  // namespace lstmkit
