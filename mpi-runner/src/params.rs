//! Kernel parameters: parsed from the command line by `odyssey-mpi` and from
//! JSON by the bridge, and validated the same way in both places before any
//! MPI work starts. This module has no MPI dependency, so the bridge can use
//! it (`mpi-runner` with `default-features = false`).

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

/// Every kernel's name.
pub const KERNELS: [&str; 6] = ["allreduce", "pi", "jacobi", "matmul", "cg", "osu"];

/// Largest grid or matrix side any kernel accepts: rank 0 holds a few n x n
/// arrays of doubles for verification (3 x 8192^2 x 8 B = 1.5 GiB).
pub const MAX_SIDE: usize = 8192;

/// Why `KernelSpec::from_parts` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartsError {
    UnknownKernel(String),
    Params { kernel: String, reason: String },
}

impl std::fmt::Display for PartsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartsError::UnknownKernel(kernel) => {
                write!(f, "unknown kernel {kernel:?}; kernels: {}", KERNELS.join(", "))
            }
            PartsError::Params { kernel, reason } => write!(f, "params of kernel {kernel}: {reason}"),
        }
    }
}

impl std::error::Error for PartsError {}

/// A kernel and its parameters. On the command line a subcommand
/// (`odyssey-mpi jacobi --n 512`); in JSON `{"kernel": "jacobi", "params": {"n": 512}}`.
#[derive(Debug, Clone, PartialEq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "kernel", content = "params", rename_all = "lowercase")]
pub enum KernelSpec {
    /// Element-wise sum of a vector over all ranks, checked against a serial sum.
    Allreduce(AllreduceParams),
    /// Monte Carlo estimate of pi from reproducible per-rank random streams.
    Pi(PiParams),
    /// 2-D heat equation by Jacobi iteration on a Cartesian process grid.
    Jacobi(JacobiParams),
    /// Dense matrix multiply C = A B over a 2-D process grid (SUMMA).
    Matmul(MatmulParams),
    /// Conjugate gradient on the 2-D Poisson system, with residual history.
    Cg(CgParams),
    /// OSU-style micro-benchmarks: ping-pong latency and bandwidth, all-reduce and broadcast sweeps.
    Osu(OsuParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllreduceParams {
    /// Elements per vector.
    #[arg(long, default_value_t = 1024)]
    pub n: usize,
    /// Repetitions, for timing.
    #[arg(long, default_value_t = 10)]
    pub iters: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiParams {
    /// Total samples over all ranks.
    #[arg(long, default_value_t = 10_000_000)]
    pub samples: u64,
    /// Seed of the random streams; rank r draws from stream (seed, r).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JacobiParams {
    /// Interior grid side: the grid has n x n unknowns.
    #[arg(long, default_value_t = 256)]
    pub n: usize,
    /// Iterations at most.
    #[arg(long, default_value_t = 1000)]
    pub max_iters: u32,
    /// Stop when the largest change of an iteration falls below this.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Measure (and all-reduce) the largest change every this many
    /// iterations; the sweeps between are plain stencil updates.
    #[arg(long, default_value_t = 10)]
    pub check_every: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatmulParams {
    /// Matrix side: C = A B with n x n matrices.
    #[arg(long, default_value_t = 240)]
    pub n: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgParams {
    /// Grid side: the system has n x n unknowns.
    #[arg(long, default_value_t = 128)]
    pub n: usize,
    /// Iterations at most.
    #[arg(long, default_value_t = 2000)]
    pub max_iters: u32,
    /// Stop when the residual norm relative to the right-hand side falls below this.
    #[arg(long, default_value_t = 1e-8)]
    pub tol: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OsuParams {
    /// Largest message in bytes (sweeps go in powers of two from 1 B).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_bytes: usize,
    /// Timed repetitions per size (a tenth of it above 64 KiB, at least 10).
    #[arg(long, default_value_t = 200)]
    pub iters: u32,
}

/// Defaults for JSON, the same as the command line's.
macro_rules! default_from_clap {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                #[derive(clap::Parser)]
                struct Wrap {
                    #[command(flatten)]
                    inner: $t,
                }
                <Wrap as clap::Parser>::parse_from(["odyssey-mpi"]).inner
            }
        }
    )*};
}
default_from_clap!(AllreduceParams, PiParams, JacobiParams, MatmulParams, CgParams, OsuParams);

/// Most nearly square `rows x cols = ranks` with rows >= cols, as
/// MPI_Dims_create makes for two dimensions.
pub fn grid_dims(ranks: usize) -> (usize, usize) {
    let mut cols = (ranks as f64).sqrt() as usize;
    while cols > 1 && ranks % cols != 0 {
        cols -= 1;
    }
    let cols = cols.max(1);
    (ranks / cols, cols)
}

fn side(name: &str, n: usize, max: usize) -> Result<(), String> {
    if n == 0 {
        return Err(format!("{name} must be at least 1"));
    }
    if n > max {
        return Err(format!("{name} {n} exceeds the limit of {max}"));
    }
    Ok(())
}

fn tolerance(tol: f64) -> Result<(), String> {
    if !(tol > 0.0 && tol < 1.0) {
        return Err(format!("--tol must be between 0 and 1 (exclusive), not {tol}"));
    }
    Ok(())
}

fn divides_grid(n: usize, ranks: usize) -> Result<(), String> {
    let (rows, cols) = grid_dims(ranks);
    if n % rows != 0 || n % cols != 0 {
        return Err(format!(
            "--n {n} does not divide over the {rows} x {cols} process grid of {ranks} ranks (use a multiple of {})",
            lcm(rows, cols)
        ));
    }
    Ok(())
}

pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

impl KernelSpec {
    pub fn name(&self) -> &'static str {
        match self {
            KernelSpec::Allreduce(_) => "allreduce",
            KernelSpec::Pi(_) => "pi",
            KernelSpec::Jacobi(_) => "jacobi",
            KernelSpec::Matmul(_) => "matmul",
            KernelSpec::Cg(_) => "cg",
            KernelSpec::Osu(_) => "osu",
        }
    }

    /// The kernel named `kernel` with JSON `params` (absent: every default).
    /// The error says which of the two is wrong.
    pub fn from_parts(kernel: &str, params: Option<serde_json::Value>) -> Result<KernelSpec, PartsError> {
        if !KERNELS.contains(&kernel) {
            return Err(PartsError::UnknownKernel(kernel.to_owned()));
        }
        let params = params.unwrap_or_else(|| serde_json::json!({}));
        serde_json::from_value(serde_json::json!({"kernel": kernel, "params": params}))
            .map_err(|e| PartsError::Params { kernel: kernel.to_owned(), reason: e.to_string() })
    }

    /// The parameters alone, as JSON.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(self).map(|mut v| v["params"].take()).unwrap_or_default()
    }

    /// Checks the parameters for a run on `ranks` ranks: a one-line message
    /// naming the flag when they cannot work.
    pub fn validate(&self, ranks: usize) -> Result<(), String> {
        if ranks == 0 {
            return Err("the run needs at least one rank".into());
        }
        match *self {
            KernelSpec::Allreduce(p) => {
                side("--n", p.n, 1 << 27)?;
                if p.iters == 0 {
                    return Err("--iters must be at least 1".into());
                }
            }
            KernelSpec::Pi(p) => {
                if p.samples < ranks as u64 {
                    return Err(format!("--samples {} is fewer than the {ranks} ranks", p.samples));
                }
                if p.samples > 1 << 40 {
                    return Err(format!("--samples {} exceeds the limit of 2^40", p.samples));
                }
            }
            KernelSpec::Jacobi(p) => {
                side("--n", p.n, MAX_SIDE)?;
                tolerance(p.tol)?;
                if p.max_iters == 0 {
                    return Err("--max-iters must be at least 1".into());
                }
                if p.check_every == 0 {
                    return Err("--check-every must be at least 1".into());
                }
                divides_grid(p.n, ranks)?;
            }
            KernelSpec::Matmul(p) => {
                side("--n", p.n, MAX_SIDE / 2)?;
                divides_grid(p.n, ranks)?;
            }
            KernelSpec::Cg(p) => {
                side("--n", p.n, MAX_SIDE)?;
                tolerance(p.tol)?;
                if p.max_iters == 0 {
                    return Err("--max-iters must be at least 1".into());
                }
                if p.n < ranks {
                    return Err(format!("--n {} gives fewer grid rows than the {ranks} ranks", p.n));
                }
            }
            KernelSpec::Osu(p) => {
                side("--max-bytes", p.max_bytes, 64 << 20)?;
                if p.iters == 0 {
                    return Err("--iters must be at least 1".into());
                }
            }
        }
        Ok(())
    }

    /// Bytes rank 0 needs at most (its share plus the serial reference), for
    /// refusing a run that cannot fit before it starts.
    pub fn rank0_bytes(&self, ranks: usize) -> u64 {
        let sq = |n: usize| (n as u64) * (n as u64) * 8;
        match *self {
            KernelSpec::Allreduce(p) => 3 * p.n as u64 * 8,
            KernelSpec::Pi(_) => 0,
            KernelSpec::Jacobi(p) => 2 * sq(p.n + 4) + 2 * sq(p.n + 4) / ranks as u64,
            KernelSpec::Matmul(p) => 4 * sq(p.n) + 4 * sq(p.n) / ranks as u64,
            KernelSpec::Cg(p) => 7 * sq(p.n) + 6 * sq(p.n) / ranks as u64,
            KernelSpec::Osu(p) => 4 * p.max_bytes as u64,
        }
    }

    /// Whether rank 0 of a run on `ranks` ranks fits in `available` bytes
    /// (MemAvailable of its node); the message says how much it needs.
    pub fn fits_in(&self, ranks: usize, available: u64) -> Result<(), String> {
        let need = self.rank0_bytes(ranks);
        if need > available {
            return Err(format!(
                "{} with these parameters needs {} MiB on rank 0, but this node has {} MiB available",
                self.name(),
                need >> 20,
                available >> 20
            ));
        }
        Ok(())
    }

    /// The command line `odyssey-mpi` takes for this spec, after its global
    /// options: the subcommand and one `--flag value` per parameter.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![self.name().to_owned()];
        if let serde_json::Value::Object(params) = self.params_json() {
            for (key, value) in params {
                args.push(format!("--{}", key.replace('_', "-")));
                args.push(value.to_string());
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        spec: KernelSpec,
    }

    #[test]
    fn grid_dims_are_most_nearly_square() {
        assert_eq!(grid_dims(1), (1, 1));
        assert_eq!(grid_dims(2), (2, 1));
        assert_eq!(grid_dims(3), (3, 1));
        assert_eq!(grid_dims(4), (2, 2));
        assert_eq!(grid_dims(6), (3, 2));
        assert_eq!(grid_dims(12), (4, 3));
    }

    #[test]
    fn json_and_command_line_agree() {
        let spec: KernelSpec = serde_json::from_str(r#"{"kernel": "jacobi", "params": {"n": 512}}"#).unwrap();
        assert_eq!(spec, KernelSpec::Jacobi(JacobiParams { n: 512, ..Default::default() }));
        let mut argv = vec!["odyssey-mpi".to_owned()];
        argv.extend(spec.to_args());
        assert_eq!(Cli::parse_from(argv).spec, spec);
        let cg: KernelSpec = serde_json::from_str(r#"{"kernel": "cg", "params": {"tol": 1e-10}}"#).unwrap();
        let mut argv = vec!["odyssey-mpi".to_owned()];
        argv.extend(cg.to_args());
        assert_eq!(Cli::parse_from(argv).spec, cg);
    }

    #[test]
    fn missing_params_take_the_defaults() {
        let spec = KernelSpec::from_parts("pi", None).unwrap();
        assert_eq!(spec, KernelSpec::Pi(PiParams { samples: 10_000_000, seed: 42 }));
        let spec = KernelSpec::from_parts("matmul", Some(serde_json::json!({}))).unwrap();
        assert_eq!(spec, KernelSpec::Matmul(MatmulParams { n: 240 }));
    }

    #[test]
    fn unknown_params_and_kernels_are_refused() {
        assert!(serde_json::from_str::<KernelSpec>(r#"{"kernel": "pi", "params": {"n": 1}}"#).is_err());
        assert!(serde_json::from_str::<KernelSpec>(r#"{"kernel": "fft", "params": {}}"#).is_err());
        assert!(serde_json::from_str::<KernelSpec>(r#"{"kernel": "jacobi", "params": {"n": -1}}"#).is_err());
        let err = KernelSpec::from_parts("fft", None).unwrap_err();
        assert_eq!(err, PartsError::UnknownKernel("fft".into()));
        let err = err.to_string();
        assert!(err.starts_with("unknown kernel \"fft\"; kernels: allreduce, pi"), "{err}");
        let err = KernelSpec::from_parts("pi", Some(serde_json::json!({"samples": "many"}))).unwrap_err();
        assert!(matches!(err, PartsError::Params { .. }));
        let err = err.to_string();
        assert!(err.starts_with("params of kernel pi: invalid type"), "{err}");
    }

    #[test]
    fn bad_values_get_a_message_naming_the_flag() {
        let jacobi = KernelSpec::Jacobi(JacobiParams { n: 100, ..Default::default() });
        assert!(jacobi.validate(4).is_ok());
        let err = jacobi.validate(6).unwrap_err();
        assert!(err.contains("3 x 2 process grid") && err.contains("multiple of 6"), "{err}");
        let err = KernelSpec::Matmul(MatmulParams { n: 0 }).validate(1).unwrap_err();
        assert_eq!(err, "--n must be at least 1");
        let err = KernelSpec::Jacobi(JacobiParams { tol: 0.0, ..Default::default() }).validate(1).unwrap_err();
        assert!(err.starts_with("--tol"), "{err}");
        let err = KernelSpec::Cg(CgParams { n: 2, ..Default::default() }).validate(3).unwrap_err();
        assert!(err.contains("fewer grid rows"), "{err}");
        assert!(KernelSpec::Matmul(MatmulParams { n: MAX_SIDE }).validate(1).is_err());
    }

    #[test]
    fn a_run_too_large_for_the_node_is_refused_with_the_sizes() {
        // matmul n = 4096 on one rank: A, B, C and the serial product, twice.
        let spec = KernelSpec::Matmul(MatmulParams { n: 4096 });
        assert_eq!(spec.rank0_bytes(1), 8 * 4096 * 4096 * 8);
        let err = spec.fits_in(1, 512 << 20).unwrap_err();
        assert_eq!(err, "matmul with these parameters needs 1024 MiB on rank 0, but this node has 512 MiB available");
        assert!(spec.fits_in(1, 2 << 30).is_ok());
        // More ranks, smaller shares on rank 0.
        assert!(spec.rank0_bytes(4) < spec.rank0_bytes(1));
    }
}
