// Full self-attention, inference only, on the CPU, compiled for the machine it runs on.
//
// Same computation as attention/full.py's SDPA path, read straight from the fused QKV projection:
//
//     S = Q_h K_h^T / sqrt(Dh) (masked keys: -inf),   P = softmax_rows(S),   out_h = P V_h
//
// Cost per sequence and head: 4 L^2 Dh FLOPs and L^2 exponentials; memory: Q, K, V read once
// (from the projection's output, likely in L3), out written once. Per (sequence, head) task, in phases:
//   pack     K_h^T (Dh, Lp) by 16 x 16 register transposes, and V_h (L, Dh) contiguously: rows of
//            the fused QKV are 3 C floats apart, and a 9 KB stride folds every row onto the same
//            few L1 sets, so a head read in place thrashes L1 (measured: 1.3x slower in total).
//            Lp is L padded to 32 keys.
//   scores   S = Q K^T / sqrt(Dh) for all L rows (Lp^2 floats, in L2), 6 query rows x 64 keys per
//            register tile (24 accumulators; four K^T vectors and six broadcasts per step; a last
//            tile of 32 keys; heads of at most 32 keys take 8 x 32 tiles), with K^T in L1
//            throughout. The tile's epilogue scales, masks (and the keys past L) to -inf, keeps
//            each row's maximum and flags a NaN or +inf score of any key j < L, masked ones included; such a row's context is NaN, as in SDPA (which
//            adds its mask to the scores); the exp alone would map NaN to 0 and max_ps can drop it,
//            hiding a NaN in Q or K. Meanwhile the Q, K and V rows of the thread's next task are
//            prefetched into L2.
//   softmax  per row: a vector exp of S - max (Cephes' degree-6 polynomial, 2^n by scalef; below
//            -87 an exact 0, never a denormal, which would cost a microcode assist per FMA in P V)
//            and the row sum.
//   context  P V_h, 8 rows x 32 columns per tile (16 accumulators), with V in L1 throughout,
//            scaled by 1 / row sum on the way out (a NaN or inf in V reaches every row that reads
//            it through the FMAs, as in SDPA).
// Threads: PyTorch's intra-op pool, taking the B x heads tasks in small chunks from a shared counter.
// Two layouts: `forward` takes the padded batch (B, L, 3 C) and a key mask; `forward_unpadded` takes
// the real tokens only (T, 3 C) and where each sequence starts, so that an unpadded encoder never
// scatters its tokens into a (B, L) grid and gathers them back around every attention.
// Measured on 2 cores, 12 heads of 64, in one process (noisy host: ranges over several runs): against
// PyTorch's SDPA (flash) kernel 1.2-1.36x at B = 8, L = 128, 1.3-1.4x at 16 x 64 and 32 x 32, 1.0-1.15x
// at L = 256 and 512, 0.9x from L = 1024 (native.py's MAX_LENGTH keeps SDPA above 128). Against the
// previous design (8 x 32 tiles for both products, scores and context strip by strip, so that K^T and
// V, 64 KB together, evicted each other from L1; masking and row maxima in a pass of their own; fixed
// halves of the tasks per thread; no prefetch): 1.04-1.26x at 8 x 128, 1.1-1.2x at 16 x 64, 1.0-1.1x
// at 32 x 32 and on unpadded batches of 5-60 tokens, 1.1-1.4x on unpadded batches of 20-128 tokens,
// 0.87-0.94x on padded batches of 8-token sequences. AVX-512 only: elsewhere `supported()` is false.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
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

constexpr int kScoreRows = 6;    // query rows per score tile (8 for heads of at most 32 keys)
constexpr int kScoreKeys = 64;   // keys per score tile: four vectors (24 accumulators); a last tile of 32
constexpr int kKeyPad = 32;      // keys are padded to a multiple of this
constexpr int kMaxRows = 8;      // the most rows any tile computes
constexpr int kContextRows = 8;  // rows of P per context tile
constexpr int kContextCols = 32; // context columns per context tile: two vectors (16 accumulators)

inline int64_t padded_keys(int64_t L) { return (L + kKeyPad - 1) / kKeyPad * kKeyPad; }

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

// The register tile both products use: acc[r][v] = sum_k a[r * a_stride + k] b[k * b_stride + 16 v : +16],
// R rows of A broadcast against NV vectors of a B row per step (R NV accumulators, NV B loads and R
// broadcasts per R NV FMAs).
template <int R, int NV>
inline void multiply_tile(const float* a, int64_t a_stride, const float* b, int64_t b_stride, int64_t depth,
                          __m512 (&acc)[R][NV]) {
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth; ++k) {
    __m512 bk[NV];
    for (int v = 0; v < NV; ++v) bk[v] = _mm512_loadu_ps(b + k * b_stride + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512 s = _mm512_set1_ps(a[r * a_stride + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(s, bk[v], acc[r][v]);
    }
  }
}

// Scores of R queries (q, rows Dh apart) against 16 NV keys (kt, K^T rows Lp apart):
// s[r * Lp + j] = scale q_r . k_j, -inf where `kept` (one mask per 16 keys) drops key j. The same pass
// keeps each row's running maximum (16 lanes, row_max[16 r]) and flags a NaN or +inf score of an
// existing key, masked ones included (poisoned[r]). Kept out of line so that its accumulators own
// the registers.
template <int R, int NV>
__attribute__((noinline)) void score_tile(const float* q, int64_t Dh, const float* kt, int64_t Lp, float scale,
                                          const __mmask16* exists, const __mmask16* kept, float* s,
                                          float* row_max, __mmask16* poisoned) {
  static_assert(R * NV <= 24, "accumulators, B vectors and the broadcast must fit in 32 registers");
  __m512 acc[R][NV];
  multiply_tile<R, NV>(q, Dh, kt, Lp, Dh, acc);
  const __m512 factor = _mm512_set1_ps(scale), minus_inf = _mm512_set1_ps(-INFINITY);
  for (int r = 0; r < R; ++r) {
    __m512 high = _mm512_loadu_ps(row_max + 16 * r);
    __mmask16 bad = 0;
    for (int v = 0; v < NV; ++v) {
      const __m512 raw = _mm512_mul_ps(acc[r][v], factor);
      bad |= _mm512_mask_cmp_ps_mask(exists[v], raw, _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
      const __m512 score = _mm512_mask_mov_ps(minus_inf, kept[v], raw);
      _mm512_storeu_ps(s + r * Lp + 16 * v, score);
      high = _mm512_max_ps(high, score);
    }
    _mm512_storeu_ps(row_max + 16 * r, high);
    poisoned[r] |= bad;
  }
}

// out[r * C + 0:32] = row_scale[r] * sum_k p[r * Lp + k] v[k * Dh + 0:32] for r < rows.
__attribute__((noinline)) void context_tile(const float* p, int64_t Lp, const float* v, int64_t Dh, int64_t L,
                                            const float* row_scale, int rows, float* out, int64_t C) {
  constexpr int NV = kContextCols / 16;
  __m512 acc[kContextRows][NV];
  multiply_tile<kContextRows, NV>(p, Lp, v, Dh, L, acc);
  auto store = [&](int r) {
    const __m512 factor = _mm512_set1_ps(row_scale[r]);
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(out + r * C + 16 * c, _mm512_mul_ps(acc[r][c], factor));
  };
  if (rows == kContextRows) {  // the common case, unrolled: the accumulators never leave the registers
    for (int r = 0; r < kContextRows; ++r) store(r);
  } else {
    for (int r = 0; r < rows; ++r) store(r);
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
  if (keep == nullptr || exists == 0) return exists;  // (keep + j0 may lie past the mask's end)
  const __m128i bytes = _mm_maskz_loadu_epi8(exists, keep + j0);
  return _mm_test_epi8_mask(bytes, bytes);
}

// Asks for the Q, K and V lines of rows [r0, r1) of the head at `head` (rows `row` apart) to be brought into
// L2 while the current head computes: a head's rows are 9 KB apart in the fused layout, so the hardware
// prefetchers, which stay within a 4 KB page, never fetch them ahead, and each row costs a miss to L3.
inline void prefetch_head_rows(const float* head, int64_t row, int64_t C, int64_t Dh, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r)
    for (int part = 0; part < 3; ++part)
      for (int64_t d = 0; d < Dh; d += 16)
        _mm_prefetch(reinterpret_cast<const char*>(head + r * row + part * C + d), _MM_HINT_T1);
}

// Per-thread scratch for one (sequence, head) of up to Lp = padded_keys(longest) tokens: K^T, V, a query
// strip, the scores S (then P) with their row maxima, poison flags and 1 / row sums, and the key masks.
struct Scratch {
  std::vector<float> kt, v, q, s, row_max, inv_sum;
  std::vector<__mmask16> poisoned, exists, kept;
  Scratch(int64_t Lp, int64_t Dh)
      : kt(Dh * Lp), v(Lp * Dh), q(kMaxRows * Dh), s((Lp + kMaxRows) * Lp), row_max((Lp + kMaxRows) * 16),
        inv_sum(Lp + kMaxRows), poisoned(Lp + kMaxRows), exists(Lp / 16), kept(Lp / 16) {}
};

// S (rows Lp apart in w.s) = the masked, scaled scores of a head's L queries, R query rows per strip,
// with each row's maximum and poison flag; the Q, K and V rows of the thread's next head (`next`, of
// `next_length` rows, or null) are prefetched into L2 along the way.
template <int R>
void scores(const float* base, int64_t row, int64_t C, int64_t L, int64_t Lp, int64_t Dh, float scale,
            const float* next, int64_t next_length, Scratch& w) {
  float *q = w.q.data(), *kt = w.kt.data();
  const int64_t strips = (L + R - 1) / R;
  for (int64_t i0 = 0; i0 < L; i0 += R) {
    const int64_t strip = i0 / R;
    if (next != nullptr) prefetch_head_rows(next, row, C, Dh, strip * next_length / strips, (strip + 1) * next_length / strips);
    for (int r = 0; r < R; ++r) {  // rows past L repeat the last (their scores are never used)
      std::memcpy(q + r * Dh, base + std::min(i0 + r, L - 1) * row, Dh * sizeof(float));
      _mm512_storeu_ps(w.row_max.data() + 16 * (i0 + r), _mm512_set1_ps(-INFINITY));
      w.poisoned[i0 + r] = 0;
    }
    for (int64_t j0 = 0; j0 < Lp; j0 += kScoreKeys) {
      const __mmask16 *exists = w.exists.data() + j0 / 16, *kept = w.kept.data() + j0 / 16;
      float *row_max = w.row_max.data() + 16 * i0, *si = w.s.data() + i0 * Lp + j0;
      if constexpr (R * kScoreKeys / 16 <= 24) {
        if (Lp - j0 >= kScoreKeys) {
          score_tile<R, kScoreKeys / 16>(q, Dh, kt + j0, Lp, scale, exists, kept, si, row_max, w.poisoned.data() + i0);
          continue;
        }
      }
      // the last 32 keys (or, for 8-row strips, the only 32)
      score_tile<R, kKeyPad / 16>(q, Dh, kt + j0, Lp, scale, exists, kept, si, row_max, w.poisoned.data() + i0);
    }
  }
}

// P = exp(S - row max) in place over a head's L rows of S (Lp apart), and 1 / row sums in w.inv_sum. A
// poisoned row's context is NaN, as in SDPA (which adds its mask to the scores), and a row with no key to
// attend to gets a zero context.
void softmax_rows(int64_t L, int64_t Lp, Scratch& w) {
  for (int64_t i = 0; i < L; ++i) {
    float* pi = w.s.data() + i * Lp;
    const float m = _mm512_reduce_max_ps(_mm512_loadu_ps(w.row_max.data() + 16 * i));
    if (w.poisoned[i] != 0 || m == -INFINITY) {
      std::memset(pi, 0, Lp * sizeof(float));
      w.inv_sum[i] = w.poisoned[i] != 0 ? NAN : 0.0f;
      continue;
    }
    const __m512 high = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < Lp; j += 16) {
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(pi + j), high));
      _mm512_storeu_ps(pi + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    w.inv_sum[i] = 1.0f / _mm512_reduce_add_ps(sum);
  }
}

// One (sequence, head) of L tokens: base points at q[0] of the head in the fused row layout (rows `row`
// apart); out at its context columns (rows C apart). `next` is the head this thread takes next (or null),
// of `next_length` rows, prefetched during the scores.
void attend_head(const float* base, int64_t row, int64_t C, int64_t L, int64_t Dh, const bool* keep, float scale,
                 float* out, const float* next, int64_t next_length, Scratch& w) {
  const int64_t Lp = padded_keys(L);  // S's row stride for this head
  float *kt = w.kt.data(), *v = w.v.data(), *s = w.s.data();
  for (int64_t j0 = 0; j0 < Lp; j0 += 16) {  // kt (Dh, Lp) = K_h^T, zero past L
    const float* rows[16];
    for (int64_t d0 = 0; d0 < Dh; d0 += 16) {
      for (int i = 0; i < 16; ++i) rows[i] = j0 + i < L ? base + (j0 + i) * row + C + d0 : nullptr;
      transpose16(rows, kt + d0 * Lp + j0, Lp);
    }
  }
  for (int64_t j = 0; j < L; ++j) std::memcpy(v + j * Dh, base + j * row + 2 * C, Dh * sizeof(float));
  for (int64_t b = 0; b < Lp / 16; ++b) {
    w.exists[b] = existing_keys(16 * b, L);
    w.kept[b] = kept_keys(w.exists[b], 16 * b, keep);
  }

  // S = Q K^T / sqrt(Dh), masked: K^T stays in L1, S (Lp^2 floats) in L2. Heads of up to 32 keys take
  // 8-row strips (6-row ones would compute 12 rows for 8 at L = 8)
  if (Lp == kKeyPad)
    scores<kMaxRows>(base, row, C, L, Lp, Dh, scale, next, next_length, w);
  else
    scores<kScoreRows>(base, row, C, L, Lp, Dh, scale, next, next_length, w);

  softmax_rows(L, Lp, w);  // S -> P in place, with 1 / row sums
  const int64_t context_rows = (L + kContextRows - 1) / kContextRows * kContextRows;
  std::memset(s + L * Lp, 0, (context_rows - L) * Lp * sizeof(float));  // rows the last strip reads, never stores

  // context = P V / row sums, strip by strip: V stays in L1
  for (int64_t i0 = 0; i0 < L; i0 += kContextRows) {
    const int valid = static_cast<int>(std::min<int64_t>(kContextRows, L - i0));
    for (int64_t c0 = 0; c0 < Dh; c0 += kContextCols)
      context_tile(s + i0 * Lp, Lp, v + c0, Dh, L, w.inv_sum.data() + i0, valid, out + i0 * C + c0, C);
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
// (one bool per row) or null. Scratch is sized for the longest, max_length. The threads take tasks
// in small chunks from a shared counter (the two cores of these VMs run 10-20% apart, so fixed
// halves wait for the slower one), each claiming its next chunk before it starts the current one,
// so that it can prefetch the next task's rows.
template <typename First, typename Length, typename Keep>
void attend_all(const float* src, float* dst, int64_t n_seq, int64_t heads, int64_t C, int64_t max_length,
                const First& first, const Length& length, const Keep& keep) {
#if LEANBERT_ATTENTION_AVX512
  const int64_t Dh = C / heads, row = 3 * C, tasks = n_seq * heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  const auto head_base = [&](int64_t task) { return src + first(task / heads) * row + (task % heads) * Dh; };
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), tasks);
  // chunks of ~1/16 of a thread's share, 1 to 8 tasks: the counter's cache line moves between the
  // cores at every claim, which costs more than a short head's work when claims are one task each
  const int64_t chunk = std::clamp<int64_t>(tasks / (16 * std::max<int64_t>(workers, 1)), 1, 8);
  std::atomic<int64_t> counter{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    Scratch scratch(padded_keys(max_length), Dh);
    int64_t begin = counter.fetch_add(chunk, std::memory_order_relaxed);
    while (begin < tasks) {
      const int64_t end = std::min(begin + chunk, tasks);
      const int64_t after = counter.fetch_add(chunk, std::memory_order_relaxed);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t following = task + 1 < end ? task + 1 : after;
        const int64_t s = task / heads, L = length(s);
        const int64_t next_length = following < tasks ? length(following / heads) : 0;
        if (L > 0)
          attend_head(head_base(task), row, C, L, Dh, keep(s), scale, dst + first(s) * C + (task % heads) * Dh,
                      next_length > 0 ? head_base(following) : nullptr, next_length, scratch);
      }
      begin = after;
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
