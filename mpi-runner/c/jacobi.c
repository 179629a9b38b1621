/* C twin of mpi-runner/src/kernels/jacobi.rs: the same block layout with a
 * one-cell halo, non-blocking halo exchange, all-reduced largest change. */
#include <emmintrin.h>
#include <math.h>
#include "twin.h"

/* As the Rust sweep: two points per SSE2 instruction with plain stores
 * (streaming ones measured about 1.3x slower here, issue #16), the same sums
 * in the same order. */
static void sweep(const double *restrict u, double *restrict next, size_t rows, size_t cols) {
    size_t w = cols + 2;
    const __m128d quarter = _mm_set1_pd(0.25);
    for (size_t i = 1; i <= rows; i++) {
        const double *up = u + (i - 1) * w, *mid = u + i * w, *down = u + (i + 1) * w;
        double *out = next + i * w;
        size_t j = 1;
        for (; j + 1 <= cols; j += 2) {
            __m128d sum = _mm_add_pd(_mm_add_pd(_mm_add_pd(_mm_loadu_pd(up + j), _mm_loadu_pd(down + j)),
                                                _mm_loadu_pd(mid + j - 1)),
                                     _mm_loadu_pd(mid + j + 1));
            _mm_storeu_pd(out + j, _mm_mul_pd(quarter, sum));
        }
        for (; j <= cols; j++) out[j] = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
    }
}

static double sweep_with_change(const double *restrict u, double *restrict next, size_t rows, size_t cols) {
    size_t w = cols + 2;
    double change = 0.0;
    for (size_t i = 1; i <= rows; i++) {
        const double *up = u + (i - 1) * w, *mid = u + i * w, *down = u + (i + 1) * w;
        double *out = next + i * w;
        for (size_t j = 1; j <= cols; j++) {
            double v = 0.25 * (up[j] + down[j] + mid[j - 1] + mid[j + 1]);
            double d = fabs(v - mid[j]);
            change = d > change ? d : change;
            out[j] = v;
        }
    }
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
    double *send_w = malloc(rows * sizeof(double)), *send_e = malloc(rows * sizeof(double));
    double *recv_w = malloc(rows * sizeof(double)), *recv_e = malloc(rows * sizeof(double));
    if (coords[0] == 0)
        for (size_t j = 1; j <= cols; j++) u[j] = next[j] = 1.0;
    MPI_Barrier(cart);
    double start = MPI_Wtime(), residual = INFINITY;
    int iters = 0;
    for (;;) {
        MPI_Request req[8];
        int nreq = 0;
        for (size_t i = 0; i < rows; i++) {
            send_w[i] = u[(i + 1) * w + 1];
            send_e[i] = u[(i + 1) * w + cols];
        }
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
        for (size_t i = 0; i < rows; i++) {
            if (west != MPI_PROC_NULL) u[(i + 1) * w] = recv_w[i];
            if (east != MPI_PROC_NULL) u[(i + 1) * w + cols + 1] = recv_e[i];
        }
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
