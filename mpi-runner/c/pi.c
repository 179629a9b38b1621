/* C twin of mpi-runner/src/kernels/pi.rs: SplitMix64 streams per rank. */
#include <math.h>
#include <stdint.h>
#include "twin.h"

#define GAMMA 0x9E3779B97F4A7C15ULL

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double next_f64(uint64_t *state) {
    *state += GAMMA;
    return (double)(mix(*state) >> 11) * (1.0 / (double)(1ULL << 53));
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    uint64_t samples = (uint64_t)arg(argc, argv, "--samples", 1e7);
    uint64_t seed = (uint64_t)arg(argc, argv, "--seed", 42);
    uint64_t share = samples / size + ((uint64_t)rank < samples % size);
    uint64_t state = mix(seed ^ mix(((uint64_t)rank + 1) * GAMMA));
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    uint64_t local = 0, inside = 0;
    for (uint64_t i = 0; i < share; i++) {
        double x = next_f64(&state), y = next_f64(&state);
        local += x * x + y * y < 1.0;
    }
    MPI_Allreduce(&local, &inside, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    double t = max_over_ranks(MPI_Wtime() - start, MPI_COMM_WORLD);
    report("pi", t, "gflop_s", samples * 4.0 / t / 1e9, 4.0 * (double)inside / (double)samples);
    MPI_Finalize();
    return 0;
}
