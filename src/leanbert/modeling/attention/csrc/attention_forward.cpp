// Full self-attention, inference only, on the CPU, compiled for the machine it runs on.
//
// Same computation as attention/full.py's SDPA path, read straight from the fused QKV projection:
//
//     S = Q_h K_h^T / sqrt(Dh) (masked keys: -inf),   P = softmax_rows(S),   out_h = P V_h
//
// Cost per sequence and head: 4 L^2 Dh FLOPs and L^2 exponentials; memory: Q, K, V read once
// (from the projection's output, likely in L3), out written once. Per (batch, head) task:
//   pack     K_h^T (Dh, L) by 16 x 16 register transposes, and V_h (L, Dh) contiguously: rows of
//            the fused QKV are 3 C floats apart, and a 9 KB stride folds every row onto the same
//            few L1 sets, so a head read in place thrashes L1 (measured: 1.3x slower in total).
//   scores   8 query rows x 32 keys per register tile (16 accumulators; a K^T row pair and
//            eight broadcasts per step), scaled on the way out, into an 8-row strip P (in L1).
//   softmax  per row: mask (and the keys past L) to -inf and take the maximum in one pass, then
//            a vector exp (Cephes' degree-6 polynomial, 2^n by scalef; below -87 an exact 0, never
//            a denormal, which would cost a microcode assist per FMA in P V) and the row sum.
//            The same pass flags a NaN or +inf score of any key j < L, masked ones included; such a
//            row's context is NaN, as in SDPA (which adds its mask to the scores); the exp alone
//            would map NaN to 0 and max_ps can drop it, hiding a NaN in Q or K.
//   context  the same 8 x 32 tile over P and V_h, scaled by 1 / row sum on the way out (a NaN or
//            inf in V reaches every row that reads it through the FMAs, as in SDPA).
// Threads: PyTorch's intra-op pool (at::parallel_for) over the B x heads tasks.
// Two layouts: `forward` takes the padded batch (B, L, 3 C) and a key mask; `forward_unpadded` takes
// the real tokens only (T, 3 C) and where each sequence starts, so that an unpadded encoder never
// scatters its tokens into a (B, L) grid and gathers them back around every attention.
// Measured on 2 cores, 12 heads of 64, against PyTorch's SDPA (flash) kernel: 1.2x at B = 8, L = 128
// (in the model, 2.9 against 3.3 ms a layer), 1.3-1.7x for shorter sequences; 0.9-1.07x from L = 256,
// where K^T and V outgrow L1 (native.py's MAX_LENGTH). AVX-512 only: elsewhere `supported()` is false.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define LEANBERT_ATTENTION_AVX512 1
#include <immintrin.h>
#endif

namespace {

#if LEANBERT_ATTENTION_AVX512

constexpr int kRows = 8;   // query rows (or P rows) per register tile
constexpr int kCols = 32;  // keys (or context columns) per register tile: two vectors

// exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by Cephes' polynomial, times 2^n.
inline __m512 exp_nonpositive(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);  // else exactly 0
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 in two parts
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(live, p, n);
}

// c[r * c_stride + 0:32] = row_scale[r] * sum_k a[r * a_stride + k] b[k * b_stride + 0:32], for r < rows:
// an 8 x 32 tile of A B. Kept out of line so that its 16 accumulators, two B vectors and the
// broadcast own the registers (inlined, the caller's hoisted constants pushed B onto the stack).
__attribute__((noinline)) void tile(const float* a, int64_t a_stride, const float* b, int64_t b_stride,
                                    int64_t depth, const float* row_scale, int rows, float* c, int64_t c_stride) {
  __m512 acc[kRows][2];
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + k * b_stride), b1 = _mm512_loadu_ps(b + k * b_stride + 16);
    for (int r = 0; r < kRows; ++r) {
      const __m512 s = _mm512_set1_ps(a[r * a_stride + k]);
      acc[r][0] = _mm512_fmadd_ps(s, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(s, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const __m512 scale = _mm512_set1_ps(row_scale[r]);
    _mm512_storeu_ps(c + r * c_stride, _mm512_mul_ps(acc[r][0], scale));
    _mm512_storeu_ps(c + r * c_stride + 16, _mm512_mul_ps(acc[r][1], scale));
  }
}

// out[c * ld : +16] = column c of the 16 x 16 block whose row i starts at rows[i] (nullptr: zeros)
inline void transpose16(const float* const* rows, float* out, int64_t ld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = rows[i] ? _mm512_loadu_ps(rows[i]) : _mm512_setzero_ps();
  for (int i = 0; i < 16; i += 2) {  // t[i], t[i+1]: rows i, i+1 interleaved, per 128-bit lane
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // r[g + c], lane l: column 4 l + c of rows g .. g+3
    const __m512d t0 = _mm512_castps_pd(t[g]), t1 = _mm512_castps_pd(t[g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[g + 2]), t3 = _mm512_castps_pd(t[g + 3]);
    r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  for (int c = 0; c < 4; ++c) {  // gather lane l of r[c], r[4+c], r[8+c], r[12+c] into column 4 l + c
    const __m512 a = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), b = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
    const __m512 a2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    const __m512 b2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    _mm512_storeu_ps(out + c * ld, _mm512_shuffle_f32x4(a, a2, 0x88));
    _mm512_storeu_ps(out + (4 + c) * ld, _mm512_shuffle_f32x4(b, b2, 0x88));
    _mm512_storeu_ps(out + (8 + c) * ld, _mm512_shuffle_f32x4(a, a2, 0xdd));
    _mm512_storeu_ps(out + (12 + c) * ld, _mm512_shuffle_f32x4(b, b2, 0xdd));
  }
}

// Keys j0 .. j0+15 that exist (j < L).
inline __mmask16 existing_keys(int64_t j0, int64_t L) {
  const int64_t n = std::min<int64_t>(std::max<int64_t>(L - j0, 0), 16);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// Of those, the keys kept by the mask (one bool byte per key, or none).
inline __mmask16 kept_keys(__mmask16 exists, int64_t j0, const bool* keep) {
  if (keep == nullptr) return exists;
  const __m128i bytes = _mm_maskz_loadu_epi8(exists, keep + j0);
  return _mm_test_epi8_mask(bytes, bytes);
}

// One (batch, head): base points at q[0] of the head in the fused row layout (rows `row` apart).
void attend_head(const float* base, int64_t row, int64_t C, int64_t L, int64_t Lp, int64_t Dh,
                 const bool* keep, float scale, float* out, float* kt, float* v, float* q, float* p) {
  for (int64_t j0 = 0; j0 < Lp; j0 += 16) {  // kt (Dh, Lp) = K_h^T, zero past L
    const float* rows[16];
    for (int64_t d0 = 0; d0 < Dh; d0 += 16) {
      for (int i = 0; i < 16; ++i) rows[i] = j0 + i < L ? base + (j0 + i) * row + C + d0 : nullptr;
      transpose16(rows, kt + d0 * Lp + j0, Lp);
    }
  }
  for (int64_t j = 0; j < L; ++j) std::memcpy(v + j * Dh, base + j * row + 2 * C, Dh * sizeof(float));

  float scales[kRows];
  std::fill(scales, scales + kRows, scale);
  for (int64_t i0 = 0; i0 < L; i0 += kRows) {
    for (int r = 0; r < kRows; ++r)  // the query tile; rows past L repeat the last (never stored)
      std::memcpy(q + r * Dh, base + std::min(i0 + r, L - 1) * row, Dh * sizeof(float));
    for (int64_t j0 = 0; j0 < Lp; j0 += kCols) tile(q, Dh, kt + j0, Lp, Dh, scales, kRows, p + j0, Lp);
    float inv_sum[kRows];
    for (int r = 0; r < kRows; ++r) {  // p = exp(s - max) over the kept keys, 0 elsewhere
      float* pr = p + r * Lp;
      __m512 row_max = _mm512_set1_ps(-INFINITY);
      __mmask16 poisoned = 0;  // keys whose score is NaN or +inf (in SDPA, exp(inf - inf) = NaN)
      for (int64_t j = 0; j < Lp; j += 16) {
        const __mmask16 exists = existing_keys(j, L);
        const __m512 raw = _mm512_loadu_ps(pr + j);
        poisoned |= _mm512_mask_cmp_ps_mask(exists, raw, _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
        const __m512 s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), kept_keys(exists, j, keep), raw);
        _mm512_storeu_ps(pr + j, s);
        row_max = _mm512_max_ps(row_max, s);
      }
      const float m = _mm512_reduce_max_ps(row_max);
      if (poisoned != 0 || m == -INFINITY) {  // context NaN if poisoned, else (no key to attend to) zero
        std::memset(pr, 0, Lp * sizeof(float));
        inv_sum[r] = poisoned != 0 ? NAN : 0.0f;
        continue;
      }
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < Lp; j += 16) {
        const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(pr + j), _mm512_set1_ps(m)));
        _mm512_storeu_ps(pr + j, e);
        sum = _mm512_add_ps(sum, e);
      }
      inv_sum[r] = 1.0f / _mm512_reduce_add_ps(sum);
    }
    const int valid_rows = static_cast<int>(std::min<int64_t>(kRows, L - i0));
    for (int64_t c0 = 0; c0 < Dh; c0 += kCols)  // context = p v / row sums
      tile(p, Lp, v + c0, Dh, L, inv_sum, valid_rows, out + i0 * C + c0, C);
  }
}

#endif  // LEANBERT_ATTENTION_AVX512

bool supported() {
#if LEANBERT_ATTENTION_AVX512
  return true;
#else
  return false;
#endif
}

// Every (sequence, head) on PyTorch's threads. Sequence s is `length(s)` rows of src (3 C floats
// apart) from row `first(s)`, its output the same rows of dst (C apart); keep(s) is its key mask
// (one bool per row) or null. Scratch is sized for the longest, max_length.
template <typename First, typename Length, typename Keep>
void attend_all(const float* src, float* dst, int64_t n_seq, int64_t heads, int64_t C, int64_t max_length,
                const First& first, const Length& length, const Keep& keep) {
#if LEANBERT_ATTENTION_AVX512
  const int64_t Dh = C / heads, Lmax = (max_length + kCols - 1) / kCols * kCols, row = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  at::parallel_for(0, n_seq * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(Dh * Lmax + Lmax * Dh + kRows * Dh + kRows * Lmax);  // kt, v, q, p
    float* kt = scratch.data();
    float* v = kt + Dh * Lmax;
    float* q = v + Lmax * Dh;
    float* p = q + kRows * Dh;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / heads, h = task % heads, L = length(s);
      if (L == 0) continue;
      attend_head(src + first(s) * row + h * Dh, row, C, L, (L + kCols - 1) / kCols * kCols, Dh, keep(s), scale,
                  dst + first(s) * C + h * Dh, kt, v, q, p);
    }
  });
#endif
}

// Refuses a qkv this kernel cannot read (`shape` names the layout expected); returns C, its width / 3.
int64_t check_qkv(const at::Tensor& qkv, int64_t heads, int64_t dims, const char* shape) {
  TORCH_CHECK(supported(), "leanbert attention: this build has no AVX-512 kernel");
  TORCH_CHECK(qkv.dim() == dims && qkv.scalar_type() == at::kFloat && qkv.is_contiguous() && qkv.device().is_cpu(),
              "qkv must be a contiguous float32 CPU tensor ", shape, ", got ", qkv.sizes(), " ", qkv.scalar_type());
  const int64_t C = qkv.size(-1) / 3;
  TORCH_CHECK(heads > 0 && qkv.size(-1) == 3 * C && C % heads == 0 && (C / heads) % 32 == 0,
              "qkv has ", qkv.size(-1), " columns: need 3 C with C / heads (heads = ", heads, ") a multiple of 32");
  return C;
}

// qkv (B, L, 3 C) float32 contiguous, heads of Dh = C / heads (a multiple of 32);
// key_mask (B, L) bool, True = attend, or None. Returns the context (B, L, C).
at::Tensor forward(const at::Tensor& qkv, int64_t heads, const std::optional<at::Tensor>& key_mask) {
  const int64_t C = check_qkv(qkv, heads, 3, "(B, L, 3 C)");
  const int64_t B = qkv.size(0), L = qkv.size(1);
  const bool* keep = nullptr;
  if (key_mask) {
    TORCH_CHECK(key_mask->scalar_type() == at::kBool && key_mask->is_contiguous() &&
                key_mask->sizes() == at::IntArrayRef({B, L}), "key_mask must be a contiguous bool (", B, ", ", L,
                ") tensor, got ", key_mask->sizes(), " ", key_mask->scalar_type());
    keep = key_mask->data_ptr<bool>();
  }
  auto out = at::empty({B, L, C}, qkv.options());
  attend_all(qkv.data_ptr<float>(), out.data_ptr<float>(), B, heads, C, L,
             [L](int64_t s) { return s * L; }, [L](int64_t) { return L; },
             [keep, L](int64_t s) { return keep != nullptr ? keep + s * L : nullptr; });
  return out;
}

// The unpadded layout: qkv (T, 3 C), sequence s in rows offsets[s] .. offsets[s + 1] (offsets (S + 1,)
// int64, from 0 to T, non-decreasing), every row of a sequence a real token. Returns (T, C): the
// same numbers as `forward` on the padded batch at its real positions, without building the grid.
at::Tensor forward_unpadded(const at::Tensor& qkv, int64_t heads, const at::Tensor& offsets) {
  const int64_t C = check_qkv(qkv, heads, 2, "(T, 3 C)");
  const int64_t T = qkv.size(0);
  TORCH_CHECK(offsets.dim() == 1 && offsets.numel() >= 1 && offsets.scalar_type() == at::kLong &&
              offsets.is_contiguous() && offsets.device().is_cpu(),
              "offsets must be a contiguous int64 CPU vector (S + 1,), got ", offsets.sizes(), " ",
              offsets.scalar_type());
  const int64_t* start = offsets.data_ptr<int64_t>();
  const int64_t n_seq = offsets.numel() - 1;
  TORCH_CHECK(start[0] == 0 && start[n_seq] == T, "offsets must run from 0 to T = ", T, ", got ", start[0],
              " .. ", start[n_seq]);
  int64_t longest = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    TORCH_CHECK(start[s + 1] >= start[s], "offsets must not decrease, but offsets[", s + 1, "] = ", start[s + 1],
                " < offsets[", s, "] = ", start[s]);
    longest = std::max(longest, start[s + 1] - start[s]);
  }
  auto out = at::empty({T, C}, qkv.options());
  attend_all(qkv.data_ptr<float>(), out.data_ptr<float>(), n_seq, heads, C, longest,
             [start](int64_t s) { return start[s]; }, [start](int64_t s) { return start[s + 1] - start[s]; },
             [](int64_t) -> const bool* { return nullptr; });
  return out;
}

}  // namespace

TORCH_LIBRARY(leanbert_attention, m) {
  m.def("supported() -> bool", &supported);
  m.def("forward(Tensor qkv, int heads, Tensor? key_mask) -> Tensor");
  m.def("forward_unpadded(Tensor qkv, int heads, Tensor offsets) -> Tensor");
}

TORCH_LIBRARY_IMPL(leanbert_attention, CPU, m) {
  m.impl("forward", &forward);
  m.impl("forward_unpadded", &forward_unpadded);
}
