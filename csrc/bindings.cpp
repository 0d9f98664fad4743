// Python bindings of the fused CPU engine (lstmkit/backends/cpu/ops.py wraps them in
// torch.library custom ops with autograd).
// pybind11 with torch's tensor casters, without the whole C++ frontend of torch/extension.h
#include <torch/csrc/utils/pybind.h>

#include "common.h"

namespace lstmkit {
std::vector<at::Tensor> lstm_forward(
    const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh, const OptTensor& bias,
    const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr, const OptTensor& ln_hh_w,
    const OptTensor& ln_c_w, const OptTensor& ln_c_b, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& a0, const OptTensor& lengths, const OptTensor& zh, const OptTensor& zc,
    const OptTensor& za, const OptTensor& rmask, const std::vector<int64_t>& flags, double clip);
std::vector<at::Tensor> lstm_backward(
    const at::Tensor& dy, const at::Tensor& dh_n, const at::Tensor& dc_n, const OptTensor& da_n,
    const at::Tensor& x, const OptTensor& w_ih, const at::Tensor& w_hh, bool has_bias,
    const OptTensor& w_ch, const OptTensor& w_gg, const OptTensor& w_hr, const OptTensor& ln_hh_w,
    const OptTensor& ln_c_w, const OptTensor& lengths, const OptTensor& zh, const OptTensor& zc,
    const OptTensor& za, const OptTensor& rmask, const std::vector<at::Tensor>& saved,
    const std::vector<int64_t>& flags, double clip);
std::vector<at::Tensor> gru_forward(const at::Tensor& x, const OptTensor& w_ih,
                                    const at::Tensor& w_hh, const OptTensor& bias,
                                    const OptTensor& b_hn, const OptTensor& ln_w,
                                    const at::Tensor& h0, const OptTensor& lengths,
                                    const OptTensor& zh, const OptTensor& rmask,
                                    const std::vector<int64_t>& flags);
std::vector<at::Tensor> gru_backward(const at::Tensor& dy, const at::Tensor& dh_n,
                                     const at::Tensor& x, const OptTensor& w_ih,
                                     const at::Tensor& w_hh, bool has_bias, bool has_bhn,
                                     const OptTensor& ln_w, const OptTensor& lengths,
                                     const OptTensor& zh, const OptTensor& rmask,
                                     const std::vector<at::Tensor>& saved,
                                     const std::vector<int64_t>& flags);
std::vector<at::Tensor> convlstm_gates_forward(const at::Tensor& pre, const at::Tensor& c_prev,
                                               const OptTensor& w_ch, bool save);
std::vector<at::Tensor> convlstm_gates_backward(const at::Tensor& dh, const at::Tensor& dc,
                                                const at::Tensor& acts, const at::Tensor& tanh_c,
                                                const at::Tensor& c_prev, const at::Tensor& c,
                                                const OptTensor& w_ch);
std::vector<at::Tensor> slstm_forward(const at::Tensor& x, const OptTensor& w_ih,
                                      const at::Tensor& w_hh, const OptTensor& bias,
                                      const at::Tensor& h0, const at::Tensor& c0,
                                      const at::Tensor& n0, const at::Tensor& m0,
                                      const OptTensor& lengths, const OptTensor& rmask,
                                      const std::vector<int64_t>& flags);
std::vector<at::Tensor> slstm_backward(const at::Tensor& dy, const at::Tensor& dh_n,
                                       const at::Tensor& dc_n, const at::Tensor& dn_n,
                                       const at::Tensor& dm_n, const at::Tensor& x,
                                       const OptTensor& w_ih, const at::Tensor& w_hh,
                                       bool has_bias, const OptTensor& lengths,
                                       const OptTensor& rmask,
                                       const std::vector<at::Tensor>& saved,
                                       const std::vector<int64_t>& flags);
void empty_workspace_cache();
std::string set_step_gemm(const std::string& kernel);
}  // namespace lstmkit

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lstmkit fused CPU engine";
  m.def("lstm_forward", &lstmkit::lstm_forward);
  m.def("lstm_backward", &lstmkit::lstm_backward);
  m.def("gru_forward", &lstmkit::gru_forward);
  m.def("gru_backward", &lstmkit::gru_backward);
  m.def("convlstm_gates_forward", &lstmkit::convlstm_gates_forward);
  m.def("convlstm_gates_backward", &lstmkit::convlstm_gates_backward);
  m.def("slstm_forward", &lstmkit::slstm_forward);
  m.def("slstm_backward", &lstmkit::slstm_backward);
  m.def("empty_workspace_cache", &lstmkit::empty_workspace_cache);
  m.def("set_step_gemm", &lstmkit::set_step_gemm);
}
