/* C twin of the ping-pong of mpi-runner/src/kernels/osu.rs: rank 0 and the
 * last rank, 1 B to --max-bytes, the same repetitions and warm-up. Prints
 * one JSON line per size. */
#include "twin.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    size_t max_bytes = (size_t)arg(argc, argv, "--max-bytes", 4 << 20);
    int iters = (int)arg(argc, argv, "--iters", 200), peer = size - 1;
    char *send = malloc(max_bytes), *recv = malloc(max_bytes);
    for (size_t bytes = 1; bytes <= max_bytes && size >= 2; bytes *= 2) {
        int reps = bytes > (64 << 10) ? (iters / 10 > 10 ? iters / 10 : 10) : iters;
        int warmup = reps / 10 > 2 ? reps / 10 : 2;
        for (size_t i = 0; i < bytes; i++) send[i] = (char)((i * 7 + bytes) % 251);
        MPI_Barrier(MPI_COMM_WORLD);
        double start = 0;
        for (int rep = 0; rep < warmup + reps; rep++) {
            if (rep == warmup) start = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(send, (int)bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD);
                MPI_Recv(recv, (int)bytes, MPI_BYTE, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == peer) {
                MPI_Recv(recv, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(recv, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
            }
        }
        double one_way = (MPI_Wtime() - start) / reps / 2.0;
        if (rank == 0)
            printf("{\"impl\":\"c\",\"bytes\":%zu,\"latency_us\":%.4f,\"bandwidth_mb_s\":%.2f}\n", bytes, one_way * 1e6,
                   bytes / one_way / 1e6);
    }
    MPI_Finalize();
    return 0;
}
