/* Stacey's update ("p2" variant) in float32 on the CPU: one pass over x, g, z and m, for each exact form
   of the direction s(c) (identity at p = 2, rsqrt at p = 3, sign at p = inf, the general power); and
   in Adam's norm (stacey_adam), one pass over x, g, z, m and v where the multi-tensor path makes nine.

   The same arithmetic as stacey_lightning/optim/_fused.py's compiled kernel, which serves every other
   case (float64, bfloat16, the "pp" variant, CUDA). Why C here: the general power
   (|c| + eps) ** exponent is exp(exponent * log(base)) inside a torch.compile'd kernel, with Sleef's exp
   and log, and inductor cannot vectorise the float's bit fields that a cheaper log needs
   (benchmarks/results/power_kernels_cpu.md); here the compiler vectorises the whole loop: the log by the
   float's exponent and mantissa and Cephes' single-precision polynomial, the exp by 2^n times Cephes'
   polynomial (about 1.5e-6 relative error, as exp_log's). The cheap forms cost 5-10% less than the
   compiled ones at 2 threads, and nothing here waits for torch.compile (20-50 s on first use).

   Built by _cpu_kernel.py with the compiler's vector flags for torch's CPU capability and OpenMP;
   loaded with ctypes. */

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

static inline int32_t float_bits(float f) {
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i;
}

static inline float bits_float(int32_t i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* base ** exponent for base >= FLT_MIN (the caller's eps ensures it), inf or nan. Written without
   branches, so that the loop that inlines it vectorises. */
static inline float power(float base, float exponent) {
    /* base = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)) */
    int32_t bits = float_bits(base);
    int32_t k = (bits - 0x3F3504F3) >> 23;
    float f = bits_float(bits - (k << 23)) - 1.0f;
    float q = 7.0376836292e-2f;
    q = q * f - 1.1514610310e-1f;
    q = q * f + 1.1676998740e-1f;
    q = q * f - 1.2420140846e-1f;
    q = q * f + 1.4249322787e-1f;
    q = q * f - 1.6668057665e-1f;
    q = q * f + 2.0000714765e-1f;
    q = q * f - 2.4999993993e-1f;
    q = q * f + 3.3333331174e-1f;
    float f2 = f * f;
    float log_base = f + (f2 * f * q - 0.5f * f2) + (float)k * 0.693147180559945f;

    /* e^y = 2^n e^r, |r| <= ln(2) / 2; y is clamped where 2^n would leave the normal floats */
    float y = exponent * log_base;
    y = y < -87.3f ? -87.3f : y;
    y = y > 88.7f ? 88.7f : y;
    float n = floorf(y * 1.44269504088896341f + 0.5f);
    float r = y - n * 0.693359375f + n * 2.12194440e-4f; /* ln 2 in two parts (Cody and Waite) */
    float e = 1.9875691500e-4f;
    e = e * r + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    float result = (e * r * r + r + 1.0f) * bits_float(((int32_t)n + 127) << 23);
    /* inf and nan as powf has them: inf ** (e < 0) = 0, inf ** (e >= 0) = inf, nan stays nan (times c) */
    return base <= FLT_MAX ? result : (exponent < 0.0f ? 0.0f : base);
}

enum direction_kind { IDENTITY = 0, RSQRT = 1, SIGN = 2, POWER = 3 }; /* _cpu_kernel.KINDS */

/* s(c) = c * (|c| + eps) ** exponent in the exact form `kind` names, as _functional.direction writes it. */
static inline __attribute__((always_inline)) float direction(float c, int kind, float exponent, float eps) {
    switch (kind) {
    case IDENTITY:
        return c;
    case RSQRT:
        return c * (1.0f / sqrtf(fabsf(c) + eps));
    case SIGN:
        return c / (fabsf(c) + eps);
    default:
        return c * power(fabsf(c) + eps, exponent);
    }
}

/* One thread's slice; `kind` is a constant at each call, so each form gets its own vectorised loop. */
static inline __attribute__((always_inline)) void update(float *restrict x, const float *restrict g,
                                                         float *restrict z, float *restrict m, int64_t n,
                                                         const float *k, int kind) {
    float beta1 = k[0], g_in_c = k[1], alpha = k[2], decay = k[3], tau = k[4], step = k[5], exponent = k[6];
    float eps = k[7], beta2 = k[8], g_in_m = k[9];
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], mi = m[i], xi = x[i];
        float c = beta1 * mi + g_in_c * gi;
        float z_new = z[i] - alpha * c;
        float s = direction(c, kind, exponent, eps);
        x[i] = decay * xi + tau * (z_new - xi) - step * s;
        z[i] = z_new;
        m[i] = beta2 * mi + g_in_m * gi;
    }
}

/* This thread's part of n elements: one contiguous slice per thread, a multiple of 16 floats long, so
   that every slice but the last is whole vectors. Called inside a parallel region. */
static inline void slice_of(int64_t n, int64_t *start, int64_t *stop) {
    int64_t count = omp_get_num_threads(), id = omp_get_thread_num();
    int64_t slice = ((n + count - 1) / count + 15) / 16 * 16;
    *start = id * slice < n ? id * slice : n;
    *stop = *start + slice < n ? *start + slice : n;
}

/* One step on n elements. coefficients: _fused.coefficients' first ten, in its order. */
void stacey_p2(int kind, float *x, const float *g, float *z, float *m, int64_t n, const float *coefficients,
               int threads) {
#pragma omp parallel num_threads(threads)
    {
        int64_t start, stop;
        slice_of(n, &start, &stop);
        float *xs = x + start, *zs = z + start, *ms = m + start;
        const float *gs = g + start;
        switch (kind) {
        case IDENTITY:
            update(xs, gs, zs, ms, stop - start, coefficients, IDENTITY);
            break;
        case RSQRT:
            update(xs, gs, zs, ms, stop - start, coefficients, RSQRT);
            break;
        case SIGN:
            update(xs, gs, zs, ms, stop - start, coefficients, SIGN);
            break;
        default:
            update(xs, gs, zs, ms, stop - start, coefficients, POWER);
        }
    }
}

/* One thread's slice in Adam's norm, as _adam.py's multi-tensor path computes it: d = c / (sqrt(v) + eps')
   times the bias corrections, folded into step and eps' on the host. */
static inline __attribute__((always_inline)) void adam_update(float *restrict x, const float *restrict g,
                                                              float *restrict z, float *restrict m,
                                                              float *restrict v, int64_t n, const float *k) {
    float beta1 = k[0], g_in_c = k[1], alpha = k[2], decay = k[3], tau = k[4], step = k[5], eps = k[6];
    float beta_v = k[7], g_in_v = k[8], beta2 = k[9], g_in_m = k[10];
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], mi = m[i], xi = x[i];
        float c = beta1 * mi + g_in_c * gi;
        float z_new = z[i] - alpha * c;
        float vi = beta_v * v[i] + g_in_v * gi * gi;
        x[i] = decay * xi + tau * (z_new - xi) - step * (c / (sqrtf(vi) + eps));
        z[i] = z_new;
        v[i] = vi;
        m[i] = beta2 * mi + g_in_m * gi;
    }
}

/* One step in Adam's norm on n elements. coefficients: _adam.coefficients, in its order. */
void stacey_adam(float *x, const float *g, float *z, float *m, float *v, int64_t n, const float *coefficients,
                 int threads) {
#pragma omp parallel num_threads(threads)
    {
        int64_t start, stop;
        slice_of(n, &start, &stop);
        adam_update(x + start, g + start, z + start, m + start, v + start, stop - start, coefficients);
    }
}
