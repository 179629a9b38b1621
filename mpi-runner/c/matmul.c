/* C twin of mpi-runner/src/kernels/matmul.rs: SUMMA with row and column
 * communicators and the same local product: i-k-j order within 128 x 256
 * panels of B (256 KiB, about this machine's L2), four rows of C per pass
 * over a row of B (each load of B feeds four multiply-adds). Every C[i][j]
 * still adds up its products in k order, as the plain loop does.
 *
 * Variants tried for issue #16 (scripts/build.sh builds each into
 * c-twins/variants/matmul-<name>; bench/twin-variants.sh times them):
 *   ikj      the plain i-k-j loop (the twin before #16)
 *   blocked  the panels, one row of C per pass
 * The twin is the fastest of them (docs/BENCHMARKS.md). */
// variants: ikj blocked
#include "twin.h"

static double a(size_t i, size_t j) { return (double)((i * 31 + j * 17) % 97) / 97.0 - 0.5; }
static double b(size_t i, size_t j) { return (double)((i * 13 + j * 29) % 89) / 89.0 - 0.5; }

#define min(x, y) ((x) < (y) ? (x) : (y))

/* c (m x n) += a (m x k) * b (k x n), row-major. */
static void gemm_acc(double *restrict c, const double *restrict a, const double *restrict b, size_t m, size_t k,
                     size_t n) {
#ifdef VARIANT_IKJ
    for (size_t i = 0; i < m; i++)
        for (size_t p = 0; p < k; p++) {
            double aik = a[i * k + p];
            const double *brow = b + p * n;
            double *crow = c + i * n;
            for (size_t j = 0; j < n; j++) crow[j] += aik * brow[j];
        }
#else
    enum { KB = 128, JB = 256 };
    for (size_t j0 = 0; j0 < n; j0 += JB)
        for (size_t p0 = 0; p0 < k; p0 += KB) {
            size_t j1 = min(j0 + JB, n), p1 = min(p0 + KB, k), i = 0;
#ifndef VARIANT_BLOCKED
            for (; i + 4 <= m; i += 4)
                for (size_t p = p0; p < p1; p++) {
                    double a0 = a[i * k + p], a1 = a[(i + 1) * k + p], a2 = a[(i + 2) * k + p],
                           a3 = a[(i + 3) * k + p];
                    const double *brow = b + p * n;
                    double *c0 = c + i * n, *c1 = c0 + n, *c2 = c1 + n, *c3 = c2 + n;
                    for (size_t j = j0; j < j1; j++) {
                        double bj = brow[j];
                        c0[j] += a0 * bj, c1[j] += a1 * bj, c2[j] += a2 * bj, c3[j] += a3 * bj;
                    }
                }
#endif
            for (; i < m; i++)
                for (size_t p = p0; p < p1; p++) {
                    double aik = a[i * k + p];
                    const double *brow = b + p * n;
                    double *crow = c + i * n;
                    for (size_t j = j0; j < j1; j++) crow[j] += aik * brow[j];
                }
        }
#endif
}

static size_t gcd(size_t x, size_t y) { return y ? gcd(y, x % y) : x; }

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size, grid_rows, grid_cols;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t n = (size_t)arg(argc, argv, "--n", 240);
    grid_dims(size, &grid_rows, &grid_cols);
    int row = rank / grid_cols, col = rank % grid_cols;
    size_t mr = n / grid_rows, nc = n / grid_cols, kb = gcd(mr, nc);
    MPI_Comm row_comm, col_comm;
    MPI_Comm_split(MPI_COMM_WORLD, row, rank, &row_comm);
    MPI_Comm_split(MPI_COMM_WORLD, col, rank, &col_comm);
    double *ab = malloc(mr * nc * sizeof(double)), *bb = malloc(mr * nc * sizeof(double));
    double *cb = calloc(mr * nc, sizeof(double));
    double *ap = malloc(mr * kb * sizeof(double)), *bp = malloc(kb * nc * sizeof(double));
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nc; j++) {
            ab[i * nc + j] = a(row * mr + i, col * nc + j);
            bb[i * nc + j] = b(row * mr + i, col * nc + j);
        }
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (size_t k0 = 0; k0 < n; k0 += kb) {
        int owner = (int)(k0 / nc);
        if (owner == col)
            for (size_t i = 0; i < mr; i++) memcpy(ap + i * kb, ab + i * nc + k0 % nc, kb * sizeof(double));
        MPI_Bcast(ap, (int)(mr * kb), MPI_DOUBLE, owner, row_comm);
        owner = (int)(k0 / mr);
        if (owner == row) memcpy(bp, bb + (k0 % mr) * nc, kb * nc * sizeof(double));
        MPI_Bcast(bp, (int)(kb * nc), MPI_DOUBLE, owner, col_comm);
        gemm_acc(cb, ap, bp, mr, kb, nc);
    }
    double t = max_over_ranks(MPI_Wtime() - start, MPI_COMM_WORLD);
    double local = 0, sum = 0;
    for (size_t i = 0; i < mr * nc; i++) local += cb[i];
    MPI_Reduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    report("matmul", t, "gflop_s", 2.0 * n * n * (double)n / t / 1e9, sum);
    MPI_Finalize();
    return 0;
}
