/* C twin of mpi-runner/src/kernels/cg.rs: matrix-free 5-point Poisson CG
 * over bands of grid rows, halo rows exchanged without blocking. Dot
 * products keep four running sums (one sum is a chain of dependent adds, so
 * the loop would wait on the add's latency); the operator computes p.Ap row
 * by row as it goes, and the update of x and r computes r.r in the same
 * pass (two passes over memory fewer).
 *
 * Variants tried for issue #16 (scripts/build.sh builds each into
 * c-twins/variants/cg-<name>; bench/twin-variants.sh times them):
 *   plain  one running sum, a pass per operation (the twin before #16)
 *   lanes  four running sums, a pass per operation
 * The twin is the fastest of them (docs/BENCHMARKS.md). */
// variants: plain lanes
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
#ifndef VARIANT_PLAIN
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= len; i += 4)
        for (size_t k = 0; k < 4; k++) s[k] += x[i + k] * y[i + k];
    for (; i < len; i++) s[0] += x[i] * y[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
#else
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += x[i] * y[i];
    return s;
#endif
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
        double *body = p + n;
#if !defined(VARIANT_PLAIN) && !defined(VARIANT_LANES)
        double pap = 0.0;
        for (size_t i = 0; i < rows; i++) {
            apply(p + i * n, ap + i * n, 1, n);
            pap += dot(body + i * n, ap + i * n, n);
        }
        double alpha = rr / sum_over_ranks(pap, MPI_COMM_WORLD);
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        size_t i = 0;
        for (; i + 4 <= len; i += 4)
            for (size_t k = 0; k < 4; k++) {
                x[i + k] += alpha * body[i + k];
                r[i + k] -= alpha * ap[i + k];
                s[k] += r[i + k] * r[i + k];
            }
        for (; i < len; i++) {
            x[i] += alpha * body[i];
            r[i] -= alpha * ap[i];
            s[0] += r[i] * r[i];
        }
        double rr_next = sum_over_ranks((s[0] + s[1]) + (s[2] + s[3]), MPI_COMM_WORLD);
#else
        apply(p, ap, rows, n);
        double alpha = rr / sum_over_ranks(dot(body, ap, len), MPI_COMM_WORLD);
        for (size_t i = 0; i < len; i++) {
            x[i] += alpha * body[i];
            r[i] -= alpha * ap[i];
        }
        double rr_next = sum_over_ranks(dot(r, r, len), MPI_COMM_WORLD);
#endif
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
