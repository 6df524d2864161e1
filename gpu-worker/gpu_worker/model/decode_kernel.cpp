// One decode step of a small DeepSeek-V3 model on CPU in one call (compiled_decode.py builds and calls it).
//
// The torch-op small path (small_decode.py) spends ~2.7 us per op on ~400 ops whose arithmetic is
// ~0.1 MFLOP per layer; here the same maths runs as plain loops over the same folded weights
// (decode_weights.py), so a step costs its arithmetic. Every product, norm and softmax is float32, as in
// small_decode.py's one-thread path; cache entries are rounded to the cache dtype when written and the
// returned hidden state to the model dtype, with torch's round-to-nearest-even.
//
// A step of several sequences runs layer by layer over all of them. Products whose weights every token
// shares (qkv, query, output, router, dense MLP; each expert over the tokens that chose it) run on up
// to TILE_TOKENS tokens at once, loading each weight vector once for them; attention runs per token
// (each reads its own context). Each token's sums run in the same order whatever the other tokens are,
// so its result does not depend on the batch it is in, nor on how the batch is split across threads.
//
// Threads: a step of many sequences may be split into chunks of sequences run on torch's OpenMP threads
// (run_chunks; decode_threads.py says when). A chunk is a complete step of its sequences, so chunks need
// no synchronisation, and each thread has its own scratch.
//
// Plain C++ (no torch or Python headers: it compiles in about a second), no allocation in the step:
// the caller passes a float32 scratch buffer and grows it when the step asks for more.
//
// The products are written on 8-float vectors (f8 below) with several independent accumulators each, so
// they vectorise without -ffast-math and keep the multiply-add units busy; every sum runs in a fixed order.

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

// ---- descriptors, mirrored by ctypes Structures in compiled_decode.py (same field order and types) ----

struct LayerDesc {
    const float* qkv;          // [dim, q_cols + rank + rope]: queries (or q latent), kv latent, rope key
    const float* kv_gain;      // [rank]: kv_a norm gain
    const float* query;        // [q_cols, heads * entry] with q_lora (q_a norm gain folded); null without
    const float* out;          // [heads * rank, dim]: W_UV then o_proj
    const float* mlp_gate_up;  // dense layers: [dim, 2 * inter], post-attention gain folded
    const float* mlp_down;     // [inter, dim]
    const float* router;       // MoE layers: [dim, experts], post-attention gain folded
    const float* bias;         // [experts]: selection bias
    const float* gain;         // [dim]: post-attention gain, for the experts' input
    const void* expert_gate_up;  // [experts + shared, dim, 2 * expert_inter], model dtype (gate then up columns)
    const void* expert_down;     // [experts + shared, expert_inter, dim], model dtype
    int32_t moe;
    int32_t unused;  // explicit padding to 8 bytes, so that ctypes and C++ lay it out alike
};

struct ModelDesc {
    const LayerDesc* layers;
    float eps;      // input and post-attention norms
    float kv_eps;   // q_a and kv_a norms
    float scale;    // routed_scaling_factor
    int32_t n_layers, dim, heads, rank, rope, q_cols, q_norm, inter;
    int32_t experts, shared, expert_inter, top_k, n_group, topk_group, normalise;
    int32_t vocab, max_positions;
};

constexpr int MAX_EXPERTS = 1024;  // routed + shared; compiled_decode.py checks the model against these bounds
constexpr int MAX_GROUPS = 256;
constexpr int TILE_TOKENS = 4;  // tokens per product tile: 4 x 2 vectors of accumulators fill AVX2's registers

// ---- scalars ----

inline float widen(float v) { return v; }
inline float widen(uint16_t bf16) {
    uint32_t bits = uint32_t(bf16) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
}

// float32 -> bfloat16 bits, round to nearest even (c10::BFloat16's rounding, NaN -> 0x7FC0).
inline uint16_t to_bf16(float v) {
    if (v != v) return 0x7FC0;
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
inline void store(float* dst, float v) { *dst = v; }
inline void store(uint16_t* dst, float v) { *dst = to_bf16(v); }

// exp for float32 (Cephes' expf polynomial, ~1 ulp), branch-free so that loops over it vectorise
// (libm's expf does not without -ffast-math). Arguments are clamped to [-87, 88]: results stay normal,
// which only matters where exp(x) < 1e-38, below anything a softmax or sigmoid here can resolve.
inline float exp_f(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23: rounds to the nearest integer
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
    float two_n;
    std::memcpy(&two_n, &bits, 4);
    return p * two_n;
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_f(-x)); }
inline float silu(float x) { return x / (1.0f + exp_f(-x)); }

// ---- vectors ----

// 8 floats as one value (GCC/Clang vector extension): one AVX register with -mavx2, two SSE ones
// without. The auto-vectoriser does not reliably keep several accumulators in registers; these do.
typedef float f8 __attribute__((vector_size(32)));

inline f8 load8(const float* p) {
    f8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
inline void store8(float* p, f8 v) { std::memcpy(p, &v, sizeof v); }

// 8 bfloat16 -> float32 (exact: the bits shifted into the high half).
inline f8 load8(const uint16_t* p) {
#if defined(__AVX2__)
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return (f8)_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
#else
    f8 v;
    for (int k = 0; k < 8; k++) v[k] = widen(p[k]);
    return v;
#endif
}

inline float lanes_sum(f8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

// ---- products over a few tokens ----

// Columns j0 .. j0 + 8V of y[t] (+)= x[t] @ w for the T token rows x[t] [in], y[t] [out]; w [in, out]
// row-major (float or bf16 bits). T * V accumulators in registers over the whole input; each weight
// vector is loaded (and widened) once for the T tokens.
template <int T, int V, class W>
inline void tile(const float* const* x, const W* __restrict w, int in, int out, int j0, float* const* y,
                 bool add) {
    const float* xs[T];
    f8 acc[T][V];
    for (int t = 0; t < T; t++) {
        xs[t] = x[t];
        for (int v = 0; v < V; v++) acc[t][v] = add ? load8(y[t] + j0 + 8 * v) : f8{};
    }
    for (int i = 0; i < in; i++) {
        const W* row = w + size_t(i) * out + j0;
        float xi[T];
        for (int t = 0; t < T; t++) xi[t] = xs[t][i];
        for (int v = 0; v < V; v++) {
            const f8 wv = load8(row + 8 * v);
            for (int t = 0; t < T; t++) acc[t][v] += xi[t] * wv;
        }
    }
    for (int t = 0; t < T; t++)
        for (int v = 0; v < V; v++) store8(y[t] + j0 + 8 * v, acc[t][v]);
}

// y[t] (+)= x[t] @ w[in, out] for T token rows. Every output is one chain of multiply-adds over the input
// in order, in a vector lane or (the last out % 8 columns) a scalar: the same arithmetic for any T, so a
// token's result does not depend on the tokens it shares a tile with.
template <int T, class W>
void product_tile(const float* const* x, const W* w, int in, int out, float* const* y, bool add) {
    constexpr int V = T == 1 ? 8 : T == 2 ? 4 : 2;  // 8 accumulators at least where T allows
    int j = 0;
    for (; j + 8 * V <= out; j += 8 * V) tile<T, V>(x, w, in, out, j, y, add);
    if constexpr (V > 2)
        for (; j + 4 * V <= out; j += 4 * V) tile<T, V / 2>(x, w, in, out, j, y, add);
    for (; j + 8 <= out; j += 8) tile<T, 1>(x, w, in, out, j, y, add);
    for (; j < out; j++)
        for (int t = 0; t < T; t++) {
            float acc = add ? y[t][j] : 0.0f;
            for (int i = 0; i < in; i++) acc += x[t][i] * widen(w[size_t(i) * out + j]);
            y[t][j] = acc;
        }
}

// y[t] (+)= x[t] @ w for n <= TILE_TOKENS token rows given by pointers.
template <class W>
void product(int n, const float* const* x, const W* w, int in, int out, float* const* y, bool add) {
    switch (n) {
        case 1: return product_tile<1>(x, w, in, out, y, add);
        case 2: return product_tile<2>(x, w, in, out, y, add);
        case 3: return product_tile<3>(x, w, in, out, y, add);
        default: return product_tile<4>(x, w, in, out, y, add);
    }
}

// Rows [n, out] of y (+)= rows [n, in] of x @ w[in, out]; rows x_stride / y_stride floats apart.
template <class W>
void product_rows(int n, const float* x, int x_stride, const W* w, int in, int out, float* y, int y_stride,
                  bool add = false) {
    for (int t0 = 0; t0 < n; t0 += TILE_TOKENS) {
        const int k = n - t0 < TILE_TOKENS ? n - t0 : TILE_TOKENS;
        const float* xs[TILE_TOKENS];
        float* ys[TILE_TOKENS];
        for (int t = 0; t < k; t++) xs[t] = x + size_t(t0 + t) * x_stride, ys[t] = y + size_t(t0 + t) * y_stride;
        product(k, xs, w, in, out, ys, add);
    }
}

template <class W>
float dot(const W* __restrict a, const float* __restrict b, int n) {
    f8 acc = {};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
    float tail = 0.0f;
    for (; i < n; i++) tail += widen(a[i]) * b[i];
    return lanes_sum(acc) + tail;
}

float mean_square(const float* x, int n) { return dot(x, x, n) / float(n); }

// RMSNorm without gain (folded into the products that read it).
void rms_normalise(const float* __restrict h, int dim, float eps, float* __restrict x) {
    const float f = 1.0f / std::sqrt(mean_square(h, dim) + eps);
    for (int i = 0; i < dim; i++) x[i] = h[i] * f;
}

// Rotate the interleaved rope pairs of v by (cos, sin) pairs cs (YaRN's attention factor included):
// (v0, v1) -> (v0 c - v1 s, v0 s + v1 c), rope.apply_rope's complex product.
void rotate(float* v, const float* cs, int rope) {
    for (int p = 0; p < rope; p += 2) {
        const float c = cs[p], s = cs[p + 1], a = v[p], b = v[p + 1];
        v[p] = a * c - b * s;
        v[p + 1] = a * s + b * c;
    }
}

// scores[t][h] = queries[h] . context[t] for the 8 heads from h0 at the TB positions from t0
// (queries_t: [entry, heads]; context: [length, entry]). TB independent accumulators: the products
// over the entry are chains of dependent multiply-adds.
template <int TB>
inline void score_block(const float* __restrict queries_t, int heads, const float* __restrict context,
                        int entry, int64_t t0, int h0, float* __restrict scores) {
    f8 acc[TB] = {};
    for (int e = 0; e < entry; e++) {
        const f8 q = load8(queries_t + e * heads + h0);
        for (int k = 0; k < TB; k++) acc[k] += context[size_t(t0 + k) * entry + e] * q;
    }
    for (int k = 0; k < TB; k++) store8(scores + size_t(t0 + k) * heads + h0, acc[k]);
}

// latent[h][r] = sum over t of probs[t][h] * context[t][r] for the HB heads from h0 and the 8 * RV
// latent columns from r0 (probs: [length, heads]); HB * RV accumulators.
template <int HB, int RV>
inline void mix_block(const float* __restrict probs, int heads, const float* __restrict context, int entry,
                      int64_t length, int h0, int r0, int rank, float* __restrict latent) {
    f8 acc[HB][RV] = {};
    for (int64_t t = 0; t < length; t++) {
        f8 c[RV];
        for (int v = 0; v < RV; v++) c[v] = load8(context + size_t(t) * entry + r0 + 8 * v);
        for (int j = 0; j < HB; j++) {
            const float p = probs[size_t(t) * heads + h0 + j];
            for (int v = 0; v < RV; v++) acc[j][v] += p * c[v];
        }
    }
    for (int j = 0; j < HB; j++)
        for (int v = 0; v < RV; v++) store8(latent + (h0 + j) * rank + r0 + 8 * v, acc[j][v]);
}

template <int HB>
void mix_heads(const float* probs, int heads, const float* context, int entry, int64_t length, int h0, int rank,
               float* latent) {
    int r = 0;
    for (; r + 16 <= rank; r += 16) mix_block<HB, 2>(probs, heads, context, entry, length, h0, r, rank, latent);
    for (; r + 8 <= rank; r += 8) mix_block<HB, 1>(probs, heads, context, entry, length, h0, r, rank, latent);
    for (; r < rank; r++)
        for (int j = h0; j < h0 + HB; j++) {
            float sum = 0.0f;
            for (int64_t t = 0; t < length; t++) sum += probs[size_t(t) * heads + j] * context[size_t(t) * entry + r];
            latent[j * rank + r] = sum;
        }
}

// scores [length, heads] -> exp(score - the head's maximum) in place, and each head's sum of them into
// sums [heads] (the softmax divides the weighted sum once instead of every probability). Blocks of 8
// heads keep their maxima and sums in registers; the rest (heads % 8) run through memory.
void softmax_numerators(float* __restrict scores, int64_t length, int heads, float* __restrict sums) {
    int h0 = 0;
    for (; h0 + 8 <= heads; h0 += 8) {
        f8 top = load8(scores + h0);
        for (int64_t t = 1; t < length; t++) {
            const f8 v = load8(scores + size_t(t) * heads + h0);
            for (int k = 0; k < 8; k++) top[k] = v[k] > top[k] ? v[k] : top[k];
        }
        f8 sum = {};
        for (int64_t t = 0; t < length; t++) {
            float* row = scores + size_t(t) * heads + h0;
            for (int k = 0; k < 8; k++) row[k] = exp_f(row[k] - top[k]);
            sum += load8(row);
        }
        store8(sums + h0, sum);
    }
    for (int h = h0; h < heads; h++) {
        float top = scores[h], sum = 0.0f;
        for (int64_t t = 1; t < length; t++) {
            const float v = scores[size_t(t) * heads + h];
            top = v > top ? v : top;
        }
        for (int64_t t = 0; t < length; t++) {
            float& v = scores[size_t(t) * heads + h];
            v = exp_f(v - top);
            sum += v;
        }
        sums[h] = sum;
    }
}

// ---- scratch: every float32 intermediate of a chunk of a step, carved from the caller's buffer ----

struct Scratch {
    float* h;             // [n, dim]: residual stream
    float* x;             // [n, dim]: a product's normalised input
    float* qkv;           // [n, q_cols + entry]
    float* q_latent;      // [n, q_cols]: normalised query latent (q_lora)
    float* queries;       // [n, heads * entry]: rotated, scaled for the softmax
    float* queries_t;     // [entry, heads]: one token's, transposed
    float* context;       // [max_context, entry]: one token's context entries, widened
    float* scores;        // [max_context, heads]
    float* sums;          // [heads]
    float* latent;        // [n, heads * rank]: attention output in latent space
    float* y;             // [n, dim]: attention or feed-forward output
    float* logits;        // [n, experts]: router scores
    float* hidden;        // [max(n, TILE_TOKENS), 2 * inter]: gate and up products
    float* act;           // [max(n, TILE_TOKENS), inter]
    float* weights;       // [n, top_k + shared]: routing weights (shared experts: 1)
    int32_t* ids;         // [n, top_k + shared]: chosen experts, then the shared ones
    int32_t* starts;      // [experts + shared + 1]: each expert's run in the next two
    int32_t* bucket;      // [n * (top_k + shared)]: tokens by expert
    float* bucket_weights;  // [n * (top_k + shared)]: their routing weights
};

// Floats a chunk of n tokens needs; with base, also points s's fields into base.
int64_t carve(const ModelDesc& m, int n, int64_t max_context, float* base, Scratch* s) {
    const int64_t entry = m.rank + m.rope, heads = m.heads, rows = n > TILE_TOKENS ? n : TILE_TOKENS;
    const int64_t inter = m.inter > m.expert_inter ? m.inter : m.expert_inter, chosen = m.top_k + m.shared;
    int64_t used = 0;
    auto take = [&](int64_t floats) {
        float* at = base ? base + used : nullptr;
        used += (floats + 15) & ~int64_t(15);  // 64-byte multiples: each field keeps base's alignment
        return at;
    };
    auto take_ints = [&](int64_t count) { return reinterpret_cast<int32_t*>(take(count)); };  // 4 bytes too
    s->h = take(n * int64_t(m.dim));
    s->x = take(n * int64_t(m.dim));
    s->qkv = take(n * (m.q_cols + entry));
    s->q_latent = take(n * int64_t(m.q_cols));
    s->queries = take(n * heads * entry);
    s->queries_t = take(heads * entry);
    s->context = take(max_context * entry);
    s->scores = take(max_context * heads);
    s->sums = take(heads);
    s->latent = take(n * heads * m.rank);
    s->y = take(n * int64_t(m.dim));
    s->logits = take(n * int64_t(m.experts));
    s->hidden = take(rows * 2 * inter);
    s->act = take(rows * inter);
    s->weights = take(n * chosen);
    s->ids = take_ints(n * chosen);
    s->starts = take_ints(m.experts + m.shared + 1);
    s->bucket = take_ints(n * chosen);
    s->bucket_weights = take(n * chosen);
    return used;
}

// ---- the step's pieces (as small_decode.py's functions of the same names) ----

struct Step {  // n tokens (one per sequence): their rows of the call's per-token arrays
    const ModelDesc& m;
    int n;
    const int64_t *positions, *slot_mapping, *context_lens, *block_tables;
    int table_width, block_size;
    const float* rope_table;  // [max_positions, rope]: cos, sin interleaved
    Scratch s;
};

// Phase 1 of a layer: every token's rotated queries into s.queries, its cache entry into the cache.
template <class C>
void project(const Step& st, const LayerDesc& w, C* cache) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int n = st.n, dim = m.dim, entry = m.rank + m.rope, q_out = m.heads * entry, width = m.q_cols + entry;
    for (int t = 0; t < n; t++) rms_normalise(s.h + size_t(t) * dim, dim, m.eps, s.x + size_t(t) * dim);
    product_rows(n, s.x, dim, w.qkv, dim, width, s.qkv, width);
    if (m.q_norm) {  // q_a norm (gain folded into the query product), then the query product
        for (int t = 0; t < n; t++) {
            const float* q = s.qkv + size_t(t) * width;
            float* q_latent = s.q_latent + size_t(t) * m.q_cols;
            const float f = 1.0f / std::sqrt(mean_square(q, m.q_cols) + m.kv_eps);
            for (int i = 0; i < m.q_cols; i++) q_latent[i] = q[i] * f;
        }
        product_rows(n, s.q_latent, m.q_cols, w.query, m.q_cols, q_out, s.queries, q_out);
    } else {
        for (int t = 0; t < n; t++)
            std::memcpy(s.queries + size_t(t) * q_out, s.qkv + size_t(t) * width, sizeof(float) * q_out);
    }
    for (int t = 0; t < n; t++) {
        float* kv = s.qkv + size_t(t) * width + m.q_cols;  // kv_a norm of the latent; the rope key stays
        const float f = 1.0f / std::sqrt(mean_square(kv, m.rank) + m.kv_eps);
        for (int i = 0; i < m.rank; i++) kv[i] *= f * w.kv_gain[i];

        const float* cs = st.rope_table + size_t(st.positions[t]) * m.rope;
        float* queries = s.queries + size_t(t) * q_out;
        for (int h = 0; h < m.heads; h++) rotate(queries + h * entry + m.rank, cs, m.rope);
        rotate(kv + m.rank, cs, m.rope);
        C* dst = cache + size_t(st.slot_mapping[t]) * entry;
        for (int i = 0; i < entry; i++) store(dst + i, kv[i]);
    }
}

// Phase 2 for token t: absorbed attention over its sequence's cached entries (this step's included), in
// latent space, into s.latent's row t (output_product then maps every token's row to the hidden size).
template <class C>
void attend(const Step& st, int t, const C* cache) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int entry = m.rank + m.rope, heads = m.heads, rank = m.rank, block_size = st.block_size;
    const int64_t length = st.context_lens[t];
    const int64_t* table = st.block_tables + size_t(t) * st.table_width;
    const float* queries = s.queries + size_t(t) * heads * entry;  // [heads, entry], scaled for the softmax
    float* queries_t = s.queries_t;
    for (int h = 0; h < heads; h++)
        for (int e = 0; e < entry; e++) queries_t[e * heads + h] = queries[h * entry + e];

    float* context = s.context;  // [length, entry], widened; a block's entries are contiguous in the cache
    for (int64_t start = 0; start < length; start += block_size) {
        const C* src = cache + size_t(table[start / block_size]) * block_size * entry;
        const int64_t count = (length - start < block_size ? length - start : block_size) * entry;
        float* dst = context + size_t(start) * entry;
        for (int64_t i = 0; i < count; i++) dst[i] = widen(src[i]);
    }

    float* scores = s.scores;  // [length, heads]
    int h = 0;
    for (; h + 8 <= heads; h += 8) {
        int64_t p = 0;
        for (; p + 8 <= length; p += 8) score_block<8>(queries_t, heads, context, entry, p, h, scores);
        for (; p < length; p++) score_block<1>(queries_t, heads, context, entry, p, h, scores);
    }
    for (; h < heads; h++)
        for (int64_t p = 0; p < length; p++)
            scores[size_t(p) * heads + h] = dot(queries + h * entry, context + size_t(p) * entry, entry);

    float* sums = s.sums;
    softmax_numerators(scores, length, heads, sums);
    float* latent = s.latent + size_t(t) * heads * rank;  // [heads, rank]
    for (h = 0; h + 4 <= heads; h += 4) mix_heads<4>(scores, heads, context, entry, length, h, rank, latent);
    for (; h < heads; h++) mix_heads<1>(scores, heads, context, entry, length, h, rank, latent);
    for (h = 0; h < heads; h++) {
        const float inv = 1.0f / sums[h];
        for (int r = 0; r < rank; r++) latent[h * rank + r] *= inv;
    }
}

// h[t] += y[t] for every token.
void add_to_stream(const Step& st) {
    const int64_t count = int64_t(st.n) * st.m.dim;
    for (int64_t i = 0; i < count; i++) st.s.h[i] += st.s.y[i];
}

// The output product (W_UV then o_proj) of every token's attention, added to the residual stream.
void output_product(const Step& st, const LayerDesc& w) {
    const ModelDesc& m = st.m;
    const int in = m.heads * m.rank;
    product_rows(st.n, st.s.latent, in, w.out, in, m.dim, st.s.y, m.dim);
    add_to_stream(st);
}

// Index of the largest v[i] with !taken[i]; the lowest such index on ties (see select_experts).
int argmax_free(const float* v, const unsigned char* taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

// Group-limited top-k (moe.Router): selection on scores + bias; with groups, only the topk_group groups
// of the highest (best two biased scores) sums compete. Ties go to the lowest index, at every stage.
// ids: the chosen experts, best first; weights: their routing weights (unbiased scores, normalised,
// times routed_scaling_factor).
void select_experts(const ModelDesc& m, const float* scores, const float* bias, int32_t* ids, float* weights) {
    const int experts = m.experts, k = m.top_k;
    float choice[MAX_EXPERTS];
    for (int e = 0; e < experts; e++) choice[e] = scores[e] + bias[e];
    int groups = 1, size = experts;
    unsigned char kept[MAX_GROUPS] = {1};
    if (m.n_group > 1 && m.topk_group < m.n_group) {
        groups = m.n_group, size = experts / m.n_group;
        float group_score[MAX_GROUPS];
        for (int g = 0; g < groups; g++) {
            const float* v = choice + g * size;
            float first = v[0], second = v[1];
            if (second > first) first = v[1], second = v[0];
            for (int i = 2; i < size; i++) {
                if (v[i] > first) second = first, first = v[i];
                else if (v[i] > second) second = v[i];
            }
            group_score[g] = first + second;
        }
        unsigned char taken[MAX_GROUPS] = {0};
        for (int j = 0; j < m.topk_group; j++) taken[argmax_free(group_score, taken, groups)] = 1;
        std::memcpy(kept, taken, groups);
    }
    // the k best of the kept groups' experts, in index order, by insertion into the sorted ids (only a
    // strictly better score moves ahead: ties keep the lower index first); the first k always enter
    int chosen = 0;
    for (int g = 0; g < groups; g++) {
        if (!kept[g]) continue;
        for (int e = g * size; e < (g + 1) * size; e++) {
            const float v = choice[e];
            if (chosen == k && !(v > choice[ids[k - 1]])) continue;
            int i = chosen < k ? chosen++ : k - 1;
            for (; i > 0 && v > choice[ids[i - 1]]; i--) ids[i] = ids[i - 1];
            ids[i] = e;
        }
    }
    float sum = 0.0f;
    for (int j = 0; j < k; j++) weights[j] = scores[ids[j]], sum += weights[j];
    if (m.normalise) {  // w / ((sum + 1e-20) / scale), as small_decode.moe
        const float divisor = (sum + 1e-20f) / m.scale;
        for (int j = 0; j < k; j++) weights[j] /= divisor;
    } else if (m.scale != 1.0f) {
        for (int j = 0; j < k; j++) weights[j] *= m.scale;
    }
}

// Every (token, expert) pair of the step grouped by expert (routed experts, then the shared ones), tokens
// in order: expert e's tokens are bucket[starts[e] .. starts[e + 1]), with their routing weights.
void bucket_by_expert(const Step& st) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int slots = m.experts + m.shared, chosen = m.top_k + m.shared, pairs = st.n * chosen;
    int32_t* starts = s.starts;
    std::memset(starts, 0, sizeof(int32_t) * (slots + 1));
    for (int p = 0; p < pairs; p++) starts[s.ids[p] + 1]++;
    for (int e = 0; e < slots; e++) starts[e + 1] += starts[e];
    int32_t next[MAX_EXPERTS];
    std::memcpy(next, starts, sizeof(int32_t) * slots);
    for (int p = 0; p < pairs; p++) {
        const int at = next[s.ids[p]]++;
        s.bucket[at] = p / chosen;
        s.bucket_weights[at] = s.weights[p];
    }
}

// Each expert over its tokens, TILE_TOKENS at a time: gate/up product, weighted SwiGLU, down product
// added to the tokens' rows of s.y. A token's experts add up in index order, whatever its batch.
template <class W>
void run_experts(const Step& st, const LayerDesc& w) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int inter = m.expert_inter, dim = m.dim;
    const W* gate_up = static_cast<const W*>(w.expert_gate_up);
    const W* down = static_cast<const W*>(w.expert_down);
    for (int e = 0; e < m.experts + m.shared; e++) {
        for (int b = s.starts[e]; b < s.starts[e + 1]; b += TILE_TOKENS) {
            const int k = s.starts[e + 1] - b < TILE_TOKENS ? s.starts[e + 1] - b : TILE_TOKENS;
            const float* xs[TILE_TOKENS];
            float *hs[TILE_TOKENS], *as[TILE_TOKENS], *ys[TILE_TOKENS];
            for (int j = 0; j < k; j++) {
                xs[j] = s.x + size_t(s.bucket[b + j]) * dim;
                hs[j] = s.hidden + size_t(j) * 2 * inter;
                as[j] = s.act + size_t(j) * inter;
                ys[j] = s.y + size_t(s.bucket[b + j]) * dim;
            }
            product(k, xs, gate_up + size_t(e) * dim * 2 * inter, dim, 2 * inter, hs, false);
            for (int j = 0; j < k; j++) {
                const float weight = s.bucket_weights[b + j];
                for (int i = 0; i < inter; i++) as[j][i] = silu(hs[j][i]) * hs[j][inter + i] * weight;
            }
            product(k, as, down + size_t(e) * inter * dim, inter, dim, ys, true);
        }
    }
}

// Phase 3: the MoE (chosen experts then the shared ones, weight 1) or the dense MLP of every token,
// added to the residual stream.
template <class W>
void feed_forward(const Step& st, const LayerDesc& w) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int n = st.n, dim = m.dim;
    for (int t = 0; t < n; t++) rms_normalise(s.h + size_t(t) * dim, dim, m.eps, s.x + size_t(t) * dim);
    if (!w.moe) {
        const int inter = m.inter;
        product_rows(n, s.x, dim, w.mlp_gate_up, dim, 2 * inter, s.hidden, 2 * inter);
        for (int t = 0; t < n; t++) {
            const float* hidden = s.hidden + size_t(t) * 2 * inter;
            float* act = s.act + size_t(t) * inter;
            for (int i = 0; i < inter; i++) act[i] = silu(hidden[i]) * hidden[inter + i];
        }
        product_rows(n, s.act, inter, w.mlp_down, inter, dim, s.y, dim);
    } else {
        const int experts = m.experts, chosen = m.top_k + m.shared;
        product_rows(n, s.x, dim, w.router, dim, experts, s.logits, experts);
        for (int t = 0; t < n; t++) {
            float* scores = s.logits + size_t(t) * experts;
            for (int e = 0; e < experts; e++) scores[e] = sigmoid(scores[e]);
            int32_t* ids = s.ids + size_t(t) * chosen;
            float* weights = s.weights + size_t(t) * chosen;
            select_experts(m, scores, w.bias, ids, weights);
            for (int j = 0; j < m.shared; j++) ids[m.top_k + j] = experts + j, weights[m.top_k + j] = 1.0f;
            float* x = s.x + size_t(t) * dim;
            for (int i = 0; i < dim; i++) x[i] *= w.gain[i];
        }
        bucket_by_expert(st);
        std::memset(s.y, 0, sizeof(float) * n * dim);
        run_experts<W>(st, w);
    }
    add_to_stream(st);
}

template <class W, class C>
void run(Step& st, const W* embed, const int64_t* ids, C* cache, int64_t layer_stride, W* out) {
    const ModelDesc& m = st.m;
    for (int t = 0; t < st.n; t++)
        for (int i = 0; i < m.dim; i++) st.s.h[size_t(t) * m.dim + i] = widen(embed[size_t(ids[t]) * m.dim + i]);
    for (int l = 0; l < m.n_layers; l++) {
        const LayerDesc& w = m.layers[l];
        C* layer_cache = cache + size_t(l) * layer_stride;
        project(st, w, layer_cache);  // every new entry before any read
        for (int t = 0; t < st.n; t++) attend(st, t, layer_cache);
        output_product(st, w);
        feed_forward<W>(st, w);
    }
    for (int64_t i = 0; i < int64_t(st.n) * m.dim; i++) store(out + i, st.s.h[i]);
}

// ---- chunks and threads ----

struct Call {  // one step's arguments (see decode_kernel_step)
    const ModelDesc& m;
    int batch;
    const int64_t *ids, *positions, *slot_mapping, *context_lens, *block_tables;
    int table_width, block_size;
    const void* embed;
    const float* rope_table;
    bool weights_bf16, cache_bf16;
    void* cache;
    int64_t layer_stride;
    void* out;
    float* scratch;
    int chunk;  // tokens per chunk
    int64_t max_context, worker_floats;  // scratch floats per worker
};

template <class W, class C>
void run_typed(const Call& c, Step& st, int t0) {
    run(st, static_cast<const W*>(c.embed), c.ids + t0, static_cast<C*>(c.cache), c.layer_stride,
        static_cast<W*>(c.out) + size_t(t0) * c.m.dim);
}

// Chunk `index` of the call's sequences, on worker `worker`'s scratch.
void run_chunk(const Call& c, int index, int worker) {
    const int t0 = index * c.chunk, n = c.batch - t0 < c.chunk ? c.batch - t0 : c.chunk;
    Step st{c.m, n, c.positions + t0, c.slot_mapping + t0, c.context_lens + t0,
            c.block_tables + size_t(t0) * c.table_width, c.table_width, c.block_size, c.rope_table, {}};
    carve(c.m, c.chunk, c.max_context, c.scratch + worker * c.worker_floats, &st.s);
    if (c.weights_bf16) {
        if (c.cache_bf16) run_typed<uint16_t, uint16_t>(c, st, t0);
        else run_typed<uint16_t, float>(c, st, t0);
    } else {
        if (c.cache_bf16) run_typed<float, uint16_t>(c, st, t0);
        else run_typed<float, float>(c, st, t0);
    }
}

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Every chunk, claimed one at a time by the calling thread and up to workers - 1 threads of the OpenMP
// pool (torch's: the library links the libgomp torch loaded). Claiming keeps the threads busy whatever
// their speed, and a thread that starts late claims fewer chunks or none. But the calling thread still
// waits at the end for the others to finish the chunk they hold, or to start at all if the OS has not
// run them (another process on their core). timing: [1] the nanoseconds the calling thread spent on
// chunks, [2] those it then waited, [3] how many chunks it ran (decode_threads.py reads them).
void run_chunks(const Call& c, int count, int workers, int64_t* timing) {
    std::atomic<int> next{0};
    const int64_t start = now_ns();
    int64_t finished = start;
    int own = 0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(workers)
#endif
    {
#if defined(_OPENMP)
        const int worker = omp_get_thread_num();
#else
        const int worker = 0;
        (void)workers;
#endif
        int ran = 0;
        for (int i; (i = next.fetch_add(1)) < count; ran++) run_chunk(c, i, worker);
        if (worker == 0) finished = now_ns(), own = ran;
    }
    timing[1] = finished - start;
    timing[2] = now_ns() - finished;
    timing[3] = own;
}

// Whether some token's new entry lies in another sequence's context of this step. A valid decode step
// never does (a sequence writes its own next slot, and shared prefix blocks are full), but if one did,
// chunks run apart would read it before or after the write depending on timing: such a step runs as one
// chunk, every entry written before any is read, as torch does. batch^2 x blocks comparisons: far
// fewer than the attention's batch x context x (heads x (entry + rank)) multiply-adds.
bool entries_shared(const Call& c) {
    for (int t = 0; t < c.batch; t++) {
        const int64_t block = c.slot_mapping[t] / c.block_size, offset = c.slot_mapping[t] % c.block_size;
        for (int u = 0; u < c.batch; u++) {
            if (u == t) continue;
            const int64_t* table = c.block_tables + size_t(u) * c.table_width;
            for (int64_t k = 0; k * c.block_size < c.context_lens[u]; k++)
                if (table[k] == block && k * c.block_size + offset < c.context_lens[u]) return true;
        }
    }
    return false;
}

}  // namespace

extern "C" {

int32_t decode_kernel_layer_desc_size() { return int32_t(sizeof(LayerDesc)); }
int32_t decode_kernel_model_desc_size() { return int32_t(sizeof(ModelDesc)); }
int32_t decode_kernel_max_experts() { return MAX_EXPERTS; }
int32_t decode_kernel_max_groups() { return MAX_GROUPS; }

// Whether this build runs chunks on OpenMP threads (else a step runs on the calling thread only).
int32_t decode_kernel_threaded() {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

// One decode step: ids/positions/slot_mapping/context_lens [batch], block_tables [batch, table_width]
// (int64, contiguous); cache [layers, cache_blocks, block_size, rank + rope]; out [batch, dim] in the
// model dtype. weights_bf16 / cache_bf16 say whether the embedding + expert stacks + out / the cache are
// bfloat16 (else float32). With threads > 1 and chunk < batch (and a threaded build), chunks of `chunk`
// sequences run on up to `threads` threads; else the step runs on the calling thread. timing [4]: the
// threads it ran on, then run_chunks' report (zeros on one thread). Returns 0 when done; a positive
// number: the scratch floats the step needs (nothing was touched; call again with a buffer that large);
// negative: an index out of range (-1 token id, -2 position, -3 context length, -4 cache slot or block).
int64_t decode_kernel_step(const ModelDesc* model, int32_t batch, const int64_t* ids, const int64_t* positions,
                           const int64_t* slot_mapping, const int64_t* context_lens, const int64_t* block_tables,
                           int32_t table_width, int32_t block_size, const void* embed, const float* rope_table,
                           int32_t weights_bf16, void* cache, int32_t cache_bf16, int64_t cache_blocks, void* out,
                           float* scratch, int64_t scratch_floats, int32_t threads, int32_t chunk, int64_t* timing) {
    const ModelDesc& m = *model;
    const int64_t slots = cache_blocks * block_size;
    int64_t max_context = 0;
    for (int b = 0; b < batch; b++) {
        const int64_t length = context_lens[b];
        if (ids[b] < 0 || ids[b] >= m.vocab) return -1;
        if (positions[b] < 0 || positions[b] >= m.max_positions) return -2;
        if (length < 1 || length > int64_t(table_width) * block_size) return -3;
        if (slot_mapping[b] < 0 || slot_mapping[b] >= slots) return -4;
        for (int64_t k = 0; k < (length + block_size - 1) / block_size; k++) {
            const int64_t block = block_tables[size_t(b) * table_width + k];
            if (block < 0 || block >= cache_blocks) return -4;
        }
        max_context = length > max_context ? length : max_context;
    }
    Call c{m, batch, ids, positions, slot_mapping, context_lens, block_tables, table_width, block_size, embed,
           rope_table, weights_bf16 != 0, cache_bf16 != 0, cache, slots * (m.rank + m.rope), out, scratch,
           batch, max_context, 0};
    int count = 1, workers = 1;
    if (decode_kernel_threaded() && threads > 1 && chunk > 0 && chunk < batch && !entries_shared(c)) {
        c.chunk = chunk;
        count = (batch + chunk - 1) / chunk;
        workers = threads < count ? threads : count;
    }
    Scratch unused;
    c.worker_floats = carve(m, c.chunk, max_context, nullptr, &unused);
    if (workers * c.worker_floats > scratch_floats) return workers * c.worker_floats;

    timing[0] = workers;
    timing[1] = timing[2] = timing[3] = 0;
    if (workers == 1) run_chunk(c, 0, 0);
    else run_chunks(c, count, workers, timing);
    return 0;
}

}  // extern "C"
