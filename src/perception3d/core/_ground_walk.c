/* The ground surface's outward walk (core.ground, module docstring step 3) as a compiled loop.

   Every sector of the polar grid walks outwards, range bin by range bin, keeping a weighted line of the candidates
   (each cell's lowest point) it accepted; the line after each bin predicts the next candidate. In numpy this took
   ~45 array calls a bin over all sectors (1.8 ms of sweep_ground's 5.3 ms on bench algo's frame); here it is one
   pass over the cells. The arithmetic is that of the numpy walk it replaces, operation for operation and in the
   same order (IEEE double, no fused multiply-add: setup.py builds it with -ffp-contract=off), so the surfaces are
   bit for bit the same.

   Arrays are C-contiguous, float64 unless said otherwise; B range bins, S sectors; heights and ranges in metres in
   the surface's z-up frame. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SUMS 5      /* per sector: w, w r, w h, w r^2, w r h of the accepted candidates */
#define MAX_NEIGHBOURS 64

/* numpy's maximum and minimum: NaN if either is NaN */
static double np_maximum(double a, double b) { return (a >= b || isnan(a)) ? a : b; }
static double np_minimum(double a, double b) { return (a <= b || isnan(a)) ? a : b; }

typedef struct {
    double kerb, max_step, threshold, long_gap, grade_change, kerb_slope, max_drop_factor;
    double prior_weight, max_slope;
    int neighbours;
} WalkParams;

/* Each sector's weighted line through its sums (SUMS x S), its slope pulled towards the seed's (prior (S,)) and
   clamped to +-max_slope: into intercept (S,) and slope (S,). */
static void fit_lines(const double *sums, const double *prior, Py_ssize_t S, const WalkParams *p,
                      double *intercept, double *slope) {
    const double *w = sums, *wr = sums + S, *wh = sums + 2 * S, *wrr = sums + 3 * S, *wrh = sums + 4 * S;
    for (Py_ssize_t s = 0; s < S; s++) {
        double mean_r = wr[s] / w[s], mean_h = wh[s] / w[s];
        double variance = wrr[s] - wr[s] * mean_r, covariance = wrh[s] - wr[s] * mean_h;
        double b = np_minimum(np_maximum((covariance + prior[s]) / (variance + p->prior_weight), -p->max_slope),
                              p->max_slope);
        slope[s] = b;
        intercept[s] = mean_h - b * mean_r;
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether sector s's candidate in bin k (height h) stands more than threshold above the median ground of the
   p->neighbours sectors on each side: their candidate in bin k, else in bin k + 1 or k - 1 (nearby, (S,) of bin k),
   else their line's prediction at the bin's centre range. */
static int stands_alone(double h, Py_ssize_t s, const double *nearby, const double *intercept, const double *slope,
                        double centre, Py_ssize_t S, const WalkParams *p) {
    double ground[MAX_NEIGHBOURS];
    int n = 0;
    for (int shift = -p->neighbours; shift <= p->neighbours; shift++) {
        if (shift == 0) continue;
        Py_ssize_t t = ((s + shift) % S + S) % S;
        double g = nearby[t];
        ground[n++] = isnan(g) ? intercept[t] + slope[t] * centre : g;
    }
    qsort(ground, (size_t)n, sizeof(double), compare_doubles);
    return h - 0.5 * (ground[n / 2 - 1] + ground[n / 2]) > p->threshold;
}

/* The walk from bin `start` to the last (module docstring of core.ground, step 3). Writes per bin and sector the
   accepted candidates (uint8), the line (intercepts, slopes) and the raised level (levels); the bins before `start`
   get the seed's line. sums (SUMS, S) are updated in place; work: scratch of 7 x S doubles and 2 x S bytes. */
static void walk(Py_ssize_t B, Py_ssize_t S, Py_ssize_t start, const double *fades, const double *ranges,
                 const double *heights, const double *nearby, const unsigned char *flat, const double *observed,
                 const double *centre, double *sums, const double *prior, const WalkParams *p,
                 unsigned char *accepted, double *intercepts, double *slopes, double *levels, double *work,
                 unsigned char *flags) {
    double *intercept = work, *slope = work + S, *rise = work + 2 * S, *raised = work + 3 * S,
           *last_r = work + 4 * S, *back_at = work + 5 * S, *ceiling = work + 6 * S;
    unsigned char *moves = flags, *back = flags + S;
    const double half_kerb = 0.5 * p->kerb;
    fit_lines(sums, prior, S, p, intercept, slope);
    for (Py_ssize_t k = 0; k < start && k < B; k++) {
        memcpy(intercepts + k * S, intercept, (size_t)S * sizeof(double));
        memcpy(slopes + k * S, slope, (size_t)S * sizeof(double));
    }
    for (Py_ssize_t s = 0; s < S; s++) {
        sums[2 * S + s] += 0.0;  /* no -0.0 height sum: a sector without a move keeps its sums bit for bit */
        raised[s] = 0.0;
        last_r[s] = 0.0;
        back_at[s] = -np_maximum(p->kerb, 0.5 * raised[s]);
    }
    int on_raised = 0;
    for (Py_ssize_t k = start; k < B; k++) {
        const double *r = ranges + k * S, *h = heights + k * S, *obs = observed + k * SUMS * S;
        const unsigned char *is_flat = flat + k * S;
        unsigned char *accept = accepted + k * S;
        for (Py_ssize_t i = 0; i < SUMS * S; i++) sums[i] *= fades[k];
        for (Py_ssize_t s = 0; s < S; s++) {
            double gap = r[s] - last_r[s];
            rise[s] = h[s] - (intercept[s] + slope[s] * r[s]);
            ceiling[s] = p->max_step + p->grade_change * gap;
        }
        /* an object's lowest hit between two far rings (that would pass as ground) passes as an empty cell */
        for (Py_ssize_t s = 0; s < S; s++) {
            double gap = r[s] - last_r[s];
            if (gap > p->long_gap && rise[s] > p->threshold && rise[s] <= ceiling[s]
                && stands_alone(h[s], s, nearby + k * S, intercept, slope, centre[k], S, p))
                rise[s] = NAN;
        }
        int moved = 0;
        for (Py_ssize_t s = 0; s < S; s++) {
            double gap = r[s] - last_r[s], x = rise[s];
            double threshold = np_maximum(p->kerb, p->kerb_slope * gap);
            int kerb_up = x > threshold, kerb_down = x < -threshold;
            int in_range = (x <= ceiling[s]) && (x >= -p->max_drop_factor * ceiling[s]);
            back[s] = x < back_at[s];
            int up = kerb_up && (x <= p->max_step) && is_flat[s];
            int down = (kerb_down || back[s]) && in_range;
            moves[s] = up || down;
            moved |= moves[s];
            accept[s] = up || (in_range && ((x <= p->kerb) || (is_flat[s] && !kerb_up)));
        }
        if (moved) {  /* the line moves onto the new level */
            for (Py_ssize_t s = 0; s < S; s++) {
                double step = moves[s] ? rise[s] : 0.0;
                sums[2 * S + s] += step * sums[s];
                sums[4 * S + s] += step * sums[S + s];
                raised[s] = raised[s] + step;
            }
        }
        if (moved || on_raised) {  /* any ground nearer the road level than the raised level is back on the road */
            on_raised = 0;
            for (Py_ssize_t s = 0; s < S; s++) {
                if (back[s] || raised[s] < half_kerb) raised[s] = 0.0;
                back_at[s] = -np_maximum(p->kerb, 0.5 * raised[s]);
                on_raised |= raised[s] != 0.0;
            }
        }
        for (Py_ssize_t s = 0; s < S; s++) {
            if (!accept[s]) continue;
            last_r[s] = r[s];
            for (int j = 0; j < SUMS; j++) sums[j * S + s] += obs[j * S + s];
        }
        fit_lines(sums, prior, S, p, intercept, slope);
        memcpy(intercepts + k * S, intercept, (size_t)S * sizeof(double));
        memcpy(slopes + k * S, slope, (size_t)S * sizeof(double));
        memcpy(levels + k * S, raised, (size_t)S * sizeof(double));
    }
}

/* Checks that a buffer holds `count` items of `size` bytes. */
static int sized(const Py_buffer *buffer, Py_ssize_t count, Py_ssize_t size, const char *name) {
    if (buffer->len != count * size) {
        PyErr_Format(PyExc_ValueError, "ground walk: %s holds %zd bytes, expected %zd", name, buffer->len,
                     count * size);
        return 0;
    }
    return 1;
}

static PyObject *py_walk(PyObject *self, PyObject *args) {
    Py_ssize_t B, S, start;
    Py_buffer fades, ranges, heights, nearby, flat, observed, centre, sums, prior, accepted, intercepts, slopes, levels;
    WalkParams p;
    if (!PyArg_ParseTuple(args, "nnny*y*y*y*y*y*y*w*y*(dddddddddi)w*w*w*w*", &B, &S, &start, &fades, &ranges,
                          &heights, &nearby, &flat, &observed, &centre, &sums, &prior, &p.kerb, &p.max_step,
                          &p.threshold, &p.long_gap, &p.grade_change, &p.kerb_slope, &p.max_drop_factor,
                          &p.prior_weight, &p.max_slope, &p.neighbours, &accepted, &intercepts, &slopes, &levels))
        return NULL;
    Py_buffer *all[] = {&fades, &ranges, &heights, &nearby, &flat, &observed, &centre, &sums, &prior, &accepted,
                        &intercepts, &slopes, &levels};
    const Py_ssize_t d = sizeof(double), cells = B * S;
    PyObject *result = NULL;
    double *work = NULL;
    unsigned char *flags = NULL;
    if (B < 0 || S < 1 || start < 0 || p.neighbours < 1 || 2 * p.neighbours > MAX_NEIGHBOURS) {
        PyErr_SetString(PyExc_ValueError, "ground walk: bad bin, sector, start or neighbour count");
        goto done;
    }
    if (!(sized(&fades, B, d, "fades") && sized(&ranges, cells, d, "ranges") && sized(&heights, cells, d, "heights")
          && sized(&nearby, cells, d, "nearby") && sized(&flat, cells, 1, "flat")
          && sized(&observed, SUMS * cells, d, "observed") && sized(&centre, B, d, "centre")
          && sized(&sums, SUMS * S, d, "sums") && sized(&prior, S, d, "prior")
          && sized(&accepted, cells, 1, "accepted") && sized(&intercepts, cells, d, "intercepts")
          && sized(&slopes, cells, d, "slopes") && sized(&levels, cells, d, "levels")))
        goto done;
    work = PyMem_Malloc((size_t)(7 * S) * sizeof(double));
    flags = PyMem_Malloc((size_t)(2 * S));
    if (work == NULL || flags == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    walk(B, S, start, fades.buf, ranges.buf, heights.buf, nearby.buf, flat.buf, observed.buf, centre.buf, sums.buf,
         prior.buf, &p, accepted.buf, intercepts.buf, slopes.buf, levels.buf, work, flags);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(work);
    PyMem_Free(flags);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) PyBuffer_Release(all[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", py_walk, METH_VARARGS,
     "walk(bins, sectors, start, fades, ranges, heights, nearby, flat, observed, centre, sums, prior, params, "
     "accepted, intercepts, slopes, levels): the ground surface's outward walk (core.ground._Walk.run)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ground_walk",
                                    "The ground surface's outward walk, compiled (core.ground).", -1, methods};

PyMODINIT_FUNC PyInit__ground_walk(void) { return PyModule_Create(&module); }
