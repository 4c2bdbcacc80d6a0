// Residual add + LayerNorm in one pass over each row, written into buffers the caller owns.
// CPU float32 inference only; compiled for the machine it runs on.
//
//     h = x + u,    n = (h - mean(h)) * rsqrt(var(h) + eps) * gamma + beta      (per row of H)
//
// Cost per row: 3 H reads of row-sized vectors from L1 after the first, ~6 H FLOPs. Memory: x and u
// read once, h (when kept) and n written once, each over a buffer that was just read, so the
// writes find their lines in cache (no read-for-ownership of a new buffer). The separate add and
// layer_norm read x and u, write a new h, read h again and write a new n.
// Per row (the row, 3 KB at H = 768, stays in L1 between the three passes):
//   sum      h_j = x_j + u_j, written to h_out (or kept in n_out's row when h is not kept), and sum h
//   var      sum (h_j - m) and sum (h_j - m)^2 around the rough mean m of the first pass, which
//            correct m (Chan, Golub and LeVeque's corrected two-pass: no cancellation, and a mean as
//            accurate as PyTorch's layer_norm gives for rows far from zero)
//   scale    n_j = (h_j - mean) * rstd * gamma_j + beta_j
// Aliasing: h_out may be x or u, and n_out may be u or a new buffer, but never h_out itself: each
// element of x and u is read before that element of h_out or n_out is written, and rows are
// independent.
// Threads: PyTorch's intra-op pool, rows split in contiguous ranges.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace {

constexpr int64_t kRowsPerTask = 16;  // at H = 768, 48 KB of x and u per task: enough to hide a task's start

void check_rows(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(),
              "add_norm_: ", name, " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.sizes() == x.sizes(), "add_norm_: ", name, " has shape ", t.sizes(), ", x has ", x.sizes());
}

void add_norm_(const at::Tensor& x, const at::Tensor& u, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
               double eps, const std::optional<at::Tensor>& h_out, const at::Tensor& n_out) {
  check_rows(x, "x", x);
  check_rows(u, "update", x);
  check_rows(n_out, "norm_out", x);
  TORCH_CHECK(x.dim() >= 1, "add_norm_: x must have a feature dimension");
  const int64_t H = x.size(-1);
  TORCH_CHECK(weight.is_contiguous() && weight.scalar_type() == at::kFloat && weight.numel() == H,
              "add_norm_: weight must be contiguous float32 of ", H, " elements");
  if (h_out) {
    check_rows(*h_out, "sum_out", x);
    TORCH_CHECK(!h_out->is_same(n_out), "add_norm_: sum_out and norm_out must be different buffers");
  }
  if (bias) {
    TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == at::kFloat && bias->numel() == H,
                "add_norm_: bias must be contiguous float32 of ", H, " elements");
  }
  if (x.numel() == 0) return;

  const float* X = x.data_ptr<float>();
  const float* U = u.data_ptr<float>();
  const float* G = weight.data_ptr<float>();
  const float* B = bias ? bias->data_ptr<float>() : nullptr;
  float* Hs = h_out ? h_out->data_ptr<float>() : nullptr;
  float* N = n_out.data_ptr<float>();
  const float inv_h = 1.0f / static_cast<float>(H);
  const float epsf = static_cast<float>(eps);

  at::parallel_for(0, x.numel() / H, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = X + r * H;
      const float* ur = U + r * H;
      float* nr = N + r * H;
      float* hr = Hs ? Hs + r * H : nr;  // without a kept sum, n_out holds h until the scale pass
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < H; ++j) {
        const float h = xr[j] + ur[j];
        hr[j] = h;
        sum += h;
      }
      const float rough = sum * inv_h;  // off by the rounding of a sum of H values
      float deviations = 0.0f, squares = 0.0f;
#pragma omp simd reduction(+ : deviations, squares)
      for (int64_t j = 0; j < H; ++j) {
        const float d = hr[j] - rough;
        deviations += d;
        squares += d * d;
      }
      const float shift = deviations * inv_h;
      const float mean = rough + shift;  // corrected two-pass (Chan, Golub and LeVeque)
      const float variance = std::max(squares * inv_h - shift * shift, 0.0f);
      const float rstd = 1.0f / std::sqrt(variance + epsf);
      if (B) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) nr[j] = (hr[j] - mean) * rstd * G[j] + B[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) nr[j] = (hr[j] - mean) * rstd * G[j];
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(leanbert_add_norm, m) {
  m.def("add_norm_(Tensor x, Tensor update, Tensor weight, Tensor? bias, float eps, Tensor(a!)? sum_out, "
        "Tensor(b!) norm_out) -> ()");
}

TORCH_LIBRARY_IMPL(leanbert_add_norm, CPU, m) { m.impl("add_norm_", &add_norm_); }
