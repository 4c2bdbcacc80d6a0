// Fast feed-forward (FFF) forward pass on the CPU, compiled for the machine it runs on.
//
// Same computation as fff_kernel.py's numba forward (and the plain PyTorch reference path):
// every token x_t (width W) walks each tree k (N = 2^(D+1) - 1 nodes, heap order) from the root,
//
//     r = k N + n,   l = w_in[r] . x_t + b_in[r],   next n = 2n + 1 + [l > 0]
//     y_t = sum_{k,d} GELU(l_{t,k,d}) w_out_t[r_{t,k,d}]
//
// Cost per token: K (D+1) dot products and as many axpys of length W (4 K (D+1) W FLOPs). Memory:
// x (T, W) read 1 + K times (once per route half and tree), the visited rows of w_in and w_out_t
// (K N, W) read, y (T, W) written once, plus (T, K (D+1)) rows, logits and activations. The
// arithmetic is small; what costs is memory, so the kernels are shaped by where each row comes from:
//   route    four tokens at a time walk the tree (four independent dot products; their x rows
//            stay in L1), in two halves: the top half in token order, the bottom half in the order
//            of the subtree each token entered, so that a subtree's rows are read once (`route`).
//   combine  tokens go in leaf order, four at a time: rows the four share (the top of their
//            paths) are loaded once for all four, every output chunk is accumulated in registers
//            across all of a token's rows, and written once with non-temporal stores (y is not
//            read back here, so it should not evict the weights from the cache).
// Threads: PyTorch's intra-op pool (at::parallel_for), so no second thread pool competes with it,
// handing out chunks dynamically (whole subtrees in the route's bottom half, so that a subtree's
// rows go to one core). Large outputs come from a small recycling pool (BufferPool).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace {

// One vector register's worth of floats: 16 with AVX-512, 8 with AVX/AVX2, else 4 (SSE, NEON).
// The kernels keep up to 14 vectors live (the combine: 8 accumulators, 4 broadcasts, 2 loads),
// which fits AVX2's 16 registers only when a vector is one register. With 16-float vectors on
// AVX2 (two registers each) the accumulators spilled to the stack: on a Zen 3 host the forward
// took 22.7 ms against 7.6 ms now (T = 8192, W = 768, D = 11, each call with cold caches).
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
#elif defined(__AVX__)
constexpr int64_t kLanes = 8;
#else
constexpr int64_t kLanes = 4;
#endif
constexpr int64_t kStep = 2 * kLanes;  // columns per pass: two vectors, for two independent chains
// Output columns per pass of the four-token combine, in vectors: 4 with AVX-512 (16 accumulators, 4 row
// vectors and a broadcast of its 32 registers), else 2 (AVX2 has 16). Four vectors per pass load each
// coefficient's broadcast once for 64 columns instead of 32: on a Zen 5 host the whole forward 3-4% faster
// (T = 8192, W = 768, D = 11, each call after a dense layer; 5.63-5.67 against 5.82-5.84 ms and 6.51-6.61
// against 6.75-6.84 ms in two runs of 81 turns). The AVX2 build (2 vectors) is unchanged: 7.56 against 7.63 ms.
#if defined(__AVX512F__)
constexpr int kCombineVecs = 4;
#else
constexpr int kCombineVecs = 2;
#endif
using vec = float __attribute__((vector_size(4 * kLanes)));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// A broadcast: one load uop when s comes from memory. Built element by element (or as `vec{} + s`)
// it compiled to a scalar load or add and a register shuffle, and the shuffle takes a port the
// FMAs need: on AVX-512 the combine's arithmetic alone (rows in L1, one thread) took 25% longer,
// and on the Zen 3 host the whole forward 8.7 against 7.6 ms.
inline vec splat(float s) {
#if defined(__AVX512F__)
  return reinterpret_cast<vec>(_mm512_set1_ps(s));
#elif defined(__AVX__)
  return reinterpret_cast<vec>(_mm256_set1_ps(s));
#else
  vec v;
  for (int64_t i = 0; i < kLanes; ++i) v[i] = s;
  return v;
#endif
}

inline float hsum(vec v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
#elif defined(__AVX__)
  const __m256 w = reinterpret_cast<__m256>(v);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps(w, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
#else
  float s = 0.0f;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
#endif
}

// Stores a finished output chunk; non-temporal (bypassing the cache) where the target is aligned.
inline void store(float* p, vec v) {
#if defined(__AVX512F__)
  if ((reinterpret_cast<std::uintptr_t>(p) & 63) == 0) {
    _mm512_stream_ps(p, reinterpret_cast<__m512>(v));
    return;
  }
#elif defined(__AVX__)
  if ((reinterpret_cast<std::uintptr_t>(p) & 31) == 0) {
    _mm256_stream_ps(p, reinterpret_cast<__m256>(v));
    return;
  }
#endif
  std::memcpy(p, &v, sizeof v);
}

inline void store_fence() {
#if defined(__AVX512F__) || defined(__AVX__)
  _mm_sfence();  // non-temporal stores are weakly ordered: publish them before the thread returns
#endif
}

// Runs fn(begin, end) over [0, n) in chunks of `chunk`, handed out one at a time to PyTorch's
// threads. Dynamic rather than static halves: on a shared machine one core is often slower than
// the other (measured 10-20% apart), and a static split would wait for it.
template <typename F>
void parallel_chunks(int64_t n, int64_t chunk, const F& fn) {
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), n_chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1); c < n_chunks; c = next.fetch_add(1))
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  });
}

// s_i = x_i . w_i for four (x, w) pairs of rows of length W. Not inlined: inside the walk the
// loop's eight row pointers competed with the walk's own for registers and three were reloaded
// from the stack on every pass; on its own the loop keeps all eight in registers (Zen 3 host:
// forward 4-5% faster, T = 8192, W = 768, D = 11).
__attribute__((noinline)) void dot4(const float* const* x, const float* const* w, int64_t width, float* s) {
  vec a0{}, a1{}, a2{}, a3{}, b0{}, b1{}, b2{}, b3{};  // two accumulators per pair: FMA latency
  int64_t j = 0;
  for (; j + kStep <= width; j += kStep) {
    a0 += load(x[0] + j) * load(w[0] + j);
    a1 += load(x[1] + j) * load(w[1] + j);
    a2 += load(x[2] + j) * load(w[2] + j);
    a3 += load(x[3] + j) * load(w[3] + j);
    b0 += load(x[0] + j + kLanes) * load(w[0] + j + kLanes);
    b1 += load(x[1] + j + kLanes) * load(w[1] + j + kLanes);
    b2 += load(x[2] + j + kLanes) * load(w[2] + j + kLanes);
    b3 += load(x[3] + j + kLanes) * load(w[3] + j + kLanes);
  }
  for (; j + kLanes <= width; j += kLanes) {
    a0 += load(x[0] + j) * load(w[0] + j);
    a1 += load(x[1] + j) * load(w[1] + j);
    a2 += load(x[2] + j) * load(w[2] + j);
    a3 += load(x[3] + j) * load(w[3] + j);
  }
  s[0] = hsum(a0 + b0);
  s[1] = hsum(a1 + b1);
  s[2] = hsum(a2 + b2);
  s[3] = hsum(a3 + b3);
  for (; j < width; ++j)
    for (int i = 0; i < 4; ++i) s[i] += x[i][j] * w[i][j];
}

// Tokens sorted (stably) by key in [0, n_keys): counting sort, (T,) -> (T,). Returns the offsets
// (n_keys + 1,): the tokens with key b are order[offset[b] .. offset[b + 1]).
std::vector<int64_t> counting_order(const int64_t* key, int64_t key_stride, int64_t key_offset, int64_t n_tokens,
                                    int64_t n_keys, int64_t* order) {
  std::vector<int64_t> start(n_keys + 1, 0);
  for (int64_t t = 0; t < n_tokens; ++t) ++start[key[t * key_stride] - key_offset + 1];
  for (int64_t k = 0; k < n_keys; ++k) start[k + 1] += start[k];
  std::vector<int64_t> offset = start;
  for (int64_t t = 0; t < n_tokens; ++t) order[start[key[t * key_stride] - key_offset]++] = t;
  return offset;
}

// The trees a route walks: w_in (K N, W) and b_in (K N,) or null, heap order within each tree.
struct Trees {
  const float* w_in;
  const float* b_in;
  int64_t width, n_nodes, n_levels, n_trees;
};

// Walks four tokens (x rows xs, indices t; a short group repeats its last token, only the first
// n_real are recorded) down tree k from level d0 to d1, depth first, so that their x rows stay in
// L1 across the levels. node (4,) holds each token's node at d0 on entry and at d1 on return;
// rows/logits (T, K L) get column k L + d.
inline void walk4(const float* const* xs, const int64_t* t, int n_real, const Trees& trees, int64_t k,
                  int64_t d0, int64_t d1, int64_t* node, int64_t* rows, float* logits) {
  const int64_t n_cols = trees.n_trees * trees.n_levels;
  for (int64_t d = d0; d < d1; ++d) {
    int64_t r[4];
    const float* ws[4];
    for (int q = 0; q < 4; ++q) {
      r[q] = k * trees.n_nodes + node[q];
      ws[q] = trees.w_in + r[q] * trees.width;
    }
    float s[4];
    dot4(xs, ws, trees.width, s);
    for (int q = 0; q < n_real; ++q) {
      const float l = s[q] + (trees.b_in != nullptr ? trees.b_in[r[q]] : 0.0f);
      rows[t[q] * n_cols + k * trees.n_levels + d] = r[q];
      logits[t[q] * n_cols + k * trees.n_levels + d] = l;
      node[q] = 2 * node[q] + (l > 0.0f ? 2 : 1);  // 0 and NaN go left, as in the reference
    }
  }
}

// Walks the tokens at positions [begin, end) of `order` (null: 0, 1, ..., T - 1), four at a time,
// through trees [k0, k1) from level d0 to d1, on the calling thread. node (K, T) holds each
// token's node at d0 on entry and at d1 on return.
void walk(const float* x, const Trees& trees, const int64_t* order, int64_t begin, int64_t end, int64_t n_tokens,
          int64_t k0, int64_t k1, int64_t d0, int64_t d1, int64_t* node, int64_t* rows, float* logits) {
  for (int64_t i0 = begin; i0 < end; i0 += 4) {
    const int n_real = int(std::min<int64_t>(4, end - i0));
    int64_t t[4];
    const float* xs[4];
    for (int q = 0; q < 4; ++q) {
      const int64_t i = i0 + std::min(q, n_real - 1);
      t[q] = order != nullptr ? order[i] : i;
      xs[q] = x + t[q] * trees.width;
    }
    for (int64_t k = k0; k < k1; ++k) {
      int64_t here[4];
      for (int q = 0; q < 4; ++q) here[q] = node[k * n_tokens + t[q]];
      walk4(xs, t, n_real, trees, k, d0, d1, here, rows, logits);
      for (int q = 0; q < n_real; ++q) node[k * n_tokens + t[q]] = here[q];
    }
  }
}

// Every token walks every tree: x (T, W), trees -> rows (T, K L) int64 and logits (T, K L),
// L = D + 1, column k L + d holding tree k, level d. In two halves:
//   top     levels [0, S), S = L / 2, tokens in their own order, 64 at a time to a thread: these
//           2^S - 1 rows per tree (189 KB at D = 11) stay in L2, and x streams from memory once.
//   bottom  levels [S, L), tree by tree, tokens sorted by their node at level S, a subtree at a
//           time to a thread (cut in pieces only when it holds more than T / (4 threads) tokens):
//           tokens in the same subtree (2^(L-S) - 1 rows) follow each other on one core, so its
//           rows come from memory once per subtree rather than once per token, into one L2.
// Measured at T = 8192, W = 768, D = 11 on 2 cores, each call after a dense layer (cold weights):
// against walking 64-token blocks through all levels, the route 6.0 against 6.6 ms, the forward
// 4-7% faster (13-17% with warm weights); handing out whole subtrees rather than 64-token chunks
// (which put a subtree's rows into both cores' L2), the bottom half 3-10% faster (0.1-0.3 ms).
// Splitting at S = 4, 5, 6 or 7 measured alike; prefetching the next group's x rows, into L1 or
// L2, or the next subtree's rows, was slower or no faster.
void route(const float* x, const Trees& trees, int64_t n_tokens, int64_t* rows, float* logits) {
  const int64_t split = trees.n_levels / 2, first = (int64_t(1) << split) - 1;  // level S starts at heap index 2^S - 1
  std::vector<int64_t> node(trees.n_trees * n_tokens, 0), order(n_tokens);
  const int64_t most = std::max<int64_t>(64, n_tokens / (4 * at::get_num_threads()));  // tokens per bottom item
  parallel_chunks(n_tokens, 64, [&](int64_t begin, int64_t end) {
    walk(x, trees, nullptr, begin, end, n_tokens, 0, trees.n_trees, 0, split, node.data(), rows, logits);
  });
  for (int64_t k = 0; k < trees.n_trees; ++k) {
    const auto offset =
        counting_order(node.data() + k * n_tokens, 1, first, n_tokens, int64_t(1) << split, order.data());
    std::vector<int64_t> piece;  // work items: whole subtrees, cut only when one holds more than `most`
    for (int64_t b = 0; b + 1 < int64_t(offset.size()); ++b)
      for (int64_t i = offset[b]; i < offset[b + 1]; i += most) piece.push_back(i);
    piece.push_back(n_tokens);
    parallel_chunks(int64_t(piece.size()) - 1, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        walk(x, trees, order.data(), piece[i], piece[i + 1], n_tokens, k, k + 1, split, trees.n_levels,
             node.data(), rows, logits);
    });
  }
}

// Columns [j0, width) one float at a time: the tail when W is not a multiple of kLanes.
inline void combine_tail(const float* src, const int64_t* r, const float* c, int64_t n_visits, int64_t width,
                         int64_t j0, float* y) {
  for (int64_t j = j0; j < width; ++j) {
    float s = 0.0f;
    for (int64_t v = 0; v < n_visits; ++v) s += c[v] * src[r[v] * width + j];
    y[j] = s;
  }
}

// Columns [j, j + NV kLanes) of four tokens' outputs: y_q = sum_v k[4 v + q] row[4 v + q], rows (V, 4) and
// coefficients k (V, 4) visit-major; the first `shared` visits' rows are the same for all four, so each
// of their vectors is loaded once for four FMAs. The (4 tokens) x (NV vectors) accumulators stay in
// registers across all visits, and each is stored once.
template <int NV>
inline __attribute__((always_inline)) void combine4(const float* const* row, const float* k, int64_t shared,
                                                    int64_t n_visits, int64_t j, float* const* y) {
  vec acc[4][NV] = {};
  for (int64_t v = 0; v < shared; ++v) {  // one row, four coefficients
    vec part[NV];
    for (int c = 0; c < NV; ++c) part[c] = load(row[4 * v] + j + c * kLanes);
    for (int q = 0; q < 4; ++q) {
      const vec kq = splat(k[4 * v + q]);
      for (int c = 0; c < NV; ++c) acc[q][c] += kq * part[c];
    }
  }
  for (int64_t v = shared; v < n_visits; ++v)  // four rows
    for (int q = 0; q < 4; ++q) {
      const vec kq = splat(k[4 * v + q]);
      for (int c = 0; c < NV; ++c) acc[q][c] += kq * load(row[4 * v + q] + j + c * kLanes);
    }
  for (int q = 0; q < 4; ++q)
    for (int c = 0; c < NV; ++c) store(y[q] + j + c * kLanes, acc[q][c]);
}

// out[t] = sum_v coef[t, v] src[rows[t, v]]:  src (R, W), rows/coef (T, V), order (T,) -> out (T, W).
void combine(const float* src, const int64_t* rows, const float* coef, const int64_t* order, int64_t n_tokens,
             int64_t n_visits, int64_t width, float* out) {
  const int64_t n_groups = (n_tokens + 3) / 4;
  parallel_chunks(n_groups, 32, [&](int64_t begin, int64_t end) {
    std::vector<const float*> row_buffer(4 * n_visits);  // (V, 4): the group's rows of src, visit-major
    std::vector<float> k_buffer(4 * n_visits);           // (V, 4): their coefficients
    std::vector<float> spare(width);                     // where a short last group's repeats are written
    const float** row = row_buffer.data();
    float* k = k_buffer.data();
    for (int64_t g = begin; g < end; ++g) {
      const int64_t i = 4 * g;
      const int n_real = int(std::min<int64_t>(4, n_tokens - i));  // a short last group repeats its last token
      const int64_t* r[4];
      const float* c[4];
      float* y[4];
      for (int q = 0; q < 4; ++q) {
        const int64_t t = order[i + std::min(q, n_real - 1)];
        r[q] = rows + t * n_visits;
        c[q] = coef + t * n_visits;
        y[q] = q < n_real ? out + t * width : spare.data();
      }
      int64_t shared = 0;  // leading visits whose row the four tokens share
      while (shared < n_visits && r[0][shared] == r[1][shared] && r[0][shared] == r[2][shared] &&
             r[0][shared] == r[3][shared])
        ++shared;
      for (int64_t v = 0; v < n_visits; ++v)  // once per group, not once per pass
        for (int q = 0; q < 4; ++q) {
          row[4 * v + q] = src + r[q][v] * width;
          k[4 * v + q] = c[q][v];
        }
      int64_t j = 0;  // columns: passes of kCombineVecs vectors, then of one, then one float at a time
      for (; j + kCombineVecs * kLanes <= width; j += kCombineVecs * kLanes)
        combine4<kCombineVecs>(row, k, shared, n_visits, j, y);
      for (; j + kLanes <= width; j += kLanes) combine4<1>(row, k, shared, n_visits, j, y);
      for (int q = 0; q < n_real; ++q) combine_tail(src, r[q], c[q], n_visits, width, j, y[q]);
    }
    store_fence();
  });
}

// Output buffers are recycled. A (T, W) output is 25 MB at T = 8192, W = 768, and glibc serves an
// allocation of that size with a fresh mmap: every call then takes ~6,000 page faults, which cost
// more than the kernels themselves (measured 6-11 ms a call on a 2-core VM, against ~6 ms of
// work). A tensor made here returns its buffer to this pool when it dies; the next output of a
// similar size takes it back, already mapped. The pool holds at most kMaxFree buffers and
// kMaxFreeBytes in all, evicting the oldest first, so that what it keeps follows the recent
// sizes; a buffer larger than kMaxFreeBytes is freed at once. `release()` frees them all.
class BufferPool {
 public:
  static BufferPool& instance() {
    static BufferPool* pool = new BufferPool();  // never destroyed: tensors may outlive static teardown
    return *pool;
  }

  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const size_t bytes = size_t(c10::multiply_integers(sizes)) * options.dtype().itemsize();
    if (bytes < kMinBytes) return at::empty(sizes, options);
    auto [data, capacity] = take(bytes);
    if (data == nullptr) {
      capacity = (bytes + 63) / 64 * 64;
      data = std::aligned_alloc(64, capacity);
    }
    TORCH_CHECK(data != nullptr, "fff_forward: out of memory allocating ", bytes, " bytes");
    return at::from_blob(data, sizes, [capacity](void* p) { instance().give(p, capacity); }, options);
  }

 // Frees every waiting buffer; returns how many there were.
  int64_t release() {
    std::vector<std::pair<size_t, void*>> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop.swap(free_);
      free_bytes_ = 0;
    }
    for (const auto& entry : drop) std::free(entry.second);
    return int64_t(drop.size());
  }

 private:
  static constexpr size_t kMinBytes = size_t(1) << 20;
  static constexpr size_t kMaxFree = 4;
  static constexpr size_t kMaxFreeBytes = size_t(128) << 20;  // five 25 MB outputs' worth

  // (buffer, capacity): the smallest free buffer that fits and wastes at most half of it, or null
  std::pair<void*, size_t> take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->first >= bytes && it->first <= 2 * bytes && (best == free_.end() || it->first < best->first)) best = it;
    if (best == free_.end()) return {nullptr, 0};
    const auto [capacity, data] = *best;
    free_.erase(best);
    free_bytes_ -= capacity;
    return {data, capacity};
  }

  void give(void* data, size_t capacity) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity > kMaxFreeBytes) {
        drop.push_back(data);
      } else {
        free_.emplace_back(capacity, data);  // newest last
        free_bytes_ += capacity;
        while (free_.size() > kMaxFree || free_bytes_ > kMaxFreeBytes) {  // evict the oldest
          drop.push_back(free_.front().second);
          free_bytes_ -= free_.front().first;
          free_.erase(free_.begin());
        }
      }
    }
    for (void* p : drop) std::free(p);
  }

  std::mutex mutex_;
  std::vector<std::pair<size_t, void*>> free_;  // (capacity in bytes, buffer), oldest first
  size_t free_bytes_ = 0;
};

void check_rows(const at::Tensor& t, const char* name, int64_t n_rows, int64_t width) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == 2,
              "fff_forward: ", name, " must be a contiguous float32 CPU matrix");
  TORCH_CHECK(t.size(0) == n_rows && t.size(1) == width, "fff_forward: ", name, " has shape ", t.sizes(),
              ", expected (", n_rows, ", ", width, ")");
}

// (y, rows, logits, act, order): the output (T, W), the visited rows and their logits and GELU
// activations (T, K (D+1)), and the tokens in the leaf order of the first tree (T,).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fff_forward(
    const at::Tensor& x, const at::Tensor& w_in, const std::optional<at::Tensor>& b_in, const at::Tensor& w_out_t,
    int64_t depth, int64_t trees) {
  TORCH_CHECK(depth >= 0 && trees >= 1, "fff_forward: needs depth >= 0 and trees >= 1");
  const int64_t n_levels = depth + 1, n_nodes = (int64_t(1) << n_levels) - 1;
  const int64_t n_tokens = x.size(0), width = x.size(1), n_visits = trees * n_levels;
  check_rows(x, "x", n_tokens, width);
  check_rows(w_in, "w_in", trees * n_nodes, width);
  check_rows(w_out_t, "w_out_t", trees * n_nodes, width);
  const float* bias = nullptr;
  if (b_in.has_value()) {
    TORCH_CHECK(b_in->scalar_type() == at::kFloat && b_in->is_contiguous() && b_in->numel() == trees * n_nodes,
                "fff_forward: b_in must be a contiguous float32 vector of ", trees * n_nodes);
    bias = b_in->data_ptr<float>();
  }
  auto rows = at::empty({n_tokens, n_visits}, x.options().dtype(at::kLong));
  auto logits = at::empty({n_tokens, n_visits}, x.options());
  auto order = at::empty({n_tokens}, x.options().dtype(at::kLong));
  auto y = BufferPool::instance().empty({n_tokens, width}, x.options());
  if (n_tokens == 0) return {y, rows, logits, logits.clone(), order};
  route(x.data_ptr<float>(), Trees{w_in.data_ptr<float>(), bias, width, n_nodes, n_levels, trees}, n_tokens,
        rows.data_ptr<int64_t>(), logits.data_ptr<float>());
  auto act = at::gelu(logits);  // PyTorch's GELU: the reference path's activation values
  const int64_t first_leaf = (int64_t(1) << depth) - 1;
  counting_order(rows.data_ptr<int64_t>() + depth, n_visits, first_leaf, n_tokens, int64_t(1) << depth,
                 order.data_ptr<int64_t>());
  combine(w_out_t.data_ptr<float>(), rows.data_ptr<int64_t>(), act.data_ptr<float>(), order.data_ptr<int64_t>(),
          n_tokens, n_visits, width, y.data_ptr<float>());
  return {y, rows, logits, act, order};
}

// Frees the output buffers waiting for reuse (`fff_native.release_buffers`); returns how many.
int64_t release_buffers() { return BufferPool::instance().release(); }

}  // namespace

// The operators' namespace, `torch.ops.leanbert_fff`. A test builds this file a second time without
// AVX (4-float vectors, as on ARM) under another namespace, to compare that build too. The two-step
// macros expand the name before TORCH_LIBRARY pastes it.
#ifndef LEANBERT_FFF_OPS
#define LEANBERT_FFF_OPS leanbert_fff
#endif
#define LEANBERT_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define LEANBERT_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)

LEANBERT_LIBRARY(LEANBERT_FFF_OPS, m) {
  m.def("release_buffers() -> int", &release_buffers);
  m.def("forward(Tensor x, Tensor w_in, Tensor? b_in, Tensor w_out_t, int depth, int trees) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

LEANBERT_LIBRARY_IMPL(LEANBERT_FFF_OPS, CPU, m) { m.impl("forward", &fff_forward); }
