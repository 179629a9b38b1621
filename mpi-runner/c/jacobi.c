/* C twin of mpi-runner/src/kernels/jacobi.rs: the same block layout with a
 * two-deep halo, exchanged (rows, then columns with the corners) once per
 * two iterations, which one pass over the block computes through a
 * three-row ring (temporal blocking); an iteration that measures the
 * largest change as the first of two runs alone; all-reduced largest
 * change.
 *
 * Variants tried for issue #16 (scripts/build.sh builds each into
 * c-twins/variants/jacobi-<name>; bench/twin-variants.sh times them):
 *   onesweep   one iteration per exchange and pass over memory (the twin
 *              before temporal blocking)
 *   autovec    the loops as plain scalar C, vectorised by gcc -O3
 *   rows       1-D row decomposition, blocking MPI_Sendrecv halos (the
 *              independent plain C Jacobi issue #16 measured against)
 * Measured earlier and dropped (docs/BENCHMARKS.md): streaming stores,
 * software prefetch. The twin itself is the fastest of them. */
// variants: onesweep autovec rows
#include <emmintrin.h>
#include <math.h>
#include "twin.h"

enum { HALO = 2, LANES = 4 };

/* A block's interior, rows x cols, stored row by row with a HALO-deep halo. */
typedef struct {
    size_t rows, cols, w;
} shape;

/* Index of interior cell (r, c); negative or past the end: a halo cell. */
static inline size_t at(shape s, long r, long c) { return (size_t)(r + HALO) * s.w + (size_t)(c + HALO); }

/* The sides with a neighbour rank: north, south, west, east. */
typedef struct {
    int north, south, west, east;
} sides;

/* The SSE2 pieces every row loop uses, two points per instruction: one place
 * for the order of the stencil's sums (the scalar form's, left to right) and
 * for the change's maximum (max(d, lane) is d > lane ? d : lane). */
static inline __attribute__((always_inline)) __m128d average(__m128d a, __m128d b, __m128d c, __m128d d) {
    return _mm_mul_pd(_mm_set1_pd(0.25), _mm_add_pd(_mm_add_pd(_mm_add_pd(a, b), c), d));
}
static inline __attribute__((always_inline)) __m128d most_change(__m128d new, __m128d old, __m128d lane) {
    return _mm_max_pd(_mm_andnot_pd(_mm_set1_pd(-0.0), _mm_sub_pd(new, old)), lane);
}

/* One row of the update, two points per SSE2 instruction, plain stores. */
static inline __attribute__((always_inline)) void stencil_row(double *restrict out, const double *up,
                                                               const double *down, const double *left,
                                                               const double *right, size_t n) {
    size_t j = 0;
#ifndef VARIANT_AUTOVEC
    for (; j + 2 <= n; j += 2)
        _mm_storeu_pd(out + j, average(_mm_loadu_pd(up + j), _mm_loadu_pd(down + j), _mm_loadu_pd(left + j),
                                       _mm_loadu_pd(right + j)));
#endif
    for (; j < n; j++) out[j] = 0.25 * (up[j] + down[j] + left[j] + right[j]);
}

/* `stencil_row`, also keeping the largest change per lane (lane k for the
 * points j with j mod 4 = k; a select per element vectorises, one scalar
 * maximum would not). Explicit SSE2 as in `stencil_row`: gcc vectorised the
 * plain form only partly, and a sweep that measures every iteration ran
 * 1.5x slower (issue #16). The plain form is the `autovec` variant's. */
static inline __attribute__((always_inline)) void measuring_row(double *restrict out, const double *up,
                                                                 const double *down, const double *left,
                                                                 const double *centre, const double *right,
                                                                 size_t n, double lanes[LANES]) {
    size_t j = 0;
#ifndef VARIANT_AUTOVEC
    __m128d lane[2] = {_mm_loadu_pd(lanes), _mm_loadu_pd(lanes + 2)};
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k += 2) {
            __m128d v = average(_mm_loadu_pd(up + j + k), _mm_loadu_pd(down + j + k), _mm_loadu_pd(left + j + k),
                                _mm_loadu_pd(right + j + k));
            lane[k / 2] = most_change(v, _mm_loadu_pd(centre + j + k), lane[k / 2]);
            _mm_storeu_pd(out + j + k, v);
        }
    _mm_storeu_pd(lanes, lane[0]);
    _mm_storeu_pd(lanes + 2, lane[1]);
#endif
    for (; j + LANES <= n; j += LANES)
        for (size_t k = 0; k < LANES; k++) {
            double v = 0.25 * (up[j + k] + down[j + k] + left[j + k] + right[j + k]);
            double d = fabs(v - centre[j + k]);
            lanes[k] = d > lanes[k] ? d : lanes[k];
            out[j + k] = v;
        }
    for (; j < n; j++) {
        double v = 0.25 * (up[j] + down[j] + left[j] + right[j]);
        double d = fabs(v - centre[j]);
        lanes[0] = d > lanes[0] ? d : lanes[0];
        out[j] = v;
    }
}

static double largest(const double lanes[LANES]) {
    double m = 0.0;
    for (size_t k = 0; k < LANES; k++) m = lanes[k] > m ? lanes[k] : m;
    return m;
}

static void sweep(const double *u, double *restrict next, shape s) {
    for (long r = 0; r < (long)s.rows; r++)
        stencil_row(next + at(s, r, 0), u + at(s, r - 1, 0), u + at(s, r + 1, 0), u + at(s, r, -1),
                    u + at(s, r, 1), s.cols);
}

static double sweep_with_change(const double *u, double *restrict next, shape s) {
    double lanes[LANES] = {0.0, 0.0, 0.0, 0.0};
    for (long r = 0; r < (long)s.rows; r++)
        measuring_row(next + at(s, r, 0), u + at(s, r - 1, 0), u + at(s, r + 1, 0), u + at(s, r, -1),
                      u + at(s, r, 0), u + at(s, r, 1), s.cols, lanes);
    return largest(lanes);
}

/* Columns -1 and cols of row r of a pair's first iteration (out[0] and
 * out[cols + 1]): computed toward a neighbour, the edge's value on the
 * grid's edge. */
static inline void edge_columns(const double *u, double *out, shape s, long r, sides open) {
    long last = (long)s.cols;
#define FIRST(c) (0.25 * (u[at(s, r - 1, c)] + u[at(s, r + 1, c)] + u[at(s, r, (c) - 1)] + u[at(s, r, (c) + 1)]))
    out[0] = open.west ? FIRST(-1) : u[at(s, r, -1)];
    out[s.cols + 1] = open.east ? FIRST(last) : u[at(s, r, last)];
#undef FIRST
}

/* Row r (-1..rows) of a pair's first iteration, columns -1..cols, into out:
 * computed inside, the edge's value on the grid's edge. */
static void first_of_pair(const double *u, double *restrict out, shape s, long r, sides open) {
    if ((r < 0 && !open.north) || (r == (long)s.rows && !open.south)) {
        memcpy(out, u + at(s, r, -1), (s.cols + 2) * sizeof(double));
        return;
    }
    stencil_row(out + 1, u + at(s, r - 1, 0), u + at(s, r + 1, 0), u + at(s, r, -1), u + at(s, r, 1), s.cols);
    edge_columns(u, out, s, r, open);
}

/* One column loop of a pair: the first iteration's row r + 1 (columns
 * 0..cols) into next[1..cols] from u's rows r (row_r), r + 1 (below, from
 * column -1) and r + 2 (below2), and the second iteration's row r into row_r
 * from the ring's rows r - 1 (prev), r (cur) and the value just computed;
 * each value of row_r is read before it is overwritten. The largest change
 * of the second iteration on the row when measure (a constant where it is
 * inlined). */
static inline __attribute__((always_inline)) double pair_loop(int measure, double *restrict row_r,
                                                              const double *restrict below,
                                                              const double *restrict below2,
                                                              const double *restrict prev,
                                                              const double *restrict cur, double *restrict next,
                                                              size_t n) {
    size_t j = 0;
    double most = 0.0;
#ifndef VARIANT_AUTOVEC
    __m128d lanes = _mm_setzero_pd();
    for (; j + 2 <= n; j += 2) {
        __m128d first = average(_mm_loadu_pd(row_r + j), _mm_loadu_pd(below2 + j), _mm_loadu_pd(below + j),
                                _mm_loadu_pd(below + j + 2));
        _mm_storeu_pd(next + j + 1, first);
        __m128d second = average(_mm_loadu_pd(prev + j + 1), first, _mm_loadu_pd(cur + j), _mm_loadu_pd(cur + j + 2));
        if (measure) lanes = most_change(second, _mm_loadu_pd(cur + j + 1), lanes);
        _mm_storeu_pd(row_r + j, second);
    }
    double two[2];
    _mm_storeu_pd(two, lanes);
    most = two[0] > two[1] ? two[0] : two[1];
#endif
    for (; j < n; j++) {
        double first = 0.25 * (row_r[j] + below2[j] + below[j] + below[j + 2]);
        next[j + 1] = first;
        double v = 0.25 * (prev[j + 1] + first + cur[j] + cur[j + 2]);
        if (measure) {
            double d = fabs(v - cur[j + 1]);
            most = d > most ? d : most;
        }
        row_r[j] = v;
    }
    return most;
}

/* Two iterations in one pass over u, in place, through the three-row ring;
 * u's halo current two deep, corners included. */
static double sweep_pair(double *u, double *ring, shape s, sides open, int measure) {
    size_t cols = s.cols, rw = cols + 2;
    first_of_pair(u, ring + 2 * rw, s, -1, open); /* row r's slot is r mod 3 */
    first_of_pair(u, ring, s, 0, open);
    double lanes[LANES] = {0.0, 0.0, 0.0, 0.0};
    for (long r = 0; r < (long)s.rows; r++) {
        const double *prev = ring + (size_t)((r + 2) % 3) * rw, *cur = ring + (size_t)(r % 3) * rw;
        double *next = ring + (size_t)((r + 1) % 3) * rw;
        double *row_r = u + at(s, r, 0);
        if (r + 1 == (long)s.rows && !open.south) {
            first_of_pair(u, next, s, r + 1, open);
            if (measure)
                measuring_row(row_r, prev + 1, next + 1, cur, cur + 1, cur + 2, cols, lanes);
            else
                stencil_row(row_r, prev + 1, next + 1, cur, cur + 2, cols);
            continue;
        }
        edge_columns(u, next, s, r + 1, open);
        const double *below = u + at(s, r + 1, -1), *below2 = u + at(s, r + 2, 0);
        if (measure) {
            double m = pair_loop(1, row_r, below, below2, prev, cur, next, cols);
            lanes[0] = m > lanes[0] ? m : lanes[0];
        } else {
            pair_loop(0, row_r, below, below2, prev, cur, next, cols);
        }
    }
    return largest(lanes);
}

/* The halo exchange, depth cells deep: whole storage rows north and south,
 * then columns west and east over every storage row, halo rows included,
 * so that the corners carry the diagonal neighbours' values. */
static void exchange(MPI_Comm cart, double *u, shape s, size_t depth, int north, int south, int west, int east,
                     double *buf) {
    size_t w = s.w, storage_rows = s.rows + 2 * HALO, n = storage_rows * depth;
    int count = (int)(depth * w);
#ifdef VARIANT_ROWS
    (void)west, (void)east, (void)buf, (void)n;
    MPI_Sendrecv(u + at(s, 0, -HALO), count, MPI_DOUBLE, north, 1, u + at(s, (long)s.rows, -HALO), count, MPI_DOUBLE,
                 south, 1, cart, MPI_STATUS_IGNORE);
    MPI_Sendrecv(u + at(s, (long)(s.rows - depth), -HALO), count, MPI_DOUBLE, south, 2,
                 u + at(s, -(long)depth, -HALO), count, MPI_DOUBLE, north, 2, cart, MPI_STATUS_IGNORE);
#else
    MPI_Request req[4];
    int nreq = 0;
    if (north != MPI_PROC_NULL) {
        MPI_Irecv(u + at(s, -(long)depth, -HALO), count, MPI_DOUBLE, north, 2, cart, &req[nreq++]);
        MPI_Isend(u + at(s, 0, -HALO), count, MPI_DOUBLE, north, 1, cart, &req[nreq++]);
    }
    if (south != MPI_PROC_NULL) {
        MPI_Irecv(u + at(s, (long)s.rows, -HALO), count, MPI_DOUBLE, south, 1, cart, &req[nreq++]);
        MPI_Isend(u + at(s, (long)(s.rows - depth), -HALO), count, MPI_DOUBLE, south, 2, cart, &req[nreq++]);
    }
    MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
    if (west == MPI_PROC_NULL && east == MPI_PROC_NULL) return;
    double *send_w = buf, *send_e = buf + n, *recv_w = buf + 2 * n, *recv_e = buf + 3 * n;
    size_t first = HALO, last = HALO + s.cols - depth;
    for (size_t i = 0; i < storage_rows; i++)
        for (size_t k = 0; k < depth; k++) {
            send_w[i * depth + k] = u[i * w + first + k];
            send_e[i * depth + k] = u[i * w + last + k];
        }
    nreq = 0;
    if (west != MPI_PROC_NULL) {
        MPI_Irecv(recv_w, (int)n, MPI_DOUBLE, west, 4, cart, &req[nreq++]);
        MPI_Isend(send_w, (int)n, MPI_DOUBLE, west, 3, cart, &req[nreq++]);
    }
    if (east != MPI_PROC_NULL) {
        MPI_Irecv(recv_e, (int)n, MPI_DOUBLE, east, 3, cart, &req[nreq++]);
        MPI_Isend(send_e, (int)n, MPI_DOUBLE, east, 4, cart, &req[nreq++]);
    }
    MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
    for (size_t i = 0; i < storage_rows; i++)
        for (size_t k = 0; k < depth; k++) {
            if (west != MPI_PROC_NULL) u[i * w + HALO - depth + k] = recv_w[i * depth + k];
            if (east != MPI_PROC_NULL) u[i * w + HALO + s.cols + k] = recv_e[i * depth + k];
        }
#endif
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t n = (size_t)arg(argc, argv, "--n", 256);
    int max_iters = (int)arg(argc, argv, "--max-iters", 1000);
    double tol = arg(argc, argv, "--tol", 1e-6);
    int check_every = (int)arg(argc, argv, "--check-every", 10);
    int dims[2], periods[2] = {0, 0}, coords[2];
    grid_dims(size, &dims[0], &dims[1]);
#ifdef VARIANT_ROWS
    dims[0] = size, dims[1] = 1;
#endif
    MPI_Comm cart;
    MPI_Cart_create(MPI_COMM_WORLD, 2, dims, periods, 0, &cart);
    int rank;
    MPI_Comm_rank(cart, &rank);
    MPI_Cart_coords(cart, rank, 2, coords);
    int north, south, west, east;
    MPI_Cart_shift(cart, 0, 1, &north, &south);
    MPI_Cart_shift(cart, 1, 1, &west, &east);
    shape s = {n / dims[0], n / dims[1], n / dims[1] + 2 * HALO};
    sides open = {north != MPI_PROC_NULL, south != MPI_PROC_NULL, west != MPI_PROC_NULL, east != MPI_PROC_NULL};
    size_t cells = (s.rows + 2 * HALO) * s.w;
    double *u = calloc(cells, sizeof(double)), *next = calloc(cells, sizeof(double));
    double *ring = calloc(3 * (s.cols + 2), sizeof(double));
    int pairs = s.rows >= HALO && s.cols >= HALO;
#ifdef VARIANT_ONESWEEP
    pairs = 0;
#endif
    size_t depth = pairs ? HALO : 1;
    double *columns = malloc(4 * (s.rows + 2 * HALO) * depth * sizeof(double));
    if (coords[0] == 0)
        for (size_t j = 0; j < s.cols; j++) u[at(s, -1, (long)j)] = next[at(s, -1, (long)j)] = 1.0;
    MPI_Barrier(cart);
    double start = MPI_Wtime(), residual = INFINITY;
    int iters = 0;
    for (;;) {
        exchange(cart, u, s, depth, north, south, west, east, columns);
        double change;
        int measured;
        if (pairs && (iters + 1) % check_every != 0 && iters + 2 <= max_iters) {
            iters += 2;
            measured = iters % check_every == 0;
            change = sweep_pair(u, ring, s, open, measured);
        } else {
            iters++;
            measured = iters % check_every == 0;
            if (measured)
                change = sweep_with_change(u, next, s);
            else
                sweep(u, next, s), change = 0.0;
            double *t = u;
            u = next;
            next = t;
        }
        if (measured) residual = max_over_ranks(change, cart);
        if (residual < tol || iters >= max_iters) break;
    }
    double t = max_over_ranks(MPI_Wtime() - start, cart);
    double points = (double)n * (double)n * iters;
    report("jacobi", t, "bandwidth_gb_s", points * 16.0 / t / 1e9, residual);
    MPI_Finalize();
    return 0;
}
