/* The typed half of _kernel.c: one output block from one input window, for
 * one window type IN_T and one output type OUT_T (_kernel.c includes this
 * file once per pair, through _kernel_types.h).  Every function is
 * kernel.py's description of scipy's NI_GeometricTransform, operation for
 * operation: the same sums in the same order, in double precision, compiled
 * without contraction into fused multiply-adds (setup.py: -ffp-contract=off). */

#define FN3(name, a, b) name##_##a##_##b
#define FN2(name, a, b) FN3(name, a, b)
#define FN(name) FN2(name, IN_NAME, OUT_NAME)

/* The value at (cx, cy, cz) (pre-pad included) of a point whose taps all lie
 * inside the window and the volume (`bulk`), its first tap at `p`: the
 * separable sum along x, then y, then z with scipy's weights. */
static inline OUT_T FN(bulk_value)(const IN_T *p, const Geom *g, double cx, double cy, double cz)
{
    const int order = g->order;
    if (order == 0)
        return (OUT_T)p[0];
    if (order == 1) {
        const double ax = 1.0 - (cx - floor(cx)), ay = 1.0 - (cy - floor(cy)), az = 1.0 - (cz - floor(cz));
        const double bxw = 1.0 - ax, byw = 1.0 - ay, bzw = 1.0 - az;
        const double r00 = ax * (double)p[0] + bxw * (double)p[1];
        const double r01 = ax * (double)p[g->sy] + bxw * (double)p[g->sy + 1];
        const double r10 = ax * (double)p[g->sz] + bxw * (double)p[g->sz + 1];
        const double r11 = ax * (double)p[g->sz + g->sy] + bxw * (double)p[g->sz + g->sy + 1];
        return (OUT_T)(az * (ay * r00 + byw * r01) + bzw * (ay * r10 + byw * r11));
    }
    double wx[6], wy[6], wz[6];
    weights(cx, order, wx);
    weights(cy, order, wy);
    weights(cz, order, wz);
    double t = 0.0;
    for (int k = 0; k <= order; k++) {
        double pp = 0.0;
        for (int j = 0; j <= order; j++) {
            const IN_T *q0 = p + k * g->sz + j * g->sy;
            double q = 0.0;
            for (int i = 0; i <= order; i++)
                q += wx[i] * (double)q0[i];
            pp += wy[j] * q;
        }
        t += wz[k] * pp;
    }
    return (OUT_T)t;
}

/* One point by scipy's per-point route (``map_coordinate``, the taps folded
 * by the spline boundary mode, ``grid-constant`` taps reading cval,
 * ``constant`` points outside set to cval); c: its coordinate per axis,
 * pre-pad included.  Adds to *bad the taps that fell outside the window. */
static inline OUT_T FN(point)(const IN_T *d, const Geom *g, const double c[3], int64_t *bad)
{
    const int order = g->order, mode = g->mode;
    int64_t idx[3][6];
    double w[3][6];
    for (int a = 0; a < 3; a++) {
        double cc;
        int64_t start;
        int folds;
        if (axis_start(c[a], g->length[a], order, mode, &cc, &start, &folds))
            return (OUT_T)g->cval; /* scipy stops at the first axis outside: cval */
        for (int t = 0; t <= order; t++) {
            const int64_t j = tap(start + t, folds, g->length[a], g->first[a], g->width[a], mode);
            *bad += j == -2;
            idx[a][t] = j > -1 ? j : -1;
        }
        weights(cc, order, w[a]);
    }
    double t = 0.0;
    if (mode == GRID_CONSTANT) { /* some taps read cval (idx -1) */
        for (int cz = 0; cz <= order; cz++)
            for (int by = 0; by <= order; by++)
                for (int ax = 0; ax <= order; ax++) {
                    const int64_t iz = idx[2][cz], iy = idx[1][by], ix = idx[0][ax];
                    const double v = (iz < 0 || iy < 0 || ix < 0) ? g->cval : (double)d[iz * g->sz + iy * g->sy + ix];
                    t += v * ((w[2][cz] * w[1][by]) * w[0][ax]);
                }
        return (OUT_T)t;
    }
    /* separable, every tap in the window (a tap outside, counted in `bad`, reads sample 0) */
    for (int cz = 0; cz <= order; cz++) {
        double p = 0.0;
        for (int by = 0; by <= order; by++) {
            double q = 0.0;
            for (int ax = 0; ax <= order; ax++) {
                const int64_t iz = idx[2][cz], iy = idx[1][by], ix = idx[0][ax];
                const int64_t at = (iz < 0 || iy < 0 || ix < 0) ? 0 : iz * g->sz + iy * g->sy + ix;
                q += w[0][ax] * (double)d[at];
            }
            p += w[1][by] * q;
        }
        t += w[2][cz] * p;
    }
    return (OUT_T)t;
}

/* One output row along x within [x0, x1) (the row's part inside the input
 * under ITK's rule, else the whole row) but [a, b) (the interior span), and the
 * voxels near or beyond the volume's edges: their positions go to `slow`;
 * returns how many. */
static int64_t FN(row)(const IN_T *d, OUT_T *dst, const Geom *g, const Row *r, int64_t *slow, int64_t a,
                       int64_t b, int64_t x0, int64_t x1)
{
    const int order = g->order;
    const double limx = (double)g->length[0] - 1.0, limy = (double)g->length[1] - 1.0,
                 limz = (double)g->length[2] - 1.0;
    int64_t nslow = 0;
    const int64_t la = a < x1 ? a : x1, rb = b > x0 ? b : x0;
    for (int64_t x = x0 < la ? x0 : rb; x < x1; x = x + 1 == la ? rb : x + 1) { /* [x0, a), then [b, x1) */
        const double cx = ((g->colx[x] + r->ry[0]) + r->rz[0]) + g->pad;
        const double cy = ((g->colx[g->bx + x] + r->ry[1]) + r->rz[1]) + g->pad;
        const double cz = ((g->colx[2 * g->bx + x] + r->ry[2]) + r->rz[2]) + g->pad;
        const int64_t jx = bulk(cx, g->first[0], g->width[0], order);
        const int64_t jy = bulk(cy, g->first[1], g->width[1], order);
        const int64_t jz = bulk(cz, g->first[2], g->width[2], order);
        if (jx < 0 || jy < 0 || jz < 0 || cx > limx || cy > limy || cz > limz) {
            slow[nslow++] = x;
            continue;
        }
        dst[x] = FN(bulk_value)(d + jz * g->sz + jy * g->sy + jx, g, cx, cy, cz);
    }
    return nslow;
}

/* The row's voxels listed in `slow`, by scipy's per-point route; returns the
 * number of taps that fell outside the window (0 unless it was planned wrong). */
static int64_t FN(edges)(const IN_T *d, OUT_T *dst, const Geom *g, const Row *r, const int64_t *slow,
                         int64_t nslow)
{
    int64_t bad = 0;
    for (int64_t k = 0; k < nslow; k++) {
        const int64_t x = slow[k];
        const double c[3] = {((g->colx[x] + r->ry[0]) + r->rz[0]) + g->pad,
                             ((g->colx[g->bx + x] + r->ry[1]) + r->rz[1]) + g->pad,
                             ((g->colx[2 * g->bx + x] + r->ry[2]) + r->rz[2]) + g->pad};
        dst[x] = FN(point)(d, g, c, &bad);
    }
    return bad;
}

/* `row` for 'nearest' at orders 0 and 1 (no pre-pad): points beyond the edges too. */
static int64_t FN(row_nearest)(const IN_T *d, OUT_T *dst, const Geom *g, const Row *r, int64_t *slow,
                               int64_t a, int64_t b, int64_t x0, int64_t x1)
{
    const int order = g->order;
    int64_t nslow = 0;
    const int64_t la = a < x1 ? a : x1, rb = b > x0 ? b : x0;
    for (int64_t x = x0 < la ? x0 : rb; x < x1; x = x + 1 == la ? rb : x + 1) { /* [x0, a), then [b, x1) */
        const double cx = (g->colx[x] + r->ry[0]) + r->rz[0];
        const double cy = (g->colx[g->bx + x] + r->ry[1]) + r->rz[1];
        const double cz = (g->colx[2 * g->bx + x] + r->ry[2]) + r->rz[2];
        int64_t x0, x1, y0, y1, z0, z1;
        clamped(cx, order, g->first[0], g->length[0], g->width[0], &x0, &x1);
        clamped(cy, order, g->first[1], g->length[1], g->width[1], &y0, &y1);
        clamped(cz, order, g->first[2], g->length[2], g->width[2], &z0, &z1);
        if (x0 < 0 || y0 < 0 || z0 < 0) {
            slow[nslow++] = x;
        } else if (order == 0) {
            dst[x] = (OUT_T)d[z0 * g->sz + y0 * g->sy + x0];
        } else {
            const double ax = 1.0 - (cx - floor(cx)), ay = 1.0 - (cy - floor(cy)), az = 1.0 - (cz - floor(cz));
            const double bxw = 1.0 - ax, byw = 1.0 - ay, bzw = 1.0 - az;
            const IN_T *p00 = d + z0 * g->sz + y0 * g->sy, *p01 = d + z0 * g->sz + y1 * g->sy;
            const IN_T *p10 = d + z1 * g->sz + y0 * g->sy, *p11 = d + z1 * g->sz + y1 * g->sy;
            const double r00 = ax * (double)p00[x0] + bxw * (double)p00[x1];
            const double r01 = ax * (double)p01[x0] + bxw * (double)p01[x1];
            const double r10 = ax * (double)p10[x0] + bxw * (double)p10[x1];
            const double r11 = ax * (double)p11[x0] + bxw * (double)p11[x1];
            dst[x] = (OUT_T)(az * (ay * r00 + byw * r01) + bzw * (ay * r10 + byw * r11));
        }
    }
    return nslow;
}

/* Order 0 over the interior span [a, b): scipy's coordinates, in its order
 * and rounding (identical, ties included), no mapping, no test; in chunks,
 * the taps' positions in the window first (a loop the compiler vectorises),
 * then the reads.  Positions in 32 bits: a window of more than 2^31 - 1
 * samples takes no interior span (resample_block). */
VECTOR_CLONES static void FN(interior_nearest)(const IN_T *restrict d, OUT_T *restrict dst, const Geom *g, const Row *r, int64_t a,
                                 int64_t b)
{
    /* each tap's index in the window first (jx - fx: inside the window, so
     * 32 bits), then its position: jz * sz itself can pass 2^31 */
    const int32_t f0 = (int32_t)g->first[0], f1 = (int32_t)g->first[1], f2 = (int32_t)g->first[2];
    const int32_t sy = (int32_t)g->sy, sz = (int32_t)g->sz;
    const double lx = (double)g->length[0] - 1.0, ly = (double)g->length[1] - 1.0, lz = (double)g->length[2] - 1.0;
    const double *c0 = g->colx, *c1 = g->colx + g->bx, *c2 = g->colx + 2 * g->bx;
    const double ry0 = r->ry[0], ry1 = r->ry[1], ry2 = r->ry[2], rz0 = r->rz[0], rz1 = r->rz[1], rz2 = r->rz[2];
    const double pad = g->pad;
    enum { CHUNK = 256 };
    int32_t at[CHUNK];
    for (int64_t x0 = a; x0 < b; x0 += CHUNK) {
        const int n = (int)(b - x0 < CHUNK ? b - x0 : CHUNK);
        for (int i = 0; i < n; i++) {
            const int32_t jx = (int32_t)(clamp(((c0[x0 + i] + ry0) + rz0) + pad, lx) + 0.5);
            const int32_t jy = (int32_t)(clamp(((c1[x0 + i] + ry1) + rz1) + pad, ly) + 0.5);
            const int32_t jz = (int32_t)(clamp(((c2[x0 + i] + ry2) + rz2) + pad, lz) + 0.5);
            at[i] = (jx - f0) + (jy - f1) * sy + (jz - f2) * sz;
        }
        OUT_T *restrict o = dst + x0;
        for (int i = 0; i < n; i++)
            o[i] = (OUT_T)d[at[i]];
    }
}

#if defined(AVX2_READS) && defined(IN_FLOAT)
/* linear_inside's reads from a float32 window, four voxels at a time (AVX2,
 * see _kernel.c): the two taps along x of each of the four rows as one
 * 64-bit load (plain loads, not AVX2's gather: on this project's AMD EPYC
 * the gather was slower than the scalar loop, the loads 0.75x the gather's
 * time, benchmarks/README.md), split into first and second taps; then linear_inside's
 * arithmetic on four doubles at a time, the same operations in the same
 * order (no fused multiply-adds), so the same values bit for bit.  Returns
 * how many voxels it did (a multiple of four): linear_inside does the rest. */
__attribute__((target("avx2"))) static int FN(linear_reads)(const float *restrict d, OUT_T *restrict o,
                                                            const int32_t *at, const double *fx, const double *fy,
                                                            const double *fz, int n, int64_t dy, int64_t dz)
{
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); /* first taps low, second taps high */
    const __m256d one = _mm256_set1_pd(1.0);
    const float *r0 = d, *r1 = d + dy, *r2 = d + dz, *r3 = d + dz + dy;
    int i = 0;
#define PAIR(r, lo, hi)                                                                                     \
    do {                                                                                                    \
        const __m128i l01 = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)((r) + o0)),                 \
                                               _mm_loadl_epi64((const __m128i *)((r) + o1)));                \
        const __m128i l23 = _mm_unpacklo_epi64(_mm_loadl_epi64((const __m128i *)((r) + o2)),                 \
                                               _mm_loadl_epi64((const __m128i *)((r) + o3)));                \
        const __m256 t = _mm256_permutevar8x32_ps(_mm256_castsi256_ps(_mm256_set_m128i(l23, l01)), pick);    \
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(t));                                                    \
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));                                                  \
    } while (0)
    for (; i + 4 <= n; i += 4) {
        const int64_t o0 = at[i], o1 = at[i + 1], o2 = at[i + 2], o3 = at[i + 3];
        __m256d p0, p1, q0, q1, u0, u1, v0, v1;
        PAIR(r0, p0, p1);
        PAIR(r1, q0, q1);
        PAIR(r2, u0, u1);
        PAIR(r3, v0, v1);
        const __m256d bxw = _mm256_loadu_pd(fx + i), byw = _mm256_loadu_pd(fy + i), bzw = _mm256_loadu_pd(fz + i);
        const __m256d ax = _mm256_sub_pd(one, bxw), ay = _mm256_sub_pd(one, byw), az = _mm256_sub_pd(one, bzw);
        const __m256d s00 = _mm256_add_pd(_mm256_mul_pd(ax, p0), _mm256_mul_pd(bxw, p1));
        const __m256d s01 = _mm256_add_pd(_mm256_mul_pd(ax, q0), _mm256_mul_pd(bxw, q1));
        const __m256d s10 = _mm256_add_pd(_mm256_mul_pd(ax, u0), _mm256_mul_pd(bxw, u1));
        const __m256d s11 = _mm256_add_pd(_mm256_mul_pd(ax, v0), _mm256_mul_pd(bxw, v1));
        const __m256d v = _mm256_add_pd(
            _mm256_mul_pd(az, _mm256_add_pd(_mm256_mul_pd(ay, s00), _mm256_mul_pd(byw, s01))),
            _mm256_mul_pd(bzw, _mm256_add_pd(_mm256_mul_pd(ay, s10), _mm256_mul_pd(byw, s11))));
#if OUT_FLOAT
        _mm_storeu_ps(o + i, _mm256_cvtpd_ps(v));
#else
        _mm256_storeu_pd(o + i, v);
#endif
    }
#undef PAIR
    return i;
}
#endif

/* Order 1 over [ia, ib), where every coordinate lies in [0, length - 1): no
 * clamping, every second tap the next sample.  The coordinate is the span's
 * first (scipy's) plus k times the matrix's first column.  In chunks: the
 * coordinates' fractions and their first taps' positions in the window
 * first (a loop the compiler vectorises; positions in 32 bits, as in
 * interior_nearest), then the reads. */
VECTOR_CLONES static void FN(linear_inside)(const IN_T *restrict d, OUT_T *restrict dst, const Geom *g, const double s[3],
                              int64_t a, int64_t ia, int64_t ib)
{
    const int64_t dy = g->sy, dz = g->sz;
    const int32_t dy32 = (int32_t)dy, dz32 = (int32_t)dz;
    const int32_t f0 = (int32_t)g->first[0], f1 = (int32_t)g->first[1], f2 = (int32_t)g->first[2];
    const double m0 = g->m[0], m1 = g->m[1], m2 = g->m[2], s0 = s[0], s1 = s[1], s2 = s[2];
    enum { CHUNK = 256 };
    int32_t at[CHUNK];
    double fx[CHUNK], fy[CHUNK], fz[CHUNK];
    for (int64_t x0 = ia; x0 < ib; x0 += CHUNK) {
        const int n = (int)(ib - x0 < CHUNK ? ib - x0 : CHUNK);
        const double k0 = (double)(x0 - a);
        for (int i = 0; i < n; i++) { /* the coordinates, their floors and fractions: vectorised */
            const double k = k0 + (double)i;
            const double cx = s0 + k * m0, cy = s1 + k * m1, cz = s2 + k * m2;
            const int32_t jx = (int32_t)cx, jy = (int32_t)cy, jz = (int32_t)cz;
            at[i] = (jx - f0) + (jy - f1) * dy32 + (jz - f2) * dz32; /* as in interior_nearest */
            fx[i] = cx - (double)jx;
            fy[i] = cy - (double)jy;
            fz[i] = cz - (double)jz;
        }
        OUT_T *restrict o = dst + x0;
        int done = 0;
#if defined(AVX2_READS) && defined(IN_FLOAT)
        if (have_avx2)
            done = FN(linear_reads)(d, o, at, fx, fy, fz, n, dy, dz);
#endif
        for (int i = done; i < n; i++) { /* the reads (the rest) */
            const double bxw = fx[i], byw = fy[i], bzw = fz[i];
            const double ax = 1.0 - bxw, ay = 1.0 - byw, az = 1.0 - bzw;
            const IN_T *p = d + at[i];
            const double r00 = ax * (double)p[0] + bxw * (double)p[1];
            const double r01 = ax * (double)p[dy] + bxw * (double)p[dy + 1];
            const double r10 = ax * (double)p[dz] + bxw * (double)p[dz + 1];
            const double r11 = ax * (double)p[dz + dy] + bxw * (double)p[dz + dy + 1];
            o[i] = (OUT_T)(az * (ay * r00 + byw * r01) + bzw * (ay * r10 + byw * r11));
        }
    }
}

/* Order 1 over [lo, hi) of the span, coordinates clamped to the volume; the
 * second tap beyond the last sample is folded onto it ('nearest': weight 0).
 * In chunks, as linear_inside (the steps to the second taps computed with
 * the positions). */
VECTOR_CLONES static void FN(linear_clamped)(const IN_T *restrict d, OUT_T *restrict dst, const Geom *g, const double s[3],
                               int64_t a, int64_t lo, int64_t hi)
{
    const double lx = (double)g->length[0] - 1.0, ly = (double)g->length[1] - 1.0, lz = (double)g->length[2] - 1.0;
    const double m0 = g->m[0], m1 = g->m[1], m2 = g->m[2], s0 = s[0], s1 = s[1], s2 = s[2];
    const int32_t sy = (int32_t)g->sy, sz = (int32_t)g->sz;
    const int32_t f0 = (int32_t)g->first[0], f1 = (int32_t)g->first[1], f2 = (int32_t)g->first[2];
    enum { CHUNK = 256 };
    int32_t at[CHUNK], ddx[CHUNK], ddy[CHUNK], ddz[CHUNK];
    double fx[CHUNK], fy[CHUNK], fz[CHUNK];
    for (int64_t x0 = lo; x0 < hi; x0 += CHUNK) {
        const int n = (int)(hi - x0 < CHUNK ? hi - x0 : CHUNK);
        const double k0 = (double)(x0 - a);
        for (int i = 0; i < n; i++) { /* positions, steps to the second taps, fractions: vectorised */
            const double k = k0 + (double)i;
            const double cx = clamp(s0 + k * m0, lx), cy = clamp(s1 + k * m1, ly), cz = clamp(s2 + k * m2, lz);
            const int32_t jx = (int32_t)cx, jy = (int32_t)cy, jz = (int32_t)cz;
            at[i] = (jx - f0) + (jy - f1) * sy + (jz - f2) * sz; /* as in interior_nearest */
            ddx[i] = (double)jx < lx;
            ddy[i] = ((double)jy < ly) * sy;
            ddz[i] = ((double)jz < lz) * sz;
            fx[i] = cx - (double)jx;
            fy[i] = cy - (double)jy;
            fz[i] = cz - (double)jz;
        }
        OUT_T *restrict o = dst + x0;
        for (int i = 0; i < n; i++) {
            const double ax = 1.0 - fx[i], ay = 1.0 - fy[i], az = 1.0 - fz[i];
            const double bxw = 1.0 - ax, byw = 1.0 - ay, bzw = 1.0 - az;
            const int64_t dx = ddx[i], dy = ddy[i], dz = ddz[i];
            const IN_T *p = d + at[i];
            const double r00 = ax * (double)p[0] + bxw * (double)p[dx];
            const double r01 = ax * (double)p[dy] + bxw * (double)p[dy + dx];
            const double r10 = ax * (double)p[dz] + bxw * (double)p[dz + dx];
            const double r11 = ax * (double)p[dz + dy] + bxw * (double)p[dz + dy + dx];
            o[i] = (OUT_T)(az * (ay * r00 + byw * r01) + bzw * (ay * r10 + byw * r11));
        }
    }
}

/* Order 1 over the interior span [a, b), within [x0, x1): the part whose
 * coordinates lie inside the volume on every axis in one pass with fixed steps
 * from a (whatever part is computed: the same values), the rest clamped. */
static void FN(interior_linear)(const IN_T *d, OUT_T *dst, const Geom *g, const Row *r, int64_t a, int64_t b,
                                int64_t x0, int64_t x1)
{
    const double s[3] = {((g->colx[a] + r->ry[0]) + r->rz[0]) + g->pad,
                         ((g->colx[g->bx + a] + r->ry[1]) + r->rz[1]) + g->pad,
                         ((g->colx[2 * g->bx + a] + r->ry[2]) + r->rz[2]) + g->pad};
    int64_t ia = a, ib = b;
    for (int k = 0; k < 3; k++) {
        int64_t ka, kb;
        axis_span(s[k], g->m[k], 0.0, (double)g->length[k] - 1.0, b - a, &ka, &kb);
        ia = ia > a + ka ? ia : a + ka;
        ib = ib < a + kb ? ib : a + kb;
    }
    const int64_t lo = a > x0 ? a : x0, hi = b < x1 ? b : x1;
    if (hi <= lo)
        return;
    if (ib > ia) {
        const int64_t ja = ia < lo ? lo : ia > hi ? hi : ia, jb = ib < lo ? lo : ib > hi ? hi : ib;
        if (jb > ja)
            FN(linear_inside)(d, dst, g, s, a, ja, jb);
        FN(linear_clamped)(d, dst, g, s, a, lo, ja);
        FN(linear_clamped)(d, dst, g, s, a, jb, hi);
    } else {
        FN(linear_clamped)(d, dst, g, s, a, lo, hi);
    }
}

/* Order 3 over the interior span [a, b) (coefficients): `row`'s bulk route
 * (scipy's coordinates and weights, the same sums in the same order, so the
 * same values bit for bit) without its tests, the 16 rows of four taps read
 * at fixed offsets from the first. */
static void FN(interior_cubic)(const IN_T *d, OUT_T *dst, const Geom *g, const Row *r, int64_t a, int64_t b)
{
    const int64_t sy = g->sy, sz = g->sz;
    const int64_t base = g->first[0] + g->first[1] * sy + g->first[2] * sz + 1 + sy + sz; /* first tap: floor(c) - 1 */
    double wx[6], wy[6], wz[6];
    for (int64_t x = a; x < b; x++) {
        const double cx = ((g->colx[x] + r->ry[0]) + r->rz[0]) + g->pad;
        const double cy = ((g->colx[g->bx + x] + r->ry[1]) + r->rz[1]) + g->pad;
        const double cz = ((g->colx[2 * g->bx + x] + r->ry[2]) + r->rz[2]) + g->pad;
        weights(cx, 3, wx);
        weights(cy, 3, wy);
        weights(cz, 3, wz);
        const IN_T *p = d + ((int64_t)floor(cx) + (int64_t)floor(cy) * sy + (int64_t)floor(cz) * sz - base);
        double t = 0.0;
        for (int k = 0; k < 4; k++) {
            double pp = 0.0;
            for (int j = 0; j < 4; j++) {
                const IN_T *q0 = p + k * sz + j * sy;
                double q = 0.0;
                q += wx[0] * (double)q0[0];
                q += wx[1] * (double)q0[1];
                q += wx[2] * (double)q0[2];
                q += wx[3] * (double)q0[3];
                pp += wy[j] * q;
            }
            t += wz[k] * pp;
        }
        dst[x] = (OUT_T)t;
    }
}

/* The block, in tiles of TILE_Y rows (every plane of a tile, then the next
 * tile): every row's interior span by the route of its order (unless
 * `interior` is 0), the rest by `row` (or `row_nearest`) and `edges`.
 * Returns the taps read outside the window. */
static int64_t FN(resample_block)(const void *data, void *out, Geom *g, int64_t *slow)
{
    const IN_T *d = (const IN_T *)data;
    int64_t bad = 0;
    for (int64_t y0 = 0; y0 < g->by; y0 += TILE_Y)
    for (int64_t z = 0; z < g->bz; z++) {
        const double oz = (double)(g->origin[2] + z);
        for (int64_t y = y0; y < g->by && y < y0 + TILE_Y; y++) {
            const double oy = (double)(g->origin[1] + y);
            Row r;
            for (int k = 0; k < 3; k++) {
                r.ry[k] = oy * g->matrix[3 * k + 1];
                r.rz[k] = oz * g->matrix[3 * k + 2];
            }
            OUT_T *dst = (OUT_T *)out + (z * g->by + y) * g->bx;
            int64_t a = 0, b = 0, nslow, x0 = 0, x1 = g->bx;
            if (g->rows) { /* ITK's rule: cval outside the row's part [x0, x1) inside the input */
                x0 = g->rows[z * g->by + y];
                x1 = g->rows[g->bz * g->by + z * g->by + y];
                for (int64_t x = 0; x < x0; x++)
                    dst[x] = (OUT_T)g->cval;
                for (int64_t x = x1; x < g->bx; x++)
                    dst[x] = (OUT_T)g->cval;
                if (x1 <= x0)
                    continue;
            }
            if (!g->interior) {
                /* every voxel by the per-point route */
            } else if (g->order < 2) {
                span(g, &r, g->mode == NEAREST, &a, &b);
                if (g->order == 0)
                    FN(interior_nearest)(d, dst, g, &r, a > x0 ? a : x0, b < x1 ? b : x1);
                else if (b > a)
                    FN(interior_linear)(d, dst, g, &r, a, b, x0, x1);
            } else if (g->order == 3) {
                span(g, &r, 0, &a, &b);
                FN(interior_cubic)(d, dst, g, &r, a > x0 ? a : x0, b < x1 ? b : x1);
            }
            if (g->mode == NEAREST && g->order < 2)
                nslow = FN(row_nearest)(d, dst, g, &r, slow, a, b, x0, x1);
            else
                nslow = FN(row)(d, dst, g, &r, slow, a, b, x0, x1);
            if (nslow)
                bad += FN(edges)(d, dst, g, &r, slow, nslow);
        }
    }
    return bad;
}

/* kernel.sample_points: the value at each of n explicit coordinates
 * (`coords`: (n, 3), x y z per point, without the pre-pad), the bulk route
 * where every tap lies inside the window and the volume, else scipy's
 * per-point route.  A coordinate not finite or beyond 2^62 (its check in
 * py_sample_points done before this runs, repeated here against another
 * thread changing the array meanwhile) is never converted: the point is
 * counted in *nonfinite and left unwritten.  Returns the taps read outside
 * the window. */
static int64_t FN(sample_points)(const void *data, void *out, const Geom *g, const double *coords, int64_t n,
                                 int64_t *nonfinite)
{
    const IN_T *d = (const IN_T *)data;
    OUT_T *dst = (OUT_T *)out;
    const int order = g->order;
    const double limx = (double)g->length[0] - 1.0, limy = (double)g->length[1] - 1.0,
                 limz = (double)g->length[2] - 1.0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double *q = coords + 3 * i;
        if (!(fabs(q[0]) + g->pad < COORD_MAX && fabs(q[1]) + g->pad < COORD_MAX && fabs(q[2]) + g->pad < COORD_MAX)) {
            *nonfinite += 1;
            continue;
        }
        const double c[3] = {q[0] + g->pad, q[1] + g->pad, q[2] + g->pad};
        const int64_t jx = bulk(c[0], g->first[0], g->width[0], order);
        const int64_t jy = bulk(c[1], g->first[1], g->width[1], order);
        const int64_t jz = bulk(c[2], g->first[2], g->width[2], order);
        if (jx < 0 || jy < 0 || jz < 0 || c[0] > limx || c[1] > limy || c[2] > limz)
            dst[i] = FN(point)(d, g, c, &bad);
        else
            dst[i] = FN(bulk_value)(d + jz * g->sz + jy * g->sy + jx, g, c[0], c[1], c[2]);
    }
    return bad;
}

#undef FN
#undef FN2
#undef FN3
