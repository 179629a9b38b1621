/* C twin of mpi-runner/src/kernels/matmul.rs: SUMMA with row and column
 * communicators and the same i-k-j local product. */
#include "twin.h"

static double a(size_t i, size_t j) { return (double)((i * 31 + j * 17) % 97) / 97.0 - 0.5; }
static double b(size_t i, size_t j) { return (double)((i * 13 + j * 29) % 89) / 89.0 - 0.5; }

static void gemm_acc(double *restrict c, const double *restrict a, const double *restrict b, size_t m, size_t k,
                     size_t n) {
    for (size_t i = 0; i < m; i++)
        for (size_t p = 0; p < k; p++) {
            double aik = a[i * k + p];
            const double *brow = b + p * n;
            double *crow = c + i * n;
            for (size_t j = 0; j < n; j++) crow[j] += aik * brow[j];
        }
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
