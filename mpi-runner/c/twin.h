/* Shared by the C reference twins of odyssey-mpi's kernels: argument
 * parsing, the process grid, and the one JSON line each twin prints.
 * The twins exist to time the Rust kernels against; they mirror the Rust
 * code's algorithms and data layout, and leave verification to it. */
#ifndef TWIN_H
#define TWIN_H

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of "--name value" in argv, or fallback. */
static inline double arg(int argc, char **argv, const char *name, double fallback) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return atof(argv[i + 1]);
    return fallback;
}

/* Most nearly square rows x cols = ranks with rows >= cols (as MPI_Dims_create). */
static inline void grid_dims(int ranks, int *rows, int *cols) {
    int c = 1;
    while ((c + 1) * (c + 1) <= ranks) c++;
    while (c > 1 && ranks % c) c--;
    *cols = c;
    *rows = ranks / c;
}

static inline double max_over_ranks(double v, MPI_Comm comm) {
    double out;
    MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, comm);
    return out;
}

static inline double sum_over_ranks(double v, MPI_Comm comm) {
    double out;
    MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm);
    return out;
}

/* Rank 0 prints {"kernel":..,"ranks":..,"wall_time_s":..,"<metric>":..,"answer":..}. */
static inline void report(const char *kernel, double seconds, const char *metric, double value, double answer) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0)
        printf("{\"kernel\":\"%s\",\"impl\":\"c\",\"ranks\":%d,\"wall_time_s\":%.9f,\"%s\":%.6f,\"answer\":%.17g}\n",
               kernel, size, seconds, metric, value, answer);
}

#endif
