// One decode step of a small DeepSeek-V3 model on CPU in one call (compiled_decode.py builds and calls it).
//
// The torch-op small path (small_decode.py) spends ~2.7 us per op on ~400 ops whose arithmetic is
// ~0.1 MFLOP per layer; here the same maths runs as plain loops over the same folded weights
// (decode_weights.py), so a step costs its arithmetic. Every product, norm and softmax is float32, as in
// small_decode.py's one-thread path; cache entries are rounded to the cache dtype when written and the
// returned hidden state to the model dtype, with torch's round-to-nearest-even.
//
// Plain C++ (no torch or Python headers: it compiles in about a second), single-threaded, no allocation:
// the caller passes a float32 scratch buffer and grows it when the step asks for more.
//
// The products are written on 8-float vectors (f8 below) with several independent accumulators each, so
// they vectorise without -ffast-math and keep the multiply-add units busy; every sum runs in a fixed order.

#include <cmath>
#include <cstdint>
#include <cstring>

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
    const void* expert_gate_up;  // [experts + shared, 2 * expert_inter, dim], model dtype
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

constexpr int MAX_EXPERTS = 1024;  // compiled_decode.py checks the model against these bounds
constexpr int MAX_GROUPS = 256;

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

// Columns j0 .. j0 + 8V of y[out] (+)= x[in] @ w[in, out] (w row-major, float or bf16 bits): V
// accumulators in registers over the whole input.
template <int V, class W>
inline void matvec_block(const float* __restrict x, const W* __restrict w, int in, int out, int j0,
                         float* __restrict y, bool add) {
    f8 acc[V];
    for (int v = 0; v < V; v++) acc[v] = add ? load8(y + j0 + 8 * v) : f8{};
    for (int i = 0; i < in; i++) {
        const float xi = x[i];
        const W* row = w + size_t(i) * out + j0;
        for (int v = 0; v < V; v++) acc[v] += xi * load8(row + 8 * v);
    }
    for (int v = 0; v < V; v++) store8(y + j0 + 8 * v, acc[v]);
}

// y[out] = x[in] @ w[in, out], or y += it with add.
template <class W>
void matvec(const float* __restrict x, const W* __restrict w, int in, int out, float* __restrict y,
            bool add = false) {
    int j = 0;
    for (; j + 64 <= out; j += 64) matvec_block<8>(x, w, in, out, j, y, add);
    for (; j + 32 <= out; j += 32) matvec_block<4>(x, w, in, out, j, y, add);
    for (; j + 8 <= out; j += 8) matvec_block<1>(x, w, in, out, j, y, add);
    for (; j < out; j++) {
        float acc = add ? y[j] : 0.0f;
        for (int i = 0; i < in; i++) acc += x[i] * widen(w[size_t(i) * out + j]);
        y[j] = acc;
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

// Lane j of the result: the sum of a[j]'s lanes (8 horizontal sums at once).
inline f8 lane_sums(const f8* a) {
#if defined(__AVX2__)
    // hadd pairs neighbours within each 128-bit half: two rounds leave [a0..a3 low-half sums | a0..a3
    // high-half sums] and the same for a4..a7; the halves then meet in one add
    const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return (f8)_mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
#else
    f8 sums;
    for (int j = 0; j < 8; j++) sums[j] = lanes_sum(a[j]);
    return sums;
#endif
}

// y[r] = w[r] . x for the rows of w [rows, n] (float or bf16 bits), eight rows at a time.
template <class W>
void row_dots(const W* __restrict w, const float* __restrict x, int rows, int n, float* __restrict y) {
    int r = 0;
    for (; r + 8 <= rows; r += 8) {
        const W* row = w + size_t(r) * n;
        f8 acc[8] = {};
        int i = 0;
        for (; i + 8 <= n; i += 8) {
            const f8 xv = load8(x + i);
            for (int j = 0; j < 8; j++) acc[j] += load8(row + size_t(j) * n + i) * xv;
        }
        f8 sums = lane_sums(acc);
        for (int j = 0; j < 8; j++)
            for (int k = i; k < n; k++) sums[j] += widen(row[size_t(j) * n + k]) * x[k];
        store8(y + r, sums);
    }
    for (; r < rows; r++) y[r] = dot(w + size_t(r) * n, x, n);
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

// Index of the largest v[i] with !taken[i]; the lowest such index on ties (see select_experts).
int argmax_free(const float* v, const unsigned char* taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

// ---- scratch: every float32 intermediate of a step, carved from the caller's buffer ----

struct Scratch {
    float *h, *queries, *queries_t, *x, *qkv, *context, *scores, *sums, *latent, *y, *logits, *hidden, *act;
};

// Floats a step needs; with base, also points s's fields into base.
int64_t carve(const ModelDesc& m, int batch, int64_t max_context, float* base, Scratch* s) {
    const int64_t entry = m.rank + m.rope, heads = m.heads;
    const int64_t inter = m.inter > m.expert_inter ? m.inter : m.expert_inter;
    const int64_t sizes[] = {
        batch * int64_t(m.dim), batch * heads * entry, heads * entry, m.dim,
        2 * int64_t(m.q_cols) + entry,  // qkv, then (with q_lora) the normalised query latent
        max_context * entry, heads * max_context, heads, heads * m.rank, m.dim, m.experts, 2 * inter, inter,
    };
    float** fields[] = {&s->h, &s->queries, &s->queries_t, &s->x, &s->qkv, &s->context, &s->scores,
                        &s->sums, &s->latent, &s->y, &s->logits, &s->hidden, &s->act};
    int64_t used = 0;
    for (int i = 0; i < int(sizeof(sizes) / sizeof(sizes[0])); i++) {
        if (base) *fields[i] = base + used;
        used += (sizes[i] + 15) & ~int64_t(15);  // 64-byte multiples: each field keeps base's alignment
    }
    return used;
}

// ---- the step's pieces (as small_decode.py's functions of the same names) ----

struct Step {
    const ModelDesc& m;
    int batch;
    const int64_t *positions, *slot_mapping, *context_lens, *block_tables;
    int table_width, block_size;
    const float* rope_table;  // [max_positions, rope]: cos, sin interleaved
    Scratch s;
};

// Phase 1 of a layer for token b: its rotated queries into s.queries[b], its cache entry into the cache.
template <class C>
void project(const Step& st, const LayerDesc& w, int b, C* cache) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int entry = m.rank + m.rope, q_out = m.heads * entry;
    rms_normalise(s.h + size_t(b) * m.dim, m.dim, m.eps, s.x);
    float* qkv = s.qkv;
    matvec(s.x, w.qkv, m.dim, m.q_cols + entry, qkv);
    float* queries = s.queries + size_t(b) * q_out;
    if (m.q_norm) {  // q_a norm (gain folded into the query product), then the query product
        float* q_latent = qkv + m.q_cols + entry;
        const float f = 1.0f / std::sqrt(mean_square(qkv, m.q_cols) + m.kv_eps);
        for (int i = 0; i < m.q_cols; i++) q_latent[i] = qkv[i] * f;
        matvec(q_latent, w.query, m.q_cols, q_out, queries);
    } else {
        std::memcpy(queries, qkv, sizeof(float) * q_out);
    }
    float* kv = qkv + m.q_cols;  // kv_a norm of the latent; the rope key stays as it is
    const float f = 1.0f / std::sqrt(mean_square(kv, m.rank) + m.kv_eps);
    for (int i = 0; i < m.rank; i++) kv[i] *= f * w.kv_gain[i];

    const float* cs = st.rope_table + size_t(st.positions[b]) * m.rope;
    for (int h = 0; h < m.heads; h++) rotate(queries + h * entry + m.rank, cs, m.rope);
    rotate(kv + m.rank, cs, m.rope);
    C* dst = cache + size_t(st.slot_mapping[b]) * entry;
    for (int i = 0; i < entry; i++) store(dst + i, kv[i]);
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

// Phase 2 for token b: absorbed attention over its sequence's cached entries (this step's included), then
// the output product, added to the residual stream.
template <class C>
void attend(const Step& st, const LayerDesc& w, int b, const C* cache) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    const int entry = m.rank + m.rope, heads = m.heads, rank = m.rank, block_size = st.block_size;
    const int64_t length = st.context_lens[b];
    const int64_t* table = st.block_tables + size_t(b) * st.table_width;
    const float* queries = s.queries + size_t(b) * heads * entry;  // [heads, entry], scaled for the softmax
    float* queries_t = s.queries_t;
    for (int h = 0; h < heads; h++)
        for (int e = 0; e < entry; e++) queries_t[e * heads + h] = queries[h * entry + e];

    float* context = s.context;  // [length, entry], widened; a block's entries are contiguous in the cache
    for (int64_t start = 0; start < length; start += block_size) {
        const C* src = cache + size_t(table[start / block_size]) * block_size * entry;
        const int64_t n = (length - start < block_size ? length - start : block_size) * entry;
        float* dst = context + size_t(start) * entry;
        for (int64_t i = 0; i < n; i++) dst[i] = widen(src[i]);
    }

    float* scores = s.scores;  // [length, heads]
    int h = 0;
    for (; h + 8 <= heads; h += 8) {
        int64_t t = 0;
        for (; t + 8 <= length; t += 8) score_block<8>(queries_t, heads, context, entry, t, h, scores);
        for (; t < length; t++) score_block<1>(queries_t, heads, context, entry, t, h, scores);
    }
    for (; h < heads; h++)
        for (int64_t t = 0; t < length; t++)
            scores[size_t(t) * heads + h] = dot(queries + h * entry, context + size_t(t) * entry, entry);

    float* sums = s.sums;
    softmax_numerators(scores, length, heads, sums);
    float* latent = s.latent;  // [heads, rank]
    for (h = 0; h + 4 <= heads; h += 4) mix_heads<4>(scores, heads, context, entry, length, h, rank, latent);
    for (; h < heads; h++) mix_heads<1>(scores, heads, context, entry, length, h, rank, latent);
    for (h = 0; h < heads; h++) {
        const float inv = 1.0f / sums[h];
        for (int r = 0; r < rank; r++) latent[h * rank + r] *= inv;
    }
    matvec(latent, w.out, heads * rank, m.dim, s.y);
    float* hidden = s.h + size_t(b) * m.dim;
    for (int i = 0; i < m.dim; i++) hidden[i] += s.y[i];
}

// Group-limited top-k (moe.Router): selection on scores + bias; with groups, only the topk_group groups
// of the highest (best two biased scores) sums compete. Ties go to the lowest index, at every stage.
// Returns the routing weights (unbiased scores, normalised, times routed_scaling_factor) in weights.
void select_experts(const ModelDesc& m, const float* scores, const float* bias, int* ids, float* weights) {
    const int experts = m.experts;
    float choice[MAX_EXPERTS];
    unsigned char taken[MAX_EXPERTS];
    for (int e = 0; e < experts; e++) choice[e] = scores[e] + bias[e], taken[e] = 0;
    if (m.n_group > 1 && m.topk_group < m.n_group) {
        const int size = experts / m.n_group;
        float group_score[MAX_GROUPS];
        unsigned char kept[MAX_GROUPS] = {0};
        for (int g = 0; g < m.n_group; g++) {
            const float* v = choice + g * size;
            float first = v[0], second = v[1];
            if (second > first) first = v[1], second = v[0];
            for (int i = 2; i < size; i++) {
                if (v[i] > first) second = first, first = v[i];
                else if (v[i] > second) second = v[i];
            }
            group_score[g] = first + second;
        }
        for (int k = 0; k < m.topk_group; k++) kept[argmax_free(group_score, kept, m.n_group)] = 1;
        for (int e = 0; e < experts; e++) taken[e] = !kept[e / size];  // dropped groups never compete
    }
    float sum = 0.0f;
    for (int k = 0; k < m.top_k; k++) {
        const int e = argmax_free(choice, taken, experts);
        taken[e] = 1;
        ids[k] = e;
        weights[k] = scores[e];
        sum += scores[e];
    }
    if (m.normalise) {  // w / ((sum + 1e-20) / scale), as small_decode.moe
        const float divisor = (sum + 1e-20f) / m.scale;
        for (int k = 0; k < m.top_k; k++) weights[k] /= divisor;
    } else if (m.scale != 1.0f) {
        for (int k = 0; k < m.top_k; k++) weights[k] *= m.scale;
    }
}

// Phase 3 for token b: the MoE (chosen experts then the shared ones, weight 1) or the dense MLP.
template <class W>
void feed_forward(const Step& st, const LayerDesc& w, int b) {
    const ModelDesc& m = st.m;
    const Scratch& s = st.s;
    float* h = s.h + size_t(b) * m.dim;
    float* x = s.x;
    float* y = s.y;
    rms_normalise(h, m.dim, m.eps, x);
    if (!w.moe) {
        const int inter = m.inter;
        matvec(x, w.mlp_gate_up, m.dim, 2 * inter, s.hidden);
        for (int i = 0; i < inter; i++) s.act[i] = silu(s.hidden[i]) * s.hidden[inter + i];
        matvec(s.act, w.mlp_down, inter, m.dim, y);
    } else {
        matvec(x, w.router, m.dim, m.experts, s.logits);
        for (int e = 0; e < m.experts; e++) s.logits[e] = sigmoid(s.logits[e]);
        int ids[MAX_EXPERTS];
        float weights[MAX_EXPERTS];
        select_experts(m, s.logits, w.bias, ids, weights);
        for (int j = 0; j < m.shared; j++) ids[m.top_k + j] = m.experts + j, weights[m.top_k + j] = 1.0f;

        for (int i = 0; i < m.dim; i++) x[i] *= w.gain[i];
        std::memset(y, 0, sizeof(float) * m.dim);
        const int inter = m.expert_inter, dim = m.dim;
        const W* gate_up = static_cast<const W*>(w.expert_gate_up);
        const W* down = static_cast<const W*>(w.expert_down);
        for (int j = 0; j < m.top_k + m.shared; j++) {
            const W* gu = gate_up + size_t(ids[j]) * 2 * inter * dim;  // rows: gate then up, [2 * inter, dim]
            row_dots(gu, x, 2 * inter, dim, s.hidden);
            for (int i = 0; i < inter; i++) s.act[i] = silu(s.hidden[i]) * s.hidden[inter + i] * weights[j];
            matvec(s.act, down + size_t(ids[j]) * inter * dim, inter, dim, y, true);
        }
    }
    for (int i = 0; i < m.dim; i++) h[i] += y[i];
}

template <class W, class C>
void run(Step& st, const W* embed, const int64_t* ids, C* cache, int64_t layer_stride, W* out) {
    const ModelDesc& m = st.m;
    for (int b = 0; b < st.batch; b++)
        for (int i = 0; i < m.dim; i++) st.s.h[size_t(b) * m.dim + i] = widen(embed[size_t(ids[b]) * m.dim + i]);
    for (int l = 0; l < m.n_layers; l++) {
        const LayerDesc& w = m.layers[l];
        C* layer_cache = cache + size_t(l) * layer_stride;
        for (int b = 0; b < st.batch; b++) project(st, w, b, layer_cache);  // every new entry before any read
        for (int b = 0; b < st.batch; b++) attend(st, w, b, layer_cache);
        for (int b = 0; b < st.batch; b++) feed_forward<W>(st, w, b);
    }
    for (int64_t i = 0; i < int64_t(st.batch) * m.dim; i++) store(out + i, st.s.h[i]);
}

}  // namespace

extern "C" {

int32_t decode_kernel_layer_desc_size() { return int32_t(sizeof(LayerDesc)); }
int32_t decode_kernel_model_desc_size() { return int32_t(sizeof(ModelDesc)); }
int32_t decode_kernel_max_experts() { return MAX_EXPERTS; }
int32_t decode_kernel_max_groups() { return MAX_GROUPS; }

// One decode step: ids/positions/slot_mapping/context_lens [batch], block_tables [batch, table_width]
// (int64, contiguous); cache [layers, cache_blocks, block_size, rank + rope]; out [batch, dim] in the
// model dtype. weights_bf16 / cache_bf16 say whether the embedding + expert stacks + out / the cache are
// bfloat16 (else float32). Returns 0 when done; a positive number: the scratch floats the step needs
// (nothing was touched; call again with a buffer that large); negative: an index out of range
// (-1 token id, -2 position, -3 context length, -4 cache slot or block).
int64_t decode_kernel_step(const ModelDesc* model, int32_t batch, const int64_t* ids, const int64_t* positions,
                           const int64_t* slot_mapping, const int64_t* context_lens, const int64_t* block_tables,
                           int32_t table_width, int32_t block_size, const void* embed, const float* rope_table,
                           int32_t weights_bf16, void* cache, int32_t cache_bf16, int64_t cache_blocks, void* out,
                           float* scratch, int64_t scratch_floats) {
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
    Scratch unused;
    const int64_t needed = carve(m, batch, max_context, nullptr, &unused);
    if (needed > scratch_floats) return needed;

    Step st{m, batch, positions, slot_mapping, context_lens, block_tables, table_width, block_size, rope_table, {}};
    carve(m, batch, max_context, scratch, &st.s);
    const int64_t entry = m.rank + m.rope, stride = slots * entry;
    if (weights_bf16) {
        const uint16_t* e = static_cast<const uint16_t*>(embed);
        uint16_t* o = static_cast<uint16_t*>(out);
        if (cache_bf16) run(st, e, ids, static_cast<uint16_t*>(cache), stride, o);
        else run(st, e, ids, static_cast<float*>(cache), stride, o);
    } else {
        const float* e = static_cast<const float*>(embed);
        float* o = static_cast<float*>(out);
        if (cache_bf16) run(st, e, ids, static_cast<uint16_t*>(cache), stride, o);
        else run(st, e, ids, static_cast<float*>(cache), stride, o);
    }
    return 0;
}

}  // extern "C"
