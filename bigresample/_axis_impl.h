/* The typed half of the separable engine's per-axis sum (engine._eval_axis),
 * for one input type IN_T and one result type OUT_T (_kernel.c includes this
 * file once per pair, through _kernel_types.h). */

#define FN3(name, a, b) name##_##a##_##b
#define FN2(name, a, b) FN3(name, a, b)
#define FN(name) FN2(name, IN_NAME, OUT_NAME)

/* out[o, j, i] = sum_t w[j, t] * x[o, idx[j, t], i] for x (outer, n, inner)
 * and out (outer, m, inner), C-ordered; idx and w (m, ntaps).  The sum in
 * numpy's order in _eval_axis (the first tap's product, then each next
 * product added), in double precision, cast once: its results bit for bit. */
static void FN(axis_sum)(const IN_T *restrict x, OUT_T *restrict out, int64_t outer, int64_t n, int64_t inner,
                         int64_t m, int64_t ntaps, const int64_t *idx, const double *w)
{
    for (int64_t o = 0; o < outer; o++) {
        const IN_T *xo = x + o * n * inner;
        OUT_T *oo = out + o * m * inner;
        if (inner == 1) { /* the contiguous axis: a gather along each line */
            for (int64_t j = 0; j < m; j++) {
                const int64_t *k = idx + j * ntaps;
                const double *wj = w + j * ntaps;
                double acc = (double)xo[k[0]] * wj[0];
                for (int64_t t = 1; t < ntaps; t++)
                    acc += (double)xo[k[t]] * wj[t];
                oo[j] = (OUT_T)acc;
            }
            continue;
        }
        for (int64_t j = 0; j < m; j++) { /* whole lines of `inner` samples, one output index at a time */
            const int64_t *k = idx + j * ntaps;
            const double *wj = w + j * ntaps;
            OUT_T *restrict d = oo + j * inner;
            const IN_T *p0 = xo + k[0] * inner;
            if (ntaps == 2) {
                const IN_T *p1 = xo + k[1] * inner;
                const double w0 = wj[0], w1 = wj[1];
                for (int64_t i = 0; i < inner; i++)
                    d[i] = (OUT_T)((double)p0[i] * w0 + (double)p1[i] * w1);
            } else if (ntaps == 4) {
                const IN_T *p1 = xo + k[1] * inner, *p2 = xo + k[2] * inner, *p3 = xo + k[3] * inner;
                const double w0 = wj[0], w1 = wj[1], w2 = wj[2], w3 = wj[3];
                for (int64_t i = 0; i < inner; i++)
                    d[i] = (OUT_T)((((double)p0[i] * w0 + (double)p1[i] * w1) + (double)p2[i] * w2)
                                   + (double)p3[i] * w3);
            } else {
                for (int64_t i = 0; i < inner; i++) {
                    double acc = (double)p0[i] * wj[0];
                    for (int64_t t = 1; t < ntaps; t++)
                        acc += (double)xo[k[t] * inner + i] * wj[t];
                    d[i] = (OUT_T)acc;
                }
            }
        }
    }
}

#undef FN
#undef FN2
#undef FN3
