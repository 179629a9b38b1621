/* C twin of mpi-runner/src/kernels/jacobi.rs: the same block layout with a
 * one-cell halo, non-blocking halo exchange, all-reduced largest change.
 *
 * Variants tried for issue #16 (scripts/build.sh builds each into
 * c-twins/variants/jacobi-<name>; bench/twin-variants.sh times them):
 *   streaming  the sweep writes with non-temporal stores (_mm_stream_pd)
 *   autovec    the sweep as the plain scalar loop, vectorised by gcc -O3
 *   rows       1-D row decomposition, blocking MPI_Sendrecv halos (the
 *              independent plain C Jacobi issue #16 measured against)
 *   prefetch   software prefetch of the row below, 2 KiB ahead
 * The twin itself is the fastest of them (docs/BENCHMARKS.md). */
// variants: streaming autovec rows prefetch
#include <emmintrin.h>
#include <xmmintrin.h>
#include <math.h>
#include <stdint.h>
#include "twin.h"

/* As the Rust sweep: two points per SSE2 instruction with plain stores
 * (streaming ones measured about 1.3x slower here, issue #16), the same sums
 * in the same order. */
static void sweep(const double *restrict u, double *restrict next, size_t rows, size_t cols) {
    size_t w = cols + 2;
    for (size_t i = 1; i <= rows; i++) {
        const double *up = u + (i - 1) * w, *mid = u + i * w, *down = u + (i + 1) * w;
        double *out = next + i * w;
        size_t j = 1;
#ifndef VARIANT_AUTOVEC
        const __m128d quarter = _mm_set1_pd(0.25);
#ifdef VARIANT_STREAMING
        /* Streaming stores need 16-byte alignment: one scalar first when a
         * row starts between boundaries. */
        if ((uintptr_t)(out + 1) % 16) {
            out[1] = 0.25 * (up[1] + down[1] + mid[0] + mid[2]);
            j = 2;
        }
#endif
        for (; j + 1 <= cols; j += 2) {
#ifdef VARIANT_PREFETCH
            if (j % 8 == 1) _mm_prefetch((const char *)(down + j + 256), _MM_HINT_T0);
#endif
            __m128d sum = _mm_add_pd(_mm_add_pd(_mm_add_pd(_mm_loadu_pd(up + j), _mm_loadu_pd(down + j)),
                                                _mm_loadu_pd(mid + j - 1)),
                                     _mm_loadu_pd(mid + j + 1));
#ifdef VARIANT_STREAMING
            _mm_stream_pd(out + j, _mm_mul_pd(quarter, sum));
#else
            _mm_storeu_pd(out + j, _mm_mul_pd(quarter, sum));
#endif
        }
#endif
        for (; j <= cols; j++) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
    }
#ifdef VARIANT_STREAMING
    _mm_sfence();
#endif
}

/* `sweep`, also returning the largest change: a running maximum per lane
 * (a select per element vectorises, one scalar maximum would not), as the
 * Rust sweep does. */
static double sweep_with_change(const double *restrict u, double *restrict next, size_t rows, size_t cols) {
    enum { LANES = 4 };
    size_t w = cols + 2;
    double lanes[LANES] = {0.0, 0.0, 0.0, 0.0};
    for (size_t i = 1; i <= rows; i++) {
        const double *up = u + (i - 1) * w, *mid = u + i * w, *down = u + (i + 1) * w;
        double *out = next + i * w;
        size_t j = 1;
        for (; j + LANES <= cols + 1; j += LANES)
            for (size_t k = 0; k < LANES; k++) {
                double v = 0.25 * (up[j + k] + down[j + k] + mid[j + k - 1] + mid[j + k + 1]);
                double d = fabs(v - mid[j + k]);
                lanes[k] = d > lanes[k] ? d : lanes[k];
                out[j + k] = v;
            }
        for (; j <= cols; j++) {
            double v = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
            double d = fabs(v - mid[j]);
            lanes[0] = d > lanes[0] ? d : lanes[0];
            out[j] = v;
        }
    }
    double change = 0.0;
    for (size_t k = 0; k < LANES; k++) change = lanes[k] > change ? lanes[k] : change;
    return change;
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
    size_t rows = n / dims[0], cols = n / dims[1], w = cols + 2;
    double *u = calloc((rows + 2) * w, sizeof(double)), *next = calloc((rows + 2) * w, sizeof(double));
#ifndef VARIANT_ROWS
    double *send_w = malloc(rows * sizeof(double)), *send_e = malloc(rows * sizeof(double));
    double *recv_w = malloc(rows * sizeof(double)), *recv_e = malloc(rows * sizeof(double));
#endif
    if (coords[0] == 0)
        for (size_t j = 1; j <= cols; j++) u[j] = next[j] = 1.0;
    MPI_Barrier(cart);
    double start = MPI_Wtime(), residual = INFINITY;
    int iters = 0;
    for (;;) {
#ifdef VARIANT_ROWS
        MPI_Sendrecv(u + w + 1, (int)cols, MPI_DOUBLE, north, 1, u + (rows + 1) * w + 1, (int)cols, MPI_DOUBLE, south,
                     1, cart, MPI_STATUS_IGNORE);
        MPI_Sendrecv(u + rows * w + 1, (int)cols, MPI_DOUBLE, south, 2, u + 1, (int)cols, MPI_DOUBLE, north, 2, cart,
                     MPI_STATUS_IGNORE);
#else
        MPI_Request req[8];
        int nreq = 0;
        /* Columns are not contiguous: pack them, where there is a neighbour. */
        for (size_t i = 0; west != MPI_PROC_NULL && i < rows; i++) send_w[i] = u[(i + 1) * w + 1];
        for (size_t i = 0; east != MPI_PROC_NULL && i < rows; i++) send_e[i] = u[(i + 1) * w + cols];
        if (north != MPI_PROC_NULL) {
            MPI_Irecv(u + 1, (int)cols, MPI_DOUBLE, north, 2, cart, &req[nreq++]);
            MPI_Isend(u + w + 1, (int)cols, MPI_DOUBLE, north, 1, cart, &req[nreq++]);
        }
        if (south != MPI_PROC_NULL) {
            MPI_Irecv(u + (rows + 1) * w + 1, (int)cols, MPI_DOUBLE, south, 1, cart, &req[nreq++]);
            MPI_Isend(u + rows * w + 1, (int)cols, MPI_DOUBLE, south, 2, cart, &req[nreq++]);
        }
        if (west != MPI_PROC_NULL) {
            MPI_Irecv(recv_w, (int)rows, MPI_DOUBLE, west, 4, cart, &req[nreq++]);
            MPI_Isend(send_w, (int)rows, MPI_DOUBLE, west, 3, cart, &req[nreq++]);
        }
        if (east != MPI_PROC_NULL) {
            MPI_Irecv(recv_e, (int)rows, MPI_DOUBLE, east, 3, cart, &req[nreq++]);
            MPI_Isend(send_e, (int)rows, MPI_DOUBLE, east, 4, cart, &req[nreq++]);
        }
        MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
        for (size_t i = 0; west != MPI_PROC_NULL && i < rows; i++) u[(i + 1) * w] = recv_w[i];
        for (size_t i = 0; east != MPI_PROC_NULL && i < rows; i++) u[(i + 1) * w + cols + 1] = recv_e[i];
#endif
        iters++;
        if (iters % check_every == 0)
            residual = max_over_ranks(sweep_with_change(u, next, rows, cols), cart);
        else
            sweep(u, next, rows, cols);
        double *t = u; u = next; next = t;
        if (residual < tol || iters >= max_iters) break;
    }
    double t = max_over_ranks(MPI_Wtime() - start, cart);
    double points = (double)n * (double)n * iters;
    report("jacobi", t, "bandwidth_gb_s", points * 16.0 / t / 1e9, residual);
    MPI_Finalize();
    return 0;
}
