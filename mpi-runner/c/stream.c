/* STREAM triad (McCalpin), the memory bandwidth the stencil is held to:
 * a[i] = b[i] + s * c[i] over arrays far larger than the caches, best of
 * --reps, every rank at once; the bandwidth is summed over ranks and counts
 * 24 bytes per element (two reads, one write), as STREAM does. */
#include "twin.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    size_t n = (size_t)arg(argc, argv, "--n", 20e6);
    int reps = (int)arg(argc, argv, "--reps", 10);
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double)), *c = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = 1.0, b[i] = 2.0, c[i] = 0.5;
    double best = 1e30, s = 3.0;
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        double t = max_over_ranks(MPI_Wtime() - start, MPI_COMM_WORLD);
        if (t < best) best = t;
    }
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    report("stream_triad", best, "bandwidth_gb_s", 24.0 * n * size / best / 1e9, a[n / 2]);
    MPI_Finalize();
    return 0;
}
