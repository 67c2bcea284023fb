/* bigresample._kernel: the compiled kernels (kernel.py says
 * what it computes and how it matches scipy's ni_interpolation.c).
 *
 * Built by `pip install` (setup.py), plain C99 and the CPython API only: no
 * numpy headers, no JIT.  Arrays arrive through the buffer protocol; the GIL
 * is released while a block is computed, so worker threads run in parallel.
 * This file holds the untyped parts (boundary modes, weights, spans) and the
 * Python functions; _kernel_impl.h the per-type block loops; _axis_impl.h
 * the separable engine's per-axis sum (kernel.axis_sum). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* kernel.MODE_CODES */
enum { NEAREST, WRAP, REFLECT, MIRROR, CONSTANT, GRID_WRAP, GRID_CONSTANT };

/* Margin (in voxels) kept from the edges of the interior span: far above the
 * rounding of the span's linear estimate of the coordinates (~1e-13). */
#define SPAN_EPS 1e-6

/* The boundary's limits (py_resample_block checks them before anything is read):
 * - COORD_MAX: a block whose input coordinates can reach 2^62 in magnitude (or
 *   are not finite) is refused: every coordinate the loops convert to int64
 *   (start_tap, the modes' folds) is then finite and in range;
 * - LINEAR_MAX: above 2^26 the rounding of a row's coordinates (a few ulp of
 *   the largest term: 2^26 * 2^-53 * 8 ~ 1e-7 voxel) is no longer far below
 *   SPAN_EPS, and the rows' linear estimate (span) cannot be trusted: such a
 *   block takes no interior span (every voxel by the per-point route, which
 *   checks each tap); geometry.COORDINATE_LIMIT refuses it before it gets here;
 * - LENGTH_MAX: lengths, window positions and the block's output indices, so
 *   that `origin + x`, `first + width` and the folds stay far inside int64. */
#define COORD_MAX 4611686018427387904.0 /* 2^62 */
#define LINEAR_MAX 67108864.0           /* 2^26 */
#define LENGTH_MAX ((int64_t)1 << 52)

/* Rows of a block are visited in tiles of TILE_Y rows, every z plane of a
 * tile before the next tile: the input lines a tile's rows read on one plane
 * are read again on the next, and are still in the cache (256x256x192
 * rotated 15/7 degrees, one block, CPU ns per voxel at orders 0/1/3, three
 * interleaved runs: planes whole 6.7/13.1/81, tiles of 32 rows 5.2/10.9/62). */
/* The chunked loops of orders 0 and 1 also as AVX2 clones, chosen at load
 * time where the processor has it (GCC on x86-64 Linux): the same operations
 * on the same values, four at a time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
/* Order 1's reads from a float32 window, four voxels at a time, where the
 * processor has AVX2 (have_avx2, set when the module loads): each voxel's
 * two taps along x read as one 64-bit load, the sums the scalar loop's,
 * operation for operation (no fused multiply-adds), so its values bit for
 * bit (linear_reads in _kernel_impl.h). */
#define AVX2_READS 1
#include <immintrin.h>
static int cpu_avx2;  /* the processor has AVX2 */
static int have_avx2; /* ... and the reads use it (kernel.use_avx2 turns them off, for the tests) */
#else
#define VECTOR_CLONES
#endif

#ifndef TILE_Y
#define TILE_Y 32
#endif

typedef struct {
    int64_t bx, by, bz;            /* the output block, x fastest */
    int64_t origin[3];             /* its first voxel, x y z */
    double matrix[9], m[3], pad, cval; /* input coordinate per output index (spatial-first, C order); m: column x */
    int64_t first[3], width[3], length[3]; /* per input axis: window's first sample, its width, the line */
    int64_t sy, sz;                /* window strides (samples) of y and z */
    int order, mode;
    int interior;                  /* 0: no interior spans (every voxel by the per-point route) */
    double *colx;                  /* (3, bx): offset + (origin_x + x) * matrix[a, 0] */
    const int64_t *rows;           /* NULL, or ITK's rule: (2, bz, by) per row, the part [lo, hi) of x
                                    * inside the input (cval written elsewhere), checked 0 <= lo <= hi <= bx */
} Geom;

typedef struct {
    double ry[3], rz[3]; /* the row's y and z terms of each coordinate */
} Row;

/* map_coordinate of ni_interpolation.c for x < 0 */
static double map_low(double x, int64_t n, int mode)
{
    if (mode == NEAREST)
        return 0.0;
    if (mode == CONSTANT)
        return -1.0;
    if (mode == GRID_CONSTANT)
        return x;
    if (n <= 1)
        return 0.0;
    if (mode == MIRROR) {
        const int64_t sz2 = 2 * n - 2;
        x = (double)(sz2 * (int64_t)(-x / (double)sz2)) + x;
        return x <= (double)(1 - n) ? x + (double)sz2 : -x;
    }
    if (mode == REFLECT) {
        const int64_t sz2 = 2 * n;
        if (x < (double)-sz2)
            x = (double)(sz2 * (int64_t)(-x / (double)sz2)) + x;
        if (x < (double)-n)
            return x + (double)sz2;
        return (x > -1e-15 ? 1e-15 : -x) - 1.0;
    }
    if (mode == WRAP) {
        const int64_t sz = n - 1;
        return x + (double)(sz * ((int64_t)(-x / (double)sz) + 1));
    }
    return x + (double)(n * ((int64_t)((-1.0 - x) / (double)n) + 1)); /* grid-wrap */
}

/* map_coordinate of ni_interpolation.c for x > n - 1 */
static double map_high(double x, int64_t n, int mode)
{
    if (mode == NEAREST)
        return (double)(n - 1);
    if (mode == CONSTANT)
        return -1.0;
    if (mode == GRID_CONSTANT)
        return x;
    if (n <= 1)
        return 0.0;
    if (mode == MIRROR) {
        const int64_t sz2 = 2 * n - 2;
        x -= (double)(sz2 * (int64_t)(x / (double)sz2));
        return x >= (double)n ? (double)sz2 - x : x;
    }
    if (mode == REFLECT) {
        const int64_t sz2 = 2 * n;
        x -= (double)(sz2 * (int64_t)(x / (double)sz2));
        return x >= (double)n ? ((double)sz2 - x) - 1.0 : x;
    }
    if (mode == WRAP) {
        const int64_t sz = n - 1;
        return x - (double)(sz * (int64_t)(x / (double)sz));
    }
    return x - (double)(n * (int64_t)(x / (double)n)); /* grid-wrap */
}

static double map_coord(double x, int64_t n, int mode)
{
    if (x < 0)
        return map_low(x, n, mode);
    if (x > (double)(n - 1))
        return map_high(x, n, mode);
    return x;
}

/* get_spline_interpolation_weights of scipy's ni_splines.c, term for term
 * (w[0..order]; order 0: the one tap, unweighted). */
static inline void weights(double x, int order, double *w)
{
    x -= floor((order & 1) ? x : x + 0.5);
    double y = x, z = 1.0 - x, t;
    switch (order) {
    case 1:
        w[0] = 1.0 - x;
        w[1] = 1.0 - w[0];
        return;
    case 2:
        w[1] = 0.75 - x * x;
        y = 0.5 - x;
        w[0] = 0.5 * y * y;
        w[2] = (1.0 - w[0]) - w[1];
        return;
    case 3:
        w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
        w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
        w[0] = z * z * z / 6.0;
        w[3] = ((1.0 - w[0]) - w[1]) - w[2];
        return;
    case 4:
        t = x * x;
        w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
        y = 1.0 + x;
        w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
        w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
        y = 0.5 - x;
        t = y * y;
        w[0] = t * t / 24.0;
        w[4] = (((1.0 - w[0]) - w[1]) - w[2]) - w[3];
        return;
    case 5:
        t = y * y;
        w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
        t = z * z;
        w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
        y += 1.0;
        w[1] = y * (y * (y * (y * (y / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
        z += 1.0;
        w[4] = z * (z * (z * (z * (z / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
        y = 1.0 - x;
        t = y * y;
        w[0] = y * t * t / 120.0;
        w[5] = ((((1.0 - w[0]) - w[1]) - w[2]) - w[3]) - w[4];
        return;
    default:
        w[0] = 1.0;
    }
}

/* First tap of a (mapped) coordinate, as scipy finds it. */
static inline int64_t start_tap(double cc, int order)
{
    if (order & 1)
        return (int64_t)floor(cc) - order / 2;
    return (int64_t)floor(cc + 0.5) - order / 2;
}

/* Window position of tap i of a line of `length`: folded by the spline's
 * boundary mode if the point's taps cross an edge (`folds`), -1 for a
 * grid-constant tap outside (cval), -2 if outside the window. */
static int64_t tap(int64_t i, int folds, int64_t length, int64_t first, int64_t width, int mode)
{
    if (mode == GRID_CONSTANT) {
        if (i < 0 || i >= length)
            return -1;
    } else if (folds) {
        const int smode = (mode == CONSTANT || mode == WRAP) ? MIRROR : mode;
        i = (int64_t)map_coord((double)i, length, smode);
    }
    const int64_t j = i - first;
    return (0 <= j && j < width) ? j : -2;
}

/* One axis of scipy's per-point route for the coordinate cc (prepad included):
 * returns 1 if the point is cval ('constant' outside), else 0 with the mapped
 * coordinate, its first tap and whether its taps cross an edge of the line. */
static int axis_start(double cc, int64_t length, int order, int mode, double *mapped, int64_t *start, int *folds)
{
    if (mode != GRID_CONSTANT && mode != NEAREST) {
        cc = map_coord(cc, length, mode);
        if (!(cc > -1.0))
            return 1;
    }
    *mapped = cc;
    *start = start_tap(cc, order);
    *folds = *start < 0 || *start + order >= length;
    return 0;
}

/* Window position of the first tap if every tap lies inside the window (and so
 * inside the volume) and the coordinate needs no mapping, else -1. */
static inline int64_t bulk(double cc, int64_t first, int64_t width, int order)
{
    if (!(cc >= 0.0))
        return -1;
    const int64_t j = start_tap(cc, order) - first;
    if (j < 0 || j + order >= width)
        return -1;
    return j;
}

/* 'nearest' at orders 0 and 1 (no pre-pad): the window positions of the two
 * taps, clamped to the volume as scipy folds them (-1: outside the window). */
static inline void clamped(double cc, int order, int64_t first, int64_t length, int64_t width, int64_t *j0,
                           int64_t *j1)
{
    const int64_t s = start_tap(cc, order);
    const int64_t a = (s > 0 ? s : 0) < length - 1 ? (s > 0 ? s : 0) : length - 1;
    const int64_t b = (s + 1 > 0 ? s + 1 : 0) < length - 1 ? (s + 1 > 0 ? s + 1 : 0) : length - 1;
    *j0 = a - first;
    *j1 = b - first;
    if (*j0 < 0 || *j0 >= width || *j1 < 0 || *j1 >= width)
        *j0 = *j1 = -1;
}

/* min(max(v, 0), hi) */
static inline double clamp(double v, double hi)
{
    v = v > 0.0 ? v : 0.0;
    return v < hi ? v : hi;
}

/* The x range [a, b) of 0 <= x < n where c0 + x m lies in [lo + eps, hi - eps],
 * one x narrower at each end inside the row (lo/hi may be infinite). */
static void axis_span(double c0, double m, double lo, double hi, int64_t n, int64_t *a, int64_t *b)
{
    *a = *b = 0;
    lo += SPAN_EPS;
    hi -= SPAN_EPS;
    if (hi < lo)
        return;
    if (m == 0.0) {
        if (lo <= c0 && c0 <= hi)
            *b = n;
        return;
    }
    double t0 = (lo - c0) / m, t1 = (hi - c0) / m;
    if (m < 0.0) {
        const double t = t0;
        t0 = t1;
        t1 = t;
    }
    if (!(t1 >= 0.0 && t0 < (double)n)) /* also NaN */
        return;
    *a = t0 > 0.0 ? (int64_t)ceil(t0) + 1 : 0;
    *b = t1 < (double)n ? (int64_t)floor(t1) : n;
    if (*b < *a)
        *b = *a;
}

/* The x range of a row whose taps all lie inside the window, with coordinates
 * inside the volume (no mapping by any mode) or, if `clampit` ('nearest',
 * orders 0 and 1), anywhere on an axis whose window reaches the volume's edge:
 * 'nearest' maps a coordinate beyond it onto the edge and its taps are the edge's. */
static void span(const Geom *g, const Row *r, int clampit, int64_t *a, int64_t *b)
{
    const int64_t n = g->bx;
    *a = *b = 0;
    if (n < 2)
        return;
    int64_t sa = 0, sb = n;
    const int h = g->order / 2;
    for (int k = 0; k < 3; k++) {
        const int64_t first = g->first[k], width = g->width[k], length = g->length[k];
        const double *col = g->colx + k * n;
        const double c0 = ((col[0] + r->ry[k]) + r->rz[k]) + g->pad;
        const double m = (col[n - 1] - col[0]) / (double)(n - 1);
        double lo, hi;
        if (g->order & 1) { /* the taps floor(c) - h .. floor(c) + h + 1 */
            lo = (double)(first + h);
            hi = ((double)(first + width) - 1.0) - (double)h;
        } else { /* the taps floor(c + 0.5) - h .. floor(c + 0.5) + h */
            lo = (double)(first + h) - 0.5;
            hi = ((double)(first + width) - 0.5) - (double)h;
        }
        lo = lo > 0.0 ? lo : 0.0;
        hi = hi < (double)length - 1.0 ? hi : (double)length - 1.0;
        if (clampit && first <= 0)
            lo = -INFINITY;
        if (clampit && first + width >= length)
            hi = INFINITY;
        int64_t ka, kb;
        axis_span(c0, m, lo, hi, n, &ka, &kb);
        sa = sa > ka ? sa : ka;
        sb = sb < kb ? sb : kb;
    }
    *a = sa;
    *b = sb > sa ? sb : sa;
}

#define OUT_T float
#define OUT_NAME f4
#define OUT_FLOAT 1
#include "_kernel_types.h"
#undef OUT_T
#undef OUT_NAME
#undef OUT_FLOAT
#define OUT_T double
#define OUT_NAME f8
#define OUT_FLOAT 0
#include "_kernel_types.h"
#undef OUT_T
#undef OUT_NAME
#undef OUT_FLOAT

typedef int64_t (*block_fn)(const void *, void *, Geom *, int64_t *);

#define ROW(o) {resample_block_u1_##o, resample_block_i1_##o, resample_block_u2_##o, resample_block_i2_##o, \
                resample_block_u4_##o, resample_block_i4_##o, resample_block_u8_##o, resample_block_i8_##o, \
                resample_block_f4_##o, resample_block_f8_##o}
static const block_fn BLOCK[2][10] = {ROW(f4), ROW(f8)};

typedef int64_t (*points_fn)(const void *, void *, const Geom *, const double *, int64_t, int64_t *);
#define POINTS_ROW(o) {sample_points_u1_##o, sample_points_i1_##o, sample_points_u2_##o, sample_points_i2_##o, \
                       sample_points_u4_##o, sample_points_i4_##o, sample_points_u8_##o, sample_points_i8_##o, \
                       sample_points_f4_##o, sample_points_f8_##o}
static const points_fn POINTS[2][10] = {POINTS_ROW(f4), POINTS_ROW(f8)};

typedef void (*axis_fn)(const void *, void *, int64_t, int64_t, int64_t, int64_t, int64_t, const int64_t *,
                        const double *);
#define AXIS_ROW(o) {(axis_fn)axis_sum_u1_##o, (axis_fn)axis_sum_i1_##o, (axis_fn)axis_sum_u2_##o, \
                     (axis_fn)axis_sum_i2_##o, (axis_fn)axis_sum_u4_##o, (axis_fn)axis_sum_i4_##o, \
                     (axis_fn)axis_sum_u8_##o, (axis_fn)axis_sum_i8_##o, (axis_fn)axis_sum_f4_##o, \
                     (axis_fn)axis_sum_f8_##o}
static const axis_fn AXIS_SUM[2][10] = {AXIS_ROW(f4), AXIS_ROW(f8)};

/* The table's index of a buffer's type (u1 i1 u2 i2 u4 i4 u8 i8 f4 f8), -1 if none. */
static int type_index(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    const union { uint16_t u; uint8_t c[2]; } order = {1};
    if (*f == '@' || *f == '=' || *f == (order.c[0] ? '<' : '>') || (*f == '!' && !order.c[0]))
        f++; /* the machine's byte order, said or implied (numpy says '<f' for a little-endian float32) */
    if (f[0] == '\0' || f[1] != '\0')
        return -1;
    const char c = f[0];
    if (c == 'f')
        return v->itemsize == 4 ? 8 : -1;
    if (c == 'd')
        return v->itemsize == 8 ? 9 : -1;
    if (!strchr("bBhHiIlLqQ", c))
        return -1;
    const int sign = c >= 'a'; /* lower case: signed */
    switch (v->itemsize) {
    case 1: return sign;
    case 2: return 2 + sign;
    case 4: return 4 + sign;
    case 8: return 6 + sign;
    }
    return -1;
}

/* The n numbers of a Python sequence, into `reals` (as floats) or `ints`
 * (as integers): exactly one of the two is given.  0, or -1 with an error set. */
static int read_numbers(PyObject *seq, double *reals, int64_t *ints, Py_ssize_t n, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast)
        return -1;
    int bad = PySequence_Fast_GET_SIZE(fast) != n;
    if (bad)
        PyErr_Format(PyExc_ValueError, "%s: %zd values expected", what, n);
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (reals)
            reals[i] = PyFloat_AsDouble(item);
        else
            ints[i] = PyLong_AsLongLong(item);
        bad = PyErr_Occurred() != NULL;
    }
    Py_DECREF(fast);
    return bad ? -1 : 0;
}

static int read_doubles(PyObject *seq, double *dst, Py_ssize_t n, const char *what)
{
    return read_numbers(seq, dst, NULL, n, what);
}

static int read_ints(PyObject *seq, int64_t *dst, Py_ssize_t n, const char *what)
{
    return read_numbers(seq, NULL, dst, n, what);
}

/* 1 if the byte ranges [a, a + na) and [b, b + nb) share a byte. */
static int overlaps(const void *a, Py_ssize_t na, const void *b, Py_ssize_t nb)
{
    const uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    return na > 0 && nb > 0 && pa < pb + (uintptr_t)nb && pb < pa + (uintptr_t)na;
}

/* The C-contiguous buffers of `n` objects (`writable[i]`: the i-th must be writable), all or
 * none: 0 with every view held, or -1 with none held and an error set. */
static int get_buffers(int n, PyObject *const objs[], const int writable[], Py_buffer *const views[])
{
    for (int i = 0; i < n; i++) {
        const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable[i] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[i], views[i], flags) < 0) {
            while (i-- > 0)
                PyBuffer_Release(views[i]);
            return -1;
        }
    }
    return 0;
}

/* The window's part of g from the buffer `din` ((z, y, x), C-ordered) and the
 * sampling arguments (g->first and g->length already read), then checked: the
 * pad and, per axis, the line's length and the window's place on it (`who`:
 * the function named in the message); 0, or -1 with an error set. */
static int set_window(Geom *g, const Py_buffer *din, double pad, double cval, int order, int mode, const char *who)
{
    g->width[0] = din->shape[2];
    g->width[1] = din->shape[1];
    g->width[2] = din->shape[0];
    g->sy = din->shape[2];
    g->sz = (int64_t)din->shape[2] * din->shape[1];
    g->pad = pad;
    g->cval = cval;
    g->order = order;
    g->mode = mode;
    if (!isfinite(g->pad) || g->pad < 0.0 || g->pad > 1e6) {
        char text[32];
        snprintf(text, sizeof text, "%g", g->pad);
        PyErr_Format(PyExc_ValueError, "%s: pad %s out of range", who, text);
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        if (g->length[k] < 1 || g->length[k] > LENGTH_MAX) {
            PyErr_Format(PyExc_ValueError, "%s: line length %lld on axis %d outside [1, 2**52]", who,
                         (long long)g->length[k], k);
            return -1;
        }
        if (g->width[k] < 1) {
            PyErr_Format(PyExc_ValueError, "%s: empty window (axis %d)", who, k);
            return -1;
        }
        if (g->first[k] < 0 || g->first[k] > g->length[k] - g->width[k]) {
            PyErr_Format(PyExc_ValueError, "%s: window first %lld, width %lld on axis %d leaves the "
                         "line [0, %lld)", who, (long long)g->first[k], (long long)g->width[k], k,
                         (long long)g->length[k]);
            return -1;
        }
    }
    return 0;
}

/* resample_block's arguments (the window's already checked by set_window),
 * checked against each other and the buffers (the limits: COORD_MAX,
 * LINEAR_MAX, LENGTH_MAX); 0, or -1 with an error set.  Sets g->interior to 0
 * where the interior routes' assumptions do not hold. */
static int check_block(Geom *g, const double off[3], const Py_buffer *din, const Py_buffer *dout)
{
    for (int k = 0; k < 3; k++) {
        const int64_t b = k == 0 ? g->bx : k == 1 ? g->by : g->bz;
        if (g->origin[k] < -LENGTH_MAX || g->origin[k] > LENGTH_MAX - b) {
            PyErr_Format(PyExc_ValueError, "resample_block: origin %lld on axis %d outside [-2**52, 2**52)",
                         (long long)g->origin[k], k);
            return -1;
        }
    }
    if (overlaps(din->buf, din->len, dout->buf, dout->len)) {
        PyErr_SetString(PyExc_ValueError, "resample_block: the output block overlaps the window");
        return -1;
    }
    /* the largest magnitude of any partial sum of a coordinate over the block */
    const int64_t last[3] = {g->bx - 1, g->by - 1, g->bz - 1};
    for (int k = 0; k < 3; k++) {
        double bound = fabs(off[k]) + g->pad;
        for (int j = 0; j < 3; j++) {
            const double lo = fabs((double)g->origin[j]), hi = fabs((double)(g->origin[j] + last[j]));
            bound += fabs(g->matrix[3 * k + j]) * (lo > hi ? lo : hi);
        }
        if (!(bound < COORD_MAX)) { /* also NaN */
            char text[32];
            snprintf(text, sizeof text, "%g", bound);
            PyErr_Format(PyExc_ValueError, "resample_block: input coordinates on axis %d reach %s (not finite, or "
                         "beyond 2**62)", k, text);
            return -1;
        }
        if (bound > LINEAR_MAX || g->length[k] > INT32_MAX)
            g->interior = 0;
    }
    /* the interior routes of orders 0 and 1 hold positions in the window in 32 bits */
    if (g->order < 2 && (int64_t)din->shape[0] * din->shape[1] * din->shape[2] > INT32_MAX)
        g->interior = 0;
    return 0;
}

/* resample_block's `rows` (ITK's rule: None, or an int64 (2, bz, by) array of each output
 * row's part [lo, hi) inside the input) copied into `*copy` (freed by the caller) and checked,
 * the copy being what the block reads: 0, or -1 with an error set. */
static int read_rows(PyObject *rows_obj, const Geom *g, int64_t **copy)
{
    *copy = NULL;
    if (rows_obj == Py_None)
        return 0;
    Py_buffer rb;
    if (PyObject_GetBuffer(rows_obj, &rb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    int status = -1;
    if (rb.ndim != 3 || type_index(&rb) != 7 || rb.shape[0] != 2 || rb.shape[1] != g->bz || rb.shape[2] != g->by) {
        PyErr_Format(PyExc_TypeError, "resample_block: rows must be int64 of shape (2, %lld, %lld)",
                     (long long)g->bz, (long long)g->by);
        goto done;
    }
    const size_t n = 2 * (size_t)g->bz * (size_t)g->by; /* the block's rows exist in memory: no overflow */
    *copy = (int64_t *)malloc(sizeof(int64_t) * n);
    if (!*copy) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(*copy, rb.buf, sizeof(int64_t) * n);
    const int64_t *lo = *copy, *hi = *copy + n / 2;
    for (size_t i = 0; i < n / 2; i++)
        if (lo[i] < 0 || lo[i] > hi[i] || hi[i] > g->bx) {
            PyErr_Format(PyExc_ValueError, "resample_block: row %lld's part [%lld, %lld) is not within [0, %lld]",
                         (long long)i, (long long)lo[i], (long long)hi[i], (long long)g->bx);
            goto done;
        }
    status = 0;
done:
    if (status < 0) {
        free(*copy);
        *copy = NULL;
    }
    PyBuffer_Release(&rb);
    return status;
}

static PyObject *py_resample_block(PyObject *self, PyObject *args)
{
    PyObject *data_obj, *out_obj, *matrix, *offset, *origin, *first, *length, *rows_obj = Py_None;
    double pad, cval;
    int order, mode, interior;
    if (!PyArg_ParseTuple(args, "OOOOOOOdiidp|O", &data_obj, &out_obj, &matrix, &offset, &origin, &first, &length,
                          &pad, &order, &mode, &cval, &interior, &rows_obj))
        return NULL;
    if (order < 0 || order > 5 || mode < 0 || mode > GRID_CONSTANT) {
        PyErr_Format(PyExc_ValueError, "order %d / mode %d out of range", order, mode);
        return NULL;
    }
    Geom g;
    double off[3];
    memset(&g, 0, sizeof g);
    if (read_doubles(matrix, g.matrix, 9, "matrix") || read_doubles(offset, off, 3, "offset")
        || read_ints(origin, g.origin, 3, "origin") || read_ints(first, g.first, 3, "first")
        || read_ints(length, g.length, 3, "length"))
        return NULL;
    Py_buffer din, dout;
    if (PyObject_GetBuffer(data_obj, &din, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (PyObject_GetBuffer(out_obj, &dout, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&din);
        return NULL;
    }
    PyObject *result = NULL;
    const int tin = type_index(&din), tout = type_index(&dout);
    if (din.ndim != 3 || dout.ndim != 3 || tin < 0 || (tout != 8 && tout != 9)) {
        PyErr_SetString(PyExc_TypeError, "resample_block: 3-d windows of a numeric type and float32/float64 blocks only");
        goto done;
    }
    g.bz = dout.shape[0];
    g.by = dout.shape[1];
    g.bx = dout.shape[2];
    g.interior = interior;
    for (int k = 0; k < 3; k++)
        g.m[k] = g.matrix[3 * k];
    if (g.bx == 0 || g.by == 0 || g.bz == 0) {
        result = PyLong_FromLong(0);
        goto done;
    }
    if (set_window(&g, &din, pad, cval, order, mode, "resample_block") < 0 || check_block(&g, off, &din, &dout) < 0)
        goto done;
    int64_t *rows;
    if (read_rows(rows_obj, &g, &rows) < 0)
        goto done;
    g.rows = rows;
    g.colx = (double *)malloc(sizeof(double) * 3 * (size_t)g.bx);
    int64_t *slow = (int64_t *)malloc(sizeof(int64_t) * (size_t)g.bx);
    if (!g.colx || !slow) {
        free(g.colx);
        free(slow);
        free(rows);
        PyErr_NoMemory();
        goto done;
    }
    for (int k = 0; k < 3; k++)
        for (int64_t x = 0; x < g.bx; x++)
            g.colx[k * g.bx + x] = off[k] + (double)(g.origin[0] + x) * g.matrix[3 * k];
    int64_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = BLOCK[tout - 8][tin](din.buf, dout.buf, &g, slow);
    Py_END_ALLOW_THREADS
    free(g.colx);
    free(slow);
    free(rows);
    result = PyLong_FromLongLong(bad);
done:
    PyBuffer_Release(&din);
    PyBuffer_Release(&dout);
    return result;
}

/* kernel.sample_points: the window `data` (z, y, x) sampled at explicit
 * coordinates `coords` ((n, 3) float64, x y z per point) into `out` (n
 * float32/float64 samples, C-ordered, any shape); first/length per axis as
 * resample_block's.  Every coordinate is checked (finite, |c| + pad < 2^62)
 * before anything is written; the loop checks each again before converting it. */
static PyObject *py_sample_points(PyObject *self, PyObject *args)
{
    PyObject *data_obj, *coords_obj, *out_obj, *first, *length;
    double pad, cval;
    int order, mode;
    if (!PyArg_ParseTuple(args, "OOOOOdiid", &data_obj, &coords_obj, &out_obj, &first, &length, &pad, &order, &mode,
                          &cval))
        return NULL;
    if (order < 0 || order > 5 || mode < 0 || mode > GRID_CONSTANT) {
        PyErr_Format(PyExc_ValueError, "order %d / mode %d out of range", order, mode);
        return NULL;
    }
    Geom g;
    memset(&g, 0, sizeof g);
    if (read_ints(first, g.first, 3, "first") || read_ints(length, g.length, 3, "length"))
        return NULL;
    Py_buffer din, dc, dout;
    if (get_buffers(3, (PyObject *[]){data_obj, coords_obj, out_obj}, (const int[]){0, 0, 1},
                    (Py_buffer *[]){&din, &dc, &dout}) < 0)
        return NULL;
    PyObject *result = NULL;
    const int tin = type_index(&din), tout = type_index(&dout);
    if (din.ndim != 3 || tin < 0 || (tout != 8 && tout != 9) || dc.ndim != 2 || dc.shape[1] != 3
        || type_index(&dc) != 9) {
        PyErr_SetString(PyExc_TypeError, "sample_points: a 3-d window of a numeric type, (n, 3) float64 coordinates "
                        "and float32/float64 samples only");
        goto done;
    }
    const int64_t n = dc.shape[0];
    if (dout.len / dout.itemsize != n) {
        PyErr_Format(PyExc_ValueError, "sample_points: %lld coordinates for %lld output samples", (long long)n,
                     (long long)(dout.len / dout.itemsize));
        goto done;
    }
    if (set_window(&g, &din, pad, cval, order, mode, "sample_points") < 0)
        goto done;
    if (overlaps(din.buf, din.len, dout.buf, dout.len) || overlaps(dc.buf, dc.len, dout.buf, dout.len)) {
        PyErr_SetString(PyExc_ValueError, "sample_points: the output overlaps the window or the coordinates");
        goto done;
    }
    const double *c = (const double *)dc.buf;
    int64_t worst = -1;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; i < 3 * n && worst < 0; i++)
        if (!(fabs(c[i]) + pad < COORD_MAX)) /* also NaN */
            worst = i;
    Py_END_ALLOW_THREADS
    if (worst >= 0) {
        char text[32];
        snprintf(text, sizeof text, "%g", c[worst]);
        PyErr_Format(PyExc_ValueError, "sample_points: coordinate %s of point %lld on axis %d is not finite or "
                     "reaches 2**62", text, (long long)(worst / 3), (int)(worst % 3));
        goto done;
    }
    int64_t bad, nonfinite = 0;
    Py_BEGIN_ALLOW_THREADS
    bad = POINTS[tout - 8][tin](din.buf, dout.buf, &g, c, n, &nonfinite);
    Py_END_ALLOW_THREADS
    if (nonfinite) {
        PyErr_SetString(PyExc_ValueError, "sample_points: coordinates changed to values not finite or beyond 2**62 "
                        "while they were sampled");
        goto done;
    }
    result = PyLong_FromLongLong(bad);
done:
    PyBuffer_Release(&din);
    PyBuffer_Release(&dc);
    PyBuffer_Release(&dout);
    return result;
}

/* kernel._span (for the tests): the interior span of one row of `colx`. */
static PyObject *py_span(PyObject *self, PyObject *args)
{
    PyObject *colx_obj, *geom, *ry, *rz;
    double pad;
    int order, clampit;
    if (!PyArg_ParseTuple(args, "OOdipOO", &colx_obj, &geom, &pad, &order, &clampit, &ry, &rz))
        return NULL;
    Geom g;
    Row r;
    int64_t gm[9];
    memset(&g, 0, sizeof g);
    if (read_ints(geom, gm, 9, "geom") || read_doubles(ry, r.ry, 3, "ry") || read_doubles(rz, r.rz, 3, "rz"))
        return NULL;
    Py_buffer c;
    if (PyObject_GetBuffer(colx_obj, &c, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (c.ndim != 2 || c.shape[0] != 3 || type_index(&c) != 9) {
        PyBuffer_Release(&c);
        PyErr_SetString(PyExc_TypeError, "span: colx must be float64 of shape (3, n)");
        return NULL;
    }
    for (int k = 0; k < 3; k++) {
        g.first[k] = gm[k];
        g.width[k] = gm[3 + k];
        g.length[k] = gm[6 + k];
    }
    g.bx = c.shape[1];
    g.colx = (double *)c.buf;
    g.pad = pad;
    g.order = order;
    int64_t a, b;
    span(&g, &r, clampit, &a, &b);
    PyBuffer_Release(&c);
    return Py_BuildValue("LL", (long long)a, (long long)b);
}

/* A 3-d view filtered along axis 1 in place and its scratch row (`who`: the function named in
 * the message): strides of whole float64 samples, the row apart from the view; 0, or -1 with
 * an error set. */
static int check_lines_view(const Py_buffer *v, const Py_buffer *accb, const char *who)
{
    if (v->strides[0] % 8 || v->strides[1] % 8 || v->strides[2] % 8) {
        PyErr_Format(PyExc_ValueError, "%s: strides (%zd, %zd, %zd) are not whole float64 samples", who,
                     v->strides[0], v->strides[1], v->strides[2]);
        return -1;
    }
    /* the view's bytes lie between its lowest and highest sample */
    char *lo = (char *)v->buf, *hi = (char *)v->buf + 8;
    for (int k = 0; k < 3; k++) {
        if (v->shape[k] == 0)
            return 0; /* nothing to filter */
        const Py_ssize_t reach = (v->shape[k] - 1) * v->strides[k];
        if (reach < 0)
            lo += reach;
        else
            hi += reach;
    }
    if (overlaps(lo, hi - lo, accb->buf, accb->len)) {
        PyErr_Format(PyExc_ValueError, "%s: the scratch row overlaps the view", who);
        return -1;
    }
    return 0;
}

/* prefilter_lines' view and arguments: check_lines_view's, lines of at least
 * 2 samples, horizons inside the line, a known start (`kind`); 0, or -1 with
 * an error set. */
static int check_prefilter(const Py_buffer *v, const Py_buffer *accb, const int64_t *hs, Py_ssize_t np_, int kind)
{
    if (v->strides[0] % 8 || v->strides[1] % 8 || v->strides[2] % 8)
        return check_lines_view(v, accb, "prefilter_lines");
    const Py_ssize_t n = v->shape[1];
    if (n < 2) {
        PyErr_Format(PyExc_ValueError, "prefilter_lines: a line of %zd samples (2 or more are filtered)", n);
        return -1;
    }
    for (Py_ssize_t p = 0; p < np_; p++)
        if (hs[p] < 0 || hs[p] > n - 1) {
            PyErr_Format(PyExc_ValueError, "prefilter_lines: horizon %lld outside [0, %zd]", (long long)hs[p], n - 1);
            return -1;
        }
    if (kind < 0 || kind > 2) {
        PyErr_Format(PyExc_ValueError, "prefilter_lines: kind %d (0 mirror, 1 reflect, 2 wrap)", kind);
        return -1;
    }
    return check_lines_view(v, accb, "prefilter_lines");
}

/* The buffers of prefilter_lines and spline_filter_lines: `a_obj` a 3-d float64 view (any
 * strides, checked by check_lines_view), `acc_obj` a C-contiguous writable float64 row at least
 * as long as the view's last axis.  Returns 0 with both held, or -1 with neither and an error set. */
static int lines_buffers(PyObject *a_obj, PyObject *acc_obj, Py_buffer *v, Py_buffer *accb, const char *name)
{
    if (PyObject_GetBuffer(a_obj, v, PyBUF_RECORDS) < 0)
        return -1;
    if (PyObject_GetBuffer(acc_obj, accb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(v);
        return -1;
    }
    if (v->ndim != 3 || type_index(v) != 9 || type_index(accb) != 9 || accb->ndim != 1
        || accb->shape[0] < v->shape[2]) {
        PyErr_Format(PyExc_TypeError, "%s: a 3-d float64 view and a float64 row of its last axis", name);
        PyBuffer_Release(v);
        PyBuffer_Release(accb);
        return -1;
    }
    return 0;
}

/* kernel.prefilter_lines: the B-spline prefilter along axis 1 of a 3-d
 * float64 view (any strides), in place; its docstring says how. */
static PyObject *py_prefilter_lines(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *zs_obj, *h_obj, *acc_obj;
    double gain;
    int kind;
    if (!PyArg_ParseTuple(args, "OdOOiO", &a_obj, &gain, &zs_obj, &h_obj, &kind, &acc_obj))
        return NULL;
    double zs[4];
    int64_t hs[4];
    Py_ssize_t np_ = PySequence_Size(zs_obj);
    if (np_ < 0 || np_ > 4) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "prefilter_lines: at most 4 poles");
        return NULL;
    }
    if (read_doubles(zs_obj, zs, np_, "poles") || read_ints(h_obj, hs, np_, "horizons"))
        return NULL;
    Py_buffer v, accb;
    if (lines_buffers(a_obj, acc_obj, &v, &accb, "prefilter_lines") < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_prefilter(&v, &accb, hs, np_, kind) < 0)
        goto done;
    const Py_ssize_t lead = v.shape[0], n = v.shape[1], rest = v.shape[2];
    const Py_ssize_t s0 = v.strides[0] / 8, s1 = v.strides[1] / 8, s2 = v.strides[2] / 8;
    double *acc = (double *)accb.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t l = 0; l < lead; l++) {
        double *A = (double *)v.buf + l * s0;
#define AT(i, r) A[(i) * s1 + (r) * s2]
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(i, r) = AT(i, r) * gain;
        for (Py_ssize_t p = 0; p < np_; p++) {
            const double z = zs[p];
            const int64_t h = hs[p];
            /* causal start */
            for (Py_ssize_t r = 0; r < rest; r++)
                acc[r] = AT(0, r);
            double zi = z;
            for (int64_t i = 1; i < h + 1; i++) {
                const Py_ssize_t k = kind == 2 ? n - i : i;
                for (Py_ssize_t r = 0; r < rest; r++)
                    acc[r] = acc[r] + AT(k, r) * zi;
                zi *= z;
            }
            if (kind == 1)
                for (Py_ssize_t r = 0; r < rest; r++)
                    acc[r] = acc[r] * z + AT(0, r);
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(0, r) = acc[r];
            /* causal recursion */
            for (Py_ssize_t i = 1; i < n; i++)
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(i, r) = AT(i, r) + AT(i - 1, r) * z;
            /* anti-causal start */
            if (kind == 0) {
                const double f = z / (z * z - 1.0);
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(n - 1, r) = (AT(n - 2, r) * z + AT(n - 1, r)) * f;
            } else if (kind == 1) {
                const double f = z / (z - 1.0);
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(n - 1, r) = AT(n - 1, r) * f;
            } else {
                zi = z;
                for (int64_t i = 0; i < h; i++) {
                    for (Py_ssize_t r = 0; r < rest; r++)
                        AT(n - 1, r) = AT(n - 1, r) + AT(i, r) * zi;
                    zi *= z;
                }
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(n - 1, r) = AT(n - 1, r) * -z;
            }
            /* anti-causal recursion */
            for (Py_ssize_t i = n - 2; i >= 0; i--)
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(i, r) = (AT(i + 1, r) - AT(i, r)) * z;
        }
#undef AT
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&v);
    PyBuffer_Release(&accb);
    return result;
}

/* scipy.ndimage's prefilter poles (ni_splines.c's get_filter_poles: these literals, not the
 * closed forms of splines.poles, which differ in the last bits), orders 2 to 5. */
static const double SCIPY_POLES[4][2] = {
    {-0.171572875253809902396622551580603843, 0.0},
    {-0.267949192431122706472553658494127633, 0.0},
    {-0.361341225900220177092212841325675255, -0.013725429297339121360331226939128204},
    {-0.430575347099973791851434783493520110, -0.043096288203264653822712376822550182},
};

/* scipy's apply_filter (ni_splines.c) on the `rest` lines A[.., r] of n >= 2 samples, which
 * advance together: the gain, then per pole the full causal start of `kind` (0 mirror, 1
 * reflect, 2 wrap), the causal recursion, the anti-causal start and recursion, every
 * operation as scipy writes it, in its order (pow from the same libm), so bit for bit. */
static void scipy_lines(double *A, Py_ssize_t n, Py_ssize_t rest, Py_ssize_t s1, Py_ssize_t s2, const double *zs,
                        int np_, int kind, double *acc)
{
#define AT(i, r) A[(i) * s1 + (r) * s2]
    double gain = 1.0;
    for (int p = 0; p < np_; p++)
        gain *= (1.0 - zs[p]) * (1.0 - 1.0 / zs[p]);
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t r = 0; r < rest; r++)
            AT(i, r) *= gain;
    for (int p = 0; p < np_; p++) {
        const double z = zs[p];
        double zi = z;
        if (kind == 0) { /* _init_causal_mirror */
            const double zn1 = pow(z, (double)(n - 1));
            for (Py_ssize_t r = 0; r < rest; r++)
                acc[r] = AT(0, r) + zn1 * AT(n - 1, r);
            for (Py_ssize_t i = 1; i < n - 1; i++) {
                for (Py_ssize_t r = 0; r < rest; r++)
                    acc[r] += zi * (AT(i, r) + zn1 * AT(n - 1 - i, r));
                zi *= z;
            }
            const double d = 1 - zn1 * zn1;
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(0, r) = acc[r] / d;
        } else if (kind == 1) { /* _init_causal_reflect */
            const double zn = pow(z, (double)n);
            for (Py_ssize_t r = 0; r < rest; r++)
                acc[r] = AT(0, r) + zn * AT(n - 1, r);
            for (Py_ssize_t i = 1; i < n - 1; i++) {
                for (Py_ssize_t r = 0; r < rest; r++)
                    acc[r] += zi * (AT(i, r) + zn * AT(n - 1 - i, r));
                zi *= z;
            }
            /* the last term reads c[0], which scipy has been summing into: the sum so far */
            for (Py_ssize_t r = 0; r < rest; r++)
                acc[r] += zi * (AT(n - 1, r) + zn * acc[r]);
            const double f = z / (1 - zn * zn);
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(0, r) = acc[r] * f + AT(0, r);
        } else { /* _init_causal_wrap */
            for (Py_ssize_t r = 0; r < rest; r++)
                acc[r] = AT(0, r);
            for (Py_ssize_t i = 1; i < n; i++) {
                for (Py_ssize_t r = 0; r < rest; r++)
                    acc[r] += zi * AT(n - i, r);
                zi *= z;
            }
            const double d = 1 - zi;
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(0, r) = acc[r] / d;
        }
        for (Py_ssize_t i = 1; i < n; i++)
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(i, r) += z * AT(i - 1, r);
        if (kind == 0) { /* _init_anticausal_mirror */
            const double d = z * z - 1;
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(n - 1, r) = (z * AT(n - 2, r) + AT(n - 1, r)) * z / d;
        } else if (kind == 1) { /* _init_anticausal_reflect */
            const double f = z / (z - 1);
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(n - 1, r) *= f;
        } else { /* _init_anticausal_wrap */
            zi = z;
            for (Py_ssize_t i = 0; i < n - 1; i++) {
                for (Py_ssize_t r = 0; r < rest; r++)
                    AT(n - 1, r) += zi * AT(i, r);
                zi *= z;
            }
            const double f = z / (zi - 1);
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(n - 1, r) *= f;
        }
        for (Py_ssize_t i = n - 2; i >= 0; i--)
            for (Py_ssize_t r = 0; r < rest; r++)
                AT(i, r) = z * (AT(i + 1, r) - AT(i, r));
    }
#undef AT
}

/* kernel.spline_filter_lines: scipy.ndimage.spline_filter1d along axis 1 of a 3-d float64
 * view (any strides), in place, bit for bit; its docstring says how. */
static PyObject *py_spline_filter_lines(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *acc_obj;
    int order, kind;
    if (!PyArg_ParseTuple(args, "OiiO", &a_obj, &order, &kind, &acc_obj))
        return NULL;
    if (order < 2 || order > 5) {
        PyErr_Format(PyExc_ValueError, "spline_filter_lines: order %d (2 to 5 are filtered)", order);
        return NULL;
    }
    if (kind < 0 || kind > 2) {
        PyErr_Format(PyExc_ValueError, "spline_filter_lines: kind %d (0 mirror, 1 reflect, 2 wrap)", kind);
        return NULL;
    }
    Py_buffer v, accb;
    if (lines_buffers(a_obj, acc_obj, &v, &accb, "spline_filter_lines") < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_lines_view(&v, &accb, "spline_filter_lines") < 0)
        goto done;
    const Py_ssize_t lead = v.shape[0], n = v.shape[1], rest = v.shape[2];
    const Py_ssize_t s0 = v.strides[0] / 8, s1 = v.strides[1] / 8, s2 = v.strides[2] / 8;
    const int np_ = order / 2;
    if (n >= 2 && rest > 0) { /* scipy leaves a line of one sample as it is */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t l = 0; l < lead; l++)
            scipy_lines((double *)v.buf + l * s0, n, rest, s1, s2, SCIPY_POLES[order - 2], np_, kind,
                        (double *)accb.buf);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyBuffer_Release(&v);
    PyBuffer_Release(&accb);
    return result;
}

/* label_boxes' scan of one row of `nx` keys (`T`: the window's unsigned type) that begins at
 * multi-index `at` (its leading `lead` axes): per run of one key, its count, its x range and,
 * the first time the key is met in this row (`seen`: the row's number + 1), the leading axes'
 * ranges.  Returns 0, or -1 when a key is not below `nv` (nothing written for it). */
#define LABEL_ROW(T)                                                                                      \
    static int label_row_##T(const void *keys, int64_t nx, uint64_t lo, int64_t nv, int64_t row,       \
                             const int64_t *at, int lead, int64_t *counts, int64_t *boxes, int64_t *seen, \
                             int64_t width)                                                              \
    {                                                                                                    \
        const T *v = (const T *)keys;                                                                    \
        int64_t x0 = 0;                                                                                  \
        while (x0 < nx) {                                                                                \
            const T key = v[x0];                                                                         \
            int64_t x1 = x0 + 1;                                                                         \
            while (x1 < nx && v[x1] == key)                                                              \
                x1++;                                                                                    \
            const uint64_t k = (uint64_t)key - lo; /* wraps above nv when key < lo */                   \
            if (k >= (uint64_t)nv)                                                                       \
                return -1;                                                                               \
            int64_t *b = boxes + (int64_t)k * width;                                                     \
            if (counts[k] == 0)                                                                          \
                for (int d = 0; d <= lead; d++) {                                                        \
                    b[2 * d] = INT64_MAX;                                                                \
                    b[2 * d + 1] = -1;                                                                   \
                }                                                                                        \
            counts[k] += x1 - x0;                                                                        \
            if (seen[k] != row + 1) {                                                                    \
                seen[k] = row + 1;                                                                       \
                for (int d = 0; d < lead; d++) {                                                         \
                    if (at[d] < b[2 * d])                                                                \
                        b[2 * d] = at[d];                                                                \
                    if (at[d] > b[2 * d + 1])                                                            \
                        b[2 * d + 1] = at[d];                                                            \
                }                                                                                        \
            }                                                                                            \
            if (x0 < b[2 * lead])                                                                        \
                b[2 * lead] = x0;                                                                        \
            if (x1 - 1 > b[2 * lead + 1])                                                                \
                b[2 * lead + 1] = x1 - 1;                                                                \
            x0 = x1;                                                                                     \
        }                                                                                                \
        return 0;                                                                                        \
    }
LABEL_ROW(uint8_t)
LABEL_ROW(uint16_t)
LABEL_ROW(uint32_t)
LABEL_ROW(uint64_t)
#undef LABEL_ROW

typedef int (*label_row_fn)(const void *, int64_t, uint64_t, int64_t, int64_t, const int64_t *, int, int64_t *,
                            int64_t *, int64_t *, int64_t);
/* by type_index / 2: u1, u2, u4, u8 */
static const label_row_fn LABEL_ROWS[4] = {label_row_uint8_t, label_row_uint16_t, label_row_uint32_t,
                                           label_row_uint64_t};

/* kernel.label_boxes: each key's count and bounding box in one pass over a window of unsigned
 * keys; its docstring says how. */
static PyObject *py_label_boxes(PyObject *self, PyObject *args)
{
    PyObject *w_obj, *lo_obj, *c_obj, *b_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &w_obj, &lo_obj, &c_obj, &b_obj))
        return NULL;
    const unsigned long long lo = PyLong_AsUnsignedLongLong(lo_obj);
    if (lo == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    Py_buffer w, cb, bb;
    if (get_buffers(3, (PyObject *[]){w_obj, c_obj, b_obj}, (const int[]){0, 1, 1}, (Py_buffer *[]){&w, &cb, &bb}) < 0)
        return NULL;
    PyObject *result = NULL;
    int64_t *seen = NULL;
    const int t = type_index(&w);
    if (w.ndim < 1 || w.ndim > 8 || t < 0 || t > 7 || t % 2) {
        PyErr_SetString(PyExc_TypeError, "label_boxes: a window of 1 to 8 axes of unsigned integers");
        goto done;
    }
    const int64_t nv = cb.ndim == 1 ? cb.shape[0] : -1;
    if (type_index(&cb) != 6 + 1 || type_index(&bb) != 6 + 1 || nv < 1 || bb.ndim != 2 || bb.shape[0] != nv
        || bb.shape[1] != 2 * w.ndim) {
        PyErr_Format(PyExc_TypeError, "label_boxes: int64 counts (n,) and boxes (n, %d), n >= 1", 2 * w.ndim);
        goto done;
    }
    if (overlaps(cb.buf, cb.len, bb.buf, bb.len) || overlaps(w.buf, w.len, cb.buf, cb.len)
        || overlaps(w.buf, w.len, bb.buf, bb.len)) {
        PyErr_SetString(PyExc_ValueError, "label_boxes: the window, the counts and the boxes overlap");
        goto done;
    }
    const int lead = w.ndim - 1;
    const int64_t nx = w.shape[lead];
    int64_t rows = 1;
    for (int d = 0; d < lead; d++)
        rows *= w.shape[d]; /* at most the buffer's length: no overflow */
    int64_t *counts = (int64_t *)cb.buf, *boxes = (int64_t *)bb.buf;
    memset(counts, 0, (size_t)nv * sizeof(int64_t));
    if (nx == 0 || rows == 0) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    seen = PyMem_Calloc((size_t)nv, sizeof(int64_t));
    if (!seen) {
        PyErr_NoMemory();
        goto done;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t at[8] = {0};
    const size_t item = (size_t)w.itemsize;
    const label_row_fn scan = LABEL_ROWS[t / 2];
    for (int64_t r = 0; r < rows && !bad; r++) {
        const char *row = (const char *)w.buf + (size_t)r * (size_t)nx * item;
        bad = scan(row, nx, lo, nv, r, at, lead, counts, boxes, seen, 2 * (int64_t)w.ndim);
        for (int d = lead - 1; d >= 0; d--) { /* the next row's multi-index */
            if (++at[d] < w.shape[d])
                break;
            at[d] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "label_boxes: a key below lo or not below lo + len(counts)");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    PyMem_Free(seen);
    PyBuffer_Release(&w);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&bb);
    return result;
}

/* The taps of kernel.axis_sum / axis_take: `index` (m, ntaps) int64 (`idx`:
 * its copy) and, if `weights` is given, (m, ntaps) float64, every index inside [0, n). */
static int axis_taps(const Py_buffer *ib, const int64_t *idx, const Py_buffer *wb, int64_t m, int64_t n,
                     int64_t *ntaps)
{
    if (ib->ndim != 2 || ib->shape[0] != m || ib->itemsize != 8 || type_index(ib) != 7
        || (wb && (wb->ndim != 2 || wb->shape[0] != m || wb->shape[1] != ib->shape[1] || type_index(wb) != 9))) {
        PyErr_SetString(PyExc_TypeError, "axis taps: (m, ntaps) int64 index and float64 weights");
        return -1;
    }
    *ntaps = ib->shape[1];
    if (*ntaps < 1 && m > 0) {
        PyErr_SetString(PyExc_ValueError, "axis taps: no taps");
        return -1;
    }
    for (int64_t k = 0; k < m * *ntaps; k++)
        if (idx[k] < 0 || idx[k] >= n) {
            PyErr_Format(PyExc_IndexError, "axis taps: index %lld outside [0, %lld)", (long long)idx[k],
                         (long long)n);
            return -1;
        }
    return 0;
}

/* kernel.axis_sum / axis_take: out[o, j, i] from x[o, :, i] (3-d, C-ordered);
 * with weights the weighted sum of the taps (out float32 or float64), without
 * them a copy of the one tap (out of x's type). */
static PyObject *axis_call(PyObject *args, int weighted)
{
    PyObject *x_obj, *out_obj, *i_obj, *w_obj = NULL;
    if (weighted ? !PyArg_ParseTuple(args, "OOOO", &x_obj, &out_obj, &i_obj, &w_obj)
                 : !PyArg_ParseTuple(args, "OOO", &x_obj, &out_obj, &i_obj))
        return NULL;
    Py_buffer bx, bo, bi, bw;
    int got = 0;
    PyObject *result = NULL;
    int64_t *taps = NULL;
    if (PyObject_GetBuffer(x_obj, &bx, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    got = 1;
    if (PyObject_GetBuffer(out_obj, &bo, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        goto done;
    got = 2;
    if (PyObject_GetBuffer(i_obj, &bi, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    got = 3;
    if (weighted) {
        if (PyObject_GetBuffer(w_obj, &bw, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            goto done;
        got = 4;
    }
    const int tin = type_index(&bx), tout = type_index(&bo);
    if (bx.ndim != 3 || bo.ndim != 3 || bx.shape[0] != bo.shape[0] || bx.shape[2] != bo.shape[2] || tin < 0
        || (weighted ? (tout != 8 && tout != 9) : tout != tin)) {
        PyErr_SetString(PyExc_TypeError, weighted ? "axis_sum: 3-d x of a numeric type, 3-d float32/float64 out"
                                                  : "axis_take: 3-d x and out of the same numeric type");
        goto done;
    }
    const int64_t outer = bx.shape[0], n = bx.shape[1], inner = bx.shape[2], m = bo.shape[1];
    if (overlaps(bx.buf, bx.len, bo.buf, bo.len)) {
        PyErr_SetString(PyExc_ValueError, weighted ? "axis_sum: out overlaps x" : "axis_take: out overlaps x");
        goto done;
    }
    /* the taps are copied before they are checked, and the copy is what is
     * read with the GIL released: no other thread can change them in between */
    taps = (int64_t *)malloc(bi.len > 0 ? (size_t)bi.len : 1);
    if (!taps) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(taps, bi.buf, (size_t)bi.len);
    int64_t ntaps;
    if (axis_taps(&bi, taps, weighted ? &bw : NULL, m, n, &ntaps) < 0)
        goto done;
    if (outer == 0 || m == 0 || inner == 0) { /* nothing to write (an empty axis: no sample to read either) */
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    const int64_t *idx = taps;
    if (weighted) {
        const axis_fn f = AXIS_SUM[tout - 8][tin];
        const double *w = (const double *)bw.buf;
        Py_BEGIN_ALLOW_THREADS
        f(bx.buf, bo.buf, outer, n, inner, m, ntaps, idx, w);
        Py_END_ALLOW_THREADS
    } else {
        const size_t item = (size_t)bx.itemsize;
        const char *x = (const char *)bx.buf;
        char *out = (char *)bo.buf;
        Py_BEGIN_ALLOW_THREADS
        for (int64_t o = 0; o < outer; o++) {
            const char *xo = x + (size_t)(o * n * inner) * item;
            char *oo = out + (size_t)(o * m * inner) * item;
            if (inner > 1) {
                for (int64_t j = 0; j < m; j++)
                    memcpy(oo + (size_t)(j * inner) * item, xo + (size_t)(idx[j * ntaps] * inner) * item,
                           (size_t)inner * item);
                continue;
            }
#define TAKE(T) for (int64_t j = 0; j < m; j++) ((T *)oo)[j] = ((const T *)xo)[idx[j * ntaps]]
            switch (item) {
            case 1: TAKE(uint8_t); break;
            case 2: TAKE(uint16_t); break;
            case 4: TAKE(uint32_t); break;
            default: TAKE(uint64_t); break;
            }
#undef TAKE
        }
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    free(taps);
    if (got >= 4)
        PyBuffer_Release(&bw);
    if (got >= 3)
        PyBuffer_Release(&bi);
    if (got >= 2)
        PyBuffer_Release(&bo);
    if (got >= 1)
        PyBuffer_Release(&bx);
    return result;
}

static PyObject *py_axis_sum(PyObject *self, PyObject *args)
{
    return axis_call(args, 1);
}

static PyObject *py_axis_take(PyObject *self, PyObject *args)
{
    return axis_call(args, 0);
}

/* kernel.use_avx2: linear_reads on (where the processor has AVX2) or off;
 * returns whether they are on. */
static PyObject *py_set_avx2(PyObject *self, PyObject *args)
{
    int on;
    if (!PyArg_ParseTuple(args, "p", &on))
        return NULL;
#ifdef AVX2_READS
    have_avx2 = on && cpu_avx2;
    return PyBool_FromLong(have_avx2);
#else
    return PyBool_FromLong(0);
#endif
}

static PyObject *py_has_avx2(PyObject *self, PyObject *unused)
{
#ifdef AVX2_READS
    return PyBool_FromLong(cpu_avx2);
#else
    return PyBool_FromLong(0);
#endif
}

/* kernel.chain_points: the input coordinates of every output voxel of a block
 * through a chain (warp.WarpGrid.steps) in one pass.  The steps: matrix 0,
 * field 0, matrix 1, field 1, ..., matrix k (k fields, at most CHAIN_FIELDS).
 * A matrix is 3x4 (row-major, its rows' products summed as
 * registration.affine_points sums them: ((p0 m0 + p1 m1) + p2 m2) + m3); a
 * field step maps p (world) to its voxel index v by the field's inverse affine
 * (the same sums), clamps v onto [0, n - 1] (scipy's `nearest` at order 1),
 * weighs its 8 taps trilinearly (the 3 components share taps and weights)
 * and adds the displacement to p.  The field's samples are a window
 * (wx, wy, wz, 3) float64 at `first` on the field of shape `shape`. */
#define CHAIN_FIELDS 16

typedef struct {
    const double *win;
    double inv[12];
    int64_t first[3], width[3], shape[3];
} ChainField;

/* q = m @ (x, y, z, 1), m 3x4 row-major, each row summed as registration.affine_points sums it. */
#define CHAIN_AFFINE(m, x, y, z, qx, qy, qz)                                                                     \
    do {                                                                                                         \
        const double ax_ = (x), ay_ = (y), az_ = (z);                                                            \
        qx = ((ax_ * (m)[0] + ay_ * (m)[1]) + az_ * (m)[2]) + (m)[3];                                            \
        qy = ((ax_ * (m)[4] + ay_ * (m)[5]) + az_ * (m)[6]) + (m)[7];                                            \
        qz = ((ax_ * (m)[8] + ay_ * (m)[9]) + az_ * (m)[10]) + (m)[11];                                          \
    } while (0)

/* One axis of a field step: the voxel index v clamped onto [0, n - 1]
 * (scipy's `nearest`), its first tap's place in the window (*i0), the step to
 * the second (0 at the field's last sample) and the weight of the second (*t);
 * 0, 1 if v is not finite (or reaches 2^62), 2 if a tap leaves the window. */
static inline int chain_axis(double v, int64_t first, int64_t width, int64_t n, int64_t *i0, int64_t *step,
                             double *t)
{
    if (!(fabs(v) < COORD_MAX)) /* also NaN */
        return 1;
    const double hi = (double)(n - 1);
    const double x = v < 0.0 ? 0.0 : v > hi ? hi : v;
    const int64_t s = (int64_t)x; /* x is finite and in [0, n - 1]: truncation is floor */
    *t = x - (double)s;
    *i0 = s - first;
    *step = s + 1 < n ? 1 : 0;
    return *i0 < 0 || *i0 + *step >= width ? 2 : 0;
}

/* One field step on p, in place; 0, or chain_axis's code. */
static inline int chain_field(const ChainField *f, double *px, double *py, double *pz)
{
    double vx, vy, vz, tx, ty, tz;
    int64_t ix, iy, iz, dx, dy, dz;
    CHAIN_AFFINE(f->inv, *px, *py, *pz, vx, vy, vz);
    int bad = chain_axis(vx, f->first[0], f->width[0], f->shape[0], &ix, &dx, &tx);
    if (!bad)
        bad = chain_axis(vy, f->first[1], f->width[1], f->shape[1], &iy, &dy, &ty);
    if (!bad)
        bad = chain_axis(vz, f->first[2], f->width[2], f->shape[2], &iz, &dz, &tz);
    if (bad)
        return bad;
    const int64_t sy = 3 * f->width[2], sx = sy * f->width[1]; /* the window is (wx, wy, wz, 3) */
    const double *b = f->win + ix * sx + iy * sy + 3 * iz;
    dx *= sx;
    dy *= sy;
    dz *= 3;
    const double ux = 1.0 - tx, uy = 1.0 - ty, uz = 1.0 - tz;
    const double w00 = ux * uy, w10 = tx * uy, w01 = ux * ty, w11 = tx * ty;
    const double *b00 = b, *b10 = b + dx, *b01 = b + dy, *b11 = b + dx + dy;
#define CHAIN_TAPS(c) (uz * (((w00 * b00[c] + w10 * b10[c]) + w01 * b01[c]) + w11 * b11[c])                    \
                       + tz * (((w00 * b00[dz + c] + w10 * b10[dz + c]) + w01 * b01[dz + c]) + w11 * b11[dz + c]))
    *px += CHAIN_TAPS(0);
    *py += CHAIN_TAPS(1);
    *pz += CHAIN_TAPS(2);
#undef CHAIN_TAPS
    return 0;
}

/* What chain_run finds besides the points: per axis the smallest and largest
 * coordinate of the points counted (every point, or with `inside` only those
 * within half a voxel of the input of shape `in_shape`: ITK's rule, as
 * bounds.inside), how many were counted, and whether one was not finite. */
typedef struct {
    double lo[3], hi[3];
    int64_t counted;
    int nonfinite;
} ChainStats;

/* The block's points, x fastest, into out (n, 3), their stats into st (and
 * ITK's rule per point into `inside`, if given); 0, or (the failing field's
 * index + 1) * 2 + (its code - 1) at the first point that fails. */
static int64_t chain_run(const double *mats, const ChainField *fields, int nf, const int64_t origin[3],
                         const int64_t count[3], double *out, uint8_t *inside, const double edge[3], ChainStats *st)
{
    double *o = out;
    for (int a = 0; a < 3; a++) {
        st->lo[a] = INFINITY;
        st->hi[a] = -INFINITY;
    }
    st->counted = 0;
    st->nonfinite = 0;
    for (int64_t z = 0; z < count[2]; z++)
        for (int64_t y = 0; y < count[1]; y++)
            for (int64_t x = 0; x < count[0]; x++, o += 3) {
                double qx, qy, qz;
                CHAIN_AFFINE(mats, (double)(origin[0] + x), (double)(origin[1] + y), (double)(origin[2] + z), qx, qy,
                             qz);
                for (int k = 0; k < nf; k++) {
                    const int bad = chain_field(&fields[k], &qx, &qy, &qz);
                    if (bad)
                        return (int64_t)(k + 1) * 2 + (bad - 1);
                    CHAIN_AFFINE(mats + 12 * (k + 1), qx, qy, qz, qx, qy, qz);
                }
                o[0] = qx;
                o[1] = qy;
                o[2] = qz;
                if (inside) {
                    const int in = qx >= -0.5 && qx < edge[0] && qy >= -0.5 && qy < edge[1] && qz >= -0.5
                                   && qz < edge[2];
                    *inside++ = (uint8_t)in;
                    if (!in)
                        continue;
                } else if (!(isfinite(qx) && isfinite(qy) && isfinite(qz))) {
                    st->nonfinite = 1;
                }
                st->counted++;
                st->lo[0] = qx < st->lo[0] ? qx : st->lo[0];
                st->hi[0] = qx > st->hi[0] ? qx : st->hi[0];
                st->lo[1] = qy < st->lo[1] ? qy : st->lo[1];
                st->hi[1] = qy > st->hi[1] ? qy : st->hi[1];
                st->lo[2] = qz < st->lo[2] ? qz : st->lo[2];
                st->hi[2] = qz > st->hi[2] ? qz : st->hi[2];
            }
    return 0;
}

/* Reads field k's (win, inv, first, shape) into f, its buffer into view;
 * 0, or -1 with an error set (the view then released). */
static int chain_read_field(PyObject *item, ChainField *f, Py_buffer *view, int k)
{
    PyObject *win, *inv, *first, *shape;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "OOOO", &win, &inv, &first, &shape)) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "chain_points: field %d is not a (window, inverse, first, shape) tuple", k);
        return -1;
    }
    if (read_doubles(inv, f->inv, 12, "chain_points: a field's inverse") || read_ints(first, f->first, 3, "first")
        || read_ints(shape, f->shape, 3, "shape"))
        return -1;
    if (PyObject_GetBuffer(win, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    int ok = view->ndim == 4 && view->shape[3] == 3 && type_index(view) == 9;
    if (!ok)
        PyErr_Format(PyExc_TypeError, "chain_points: field %d's window must be (wx, wy, wz, 3) float64", k);
    for (int a = 0; a < 12 && ok; a++)
        if (!isfinite(f->inv[a])) {
            PyErr_Format(PyExc_ValueError, "chain_points: field %d's inverse affine is not finite", k);
            ok = 0;
        }
    for (int a = 0; a < 3 && ok; a++) {
        f->width[a] = view->shape[a];
        if (f->shape[a] < 1 || f->shape[a] > LENGTH_MAX || f->width[a] < 1 || f->first[a] < 0
            || f->first[a] > f->shape[a] - f->width[a]) {
            PyErr_Format(PyExc_ValueError, "chain_points: field %d's window first %lld, width %lld on axis %d "
                         "leaves the field [0, %lld)", k, (long long)f->first[a], (long long)f->width[a], a,
                         (long long)f->shape[a]);
            ok = 0;
        }
    }
    if (!ok) {
        PyBuffer_Release(view);
        return -1;
    }
    f->win = (const double *)view->buf;
    return 0;
}

static PyObject *py_chain_points(PyObject *self, PyObject *args)
{
    PyObject *out_obj, *origin_obj, *count_obj, *mats_obj, *fields_obj, *inside_obj = Py_None, *shape_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOO|OO", &out_obj, &origin_obj, &count_obj, &mats_obj, &fields_obj, &inside_obj,
                          &shape_obj))
        return NULL;
    int64_t in_shape[3] = {1, 1, 1};
    double edge[3];
    if (inside_obj != Py_None && read_ints(shape_obj, in_shape, 3, "chain_points: the input's shape"))
        return NULL;
    for (int a = 0; a < 3; a++) {
        if (in_shape[a] < 1 || in_shape[a] > LENGTH_MAX) {
            PyErr_Format(PyExc_ValueError, "chain_points: the input's length %lld on axis %d outside [1, 2**52]",
                         (long long)in_shape[a], a);
            return NULL;
        }
        edge[a] = (double)in_shape[a] - 0.5;
    }
    int64_t origin[3], count[3];
    if (read_ints(origin_obj, origin, 3, "chain_points: origin") || read_ints(count_obj, count, 3, "chain_points: count"))
        return NULL;
    for (int a = 0; a < 3; a++)
        if (count[a] < 1 || count[a] > LENGTH_MAX || origin[a] < -LENGTH_MAX || origin[a] > LENGTH_MAX - count[a]) {
            PyErr_Format(PyExc_ValueError, "chain_points: block origin %lld, count %lld on axis %d outside "
                         "[-2**52, 2**52)", (long long)origin[a], (long long)count[a], a);
            return NULL;
        }
    PyObject *fields = PySequence_Fast(fields_obj, "chain_points: fields must be a sequence");
    if (!fields)
        return NULL;
    const Py_ssize_t nf = PySequence_Fast_GET_SIZE(fields);
    PyObject *mats = PySequence_Fast(mats_obj, "chain_points: matrices must be a sequence");
    if (!mats) {
        Py_DECREF(fields);
        return NULL;
    }
    ChainField f[CHAIN_FIELDS];
    Py_buffer views[CHAIN_FIELDS], dout, dmask;
    double m[12 * (CHAIN_FIELDS + 1)];
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    int have_out = 0, have_mask = 0;
    if (nf > CHAIN_FIELDS || PySequence_Fast_GET_SIZE(mats) != nf + 1) {
        PyErr_Format(PyExc_ValueError, "chain_points: %zd matrices for %zd fields (one more matrix than fields, "
                     "at most %d fields)", PySequence_Fast_GET_SIZE(mats), nf, CHAIN_FIELDS);
        goto done;
    }
    for (Py_ssize_t k = 0; k <= nf; k++) {
        if (read_doubles(PySequence_Fast_GET_ITEM(mats, k), m + 12 * k, 12, "chain_points: a 3x4 matrix"))
            goto done;
        for (int a = 0; a < 12; a++)
            if (!isfinite(m[12 * k + a])) {
                PyErr_Format(PyExc_ValueError, "chain_points: matrix %zd is not finite", k);
                goto done;
            }
    }
    for (; got < nf; got++)
        if (chain_read_field(PySequence_Fast_GET_ITEM(fields, got), &f[got], &views[got], (int)got) < 0)
            goto done;
    if (PyObject_GetBuffer(out_obj, &dout, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
        goto done;
    have_out = 1;
    const int64_t rows = dout.ndim == 2 ? dout.shape[0] : -1; /* n = the block's voxels, no product overflowing */
    int fits = rows >= 1 && count[0] <= rows && count[1] <= rows / count[0];
    const int64_t plane = fits ? count[0] * count[1] : 1;
    fits = fits && count[2] <= rows / plane && plane * count[2] == rows;
    if (!fits || dout.shape[1] != 3 || type_index(&dout) != 9) {
        PyErr_Format(PyExc_ValueError, "chain_points: the output must be (n, 3) float64 with n = %lld x %lld x %lld, "
                     "the block's voxels", (long long)count[0], (long long)count[1], (long long)count[2]);
        goto done;
    }
    if (inside_obj != Py_None) {
        if (PyObject_GetBuffer(inside_obj, &dmask, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0)
            goto done;
        have_mask = 1;
        if (dmask.itemsize != 1 || !dmask.format || strcmp(dmask.format, "?") != 0 || dmask.len != rows) {
            PyErr_Format(PyExc_ValueError, "chain_points: the inside mask must be %lld bools", (long long)rows);
            goto done;
        }
        if (overlaps(dmask.buf, dmask.len, dout.buf, dout.len)) {
            PyErr_SetString(PyExc_ValueError, "chain_points: the inside mask overlaps the output");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < nf; k++)
        if (overlaps(views[k].buf, views[k].len, dout.buf, dout.len)
            || (have_mask && overlaps(views[k].buf, views[k].len, dmask.buf, dmask.len))) {
            PyErr_SetString(PyExc_ValueError, "chain_points: the output overlaps a field's window");
            goto done;
        }
    int64_t bad;
    ChainStats st;
    Py_BEGIN_ALLOW_THREADS
    bad = chain_run(m, f, (int)nf, origin, count, (double *)dout.buf, have_mask ? (uint8_t *)dmask.buf : NULL, edge,
                    &st);
    Py_END_ALLOW_THREADS
    if (bad & 1) {
        PyErr_Format(PyExc_IndexError, "chain_points: field %lld's taps leave its window (planned wrong)",
                     (long long)(bad / 2 - 1));
        goto done;
    }
    if (st.nonfinite)
        for (int a = 0; a < 3; a++)
            st.lo[a] = st.hi[a] = NAN;
    /* bad / 2: 0, or 1 + the field whose coordinates were not finite */
    result = Py_BuildValue("L(ddd)(ddd)L", (long long)(bad / 2), st.lo[0], st.lo[1], st.lo[2], st.hi[0], st.hi[1],
                           st.hi[2], (long long)st.counted);
done:
    if (have_mask)
        PyBuffer_Release(&dmask);
    if (have_out)
        PyBuffer_Release(&dout);
    for (Py_ssize_t k = 0; k < got; k++)
        PyBuffer_Release(&views[k]);
    Py_DECREF(fields);
    Py_DECREF(mats);
    return result;
}

static PyMethodDef methods[] = {
    {"resample_block", py_resample_block, METH_VARARGS, "kernel.resample_block, compiled"},
    {"sample_points", py_sample_points, METH_VARARGS, "kernel.sample_points, compiled"},
    {"chain_points", py_chain_points, METH_VARARGS, "kernel.chain_points, compiled"},
    {"span", py_span, METH_VARARGS, "kernel._span, compiled"},
    {"prefilter_lines", py_prefilter_lines, METH_VARARGS, "kernel.prefilter_lines, compiled"},
    {"label_boxes", py_label_boxes, METH_VARARGS, "kernel.label_boxes, compiled"},
    {"spline_filter_lines", py_spline_filter_lines, METH_VARARGS, "kernel.spline_filter_lines, compiled"},
    {"axis_sum", py_axis_sum, METH_VARARGS, "kernel.axis_sum, compiled"},
    {"axis_take", py_axis_take, METH_VARARGS, "kernel.axis_take, compiled"},
    {"set_avx2", py_set_avx2, METH_VARARGS, "kernel.use_avx2, compiled"},
    {"has_avx2", py_has_avx2, METH_NOARGS, "whether the processor has AVX2 (and the module its reads)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernel(void)
{
#ifdef AVX2_READS
    __builtin_cpu_init();
    cpu_avx2 = have_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
