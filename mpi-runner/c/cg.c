/* C twin of mpi-runner/src/kernels/cg.rs: matrix-free 5-point Poisson CG
 * over bands of grid rows, halo rows exchanged without blocking. */
#include <math.h>
#include "twin.h"

static void apply(const double *restrict p, double *restrict out, size_t rows, size_t n) {
    for (size_t i = 0; i < rows; i++) {
        const double *up = p + i * n, *mid = p + (i + 1) * n, *down = p + (i + 2) * n;
        double *o = out + i * n;
        if (n == 1) {
            o[0] = 4.0 * mid[0] - up[0] - down[0];
            continue;
        }
        o[0] = 4.0 * mid[0] - up[0] - down[0] - mid[1];
        for (size_t j = 1; j + 1 < n; j++) o[j] = 4.0 * mid[j] - up[j] - down[j] - mid[j - 1] - mid[j + 1];
        o[n - 1] = 4.0 * mid[n - 1] - up[n - 1] - down[n - 1] - mid[n - 2];
    }
}

static double dot(const double *x, const double *y, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += x[i] * y[i];
    return s;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t n = (size_t)arg(argc, argv, "--n", 128);
    int max_iters = (int)arg(argc, argv, "--max-iters", 2000);
    double tol = arg(argc, argv, "--tol", 1e-8);
    size_t start_row = n * rank / size, rows = n * (rank + 1) / size - start_row, len = rows * n;
    int above = rank > 0 ? rank - 1 : MPI_PROC_NULL, below = rank + 1 < size ? rank + 1 : MPI_PROC_NULL;
    double *x = calloc(len, sizeof(double)), *r = malloc(len * sizeof(double));
    double *p = calloc(len + 2 * n, sizeof(double)), *ap = malloc(len * sizeof(double));
    for (size_t i = 0; i < len; i++) r[i] = p[n + i] = 1.0;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    double b_norm = sqrt(sum_over_ranks((double)len, MPI_COMM_WORLD));
    double rr = sum_over_ranks(dot(r, r, len), MPI_COMM_WORLD), relative = 1.0;
    int iters = 0;
    while (iters < max_iters) {
        MPI_Request req[4];
        int nreq = 0;
        if (above != MPI_PROC_NULL) {
            MPI_Irecv(p, (int)n, MPI_DOUBLE, above, 2, MPI_COMM_WORLD, &req[nreq++]);
            MPI_Isend(p + n, (int)n, MPI_DOUBLE, above, 1, MPI_COMM_WORLD, &req[nreq++]);
        }
        if (below != MPI_PROC_NULL) {
            MPI_Irecv(p + n + len, (int)n, MPI_DOUBLE, below, 1, MPI_COMM_WORLD, &req[nreq++]);
            MPI_Isend(p + len, (int)n, MPI_DOUBLE, below, 2, MPI_COMM_WORLD, &req[nreq++]);
        }
        MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
        apply(p, ap, rows, n);
        double *body = p + n;
        double alpha = rr / sum_over_ranks(dot(body, ap, len), MPI_COMM_WORLD);
        for (size_t i = 0; i < len; i++) {
            x[i] += alpha * body[i];
            r[i] -= alpha * ap[i];
        }
        double rr_next = sum_over_ranks(dot(r, r, len), MPI_COMM_WORLD);
        iters++;
        relative = sqrt(rr_next) / b_norm;
        if (relative < tol) break;
        double beta = rr_next / rr;
        rr = rr_next;
        for (size_t i = 0; i < len; i++) body[i] = r[i] + beta * body[i];
    }
    double t = max_over_ranks(MPI_Wtime() - start, MPI_COMM_WORLD);
    report("cg", t, "gflop_s", (double)n * n * iters * 19.0 / t / 1e9, relative);
    MPI_Finalize();
    return 0;
}
