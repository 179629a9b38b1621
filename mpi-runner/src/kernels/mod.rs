/// Element-wise sum of a vector across all ranks (MPI_Allreduce).
pub mod allreduce;
