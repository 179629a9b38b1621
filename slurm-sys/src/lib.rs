//! Raw bindings to the installed libslurm (SLURM 22.05), generated at build
//! time from `/usr/include/slurm/slurm.h` (or `$SLURM_INCLUDE_DIR`). Only the
//! bridge's `slurm/libslurm.rs` uses them; nothing here is safe to call
//! without reading that module first.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `slurm_api_version()` of the libslurm this crate was built against: a
/// running binary compares it with the library it loaded.
pub const BUILT_API_VERSION: u32 = {
    let text = env!("ODYSSEY_SLURM_API_VERSION").as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < text.len() {
        value = value * 10 + (text[i] - b'0') as u32;
        i += 1;
    }
    value
};

extern "C" {
    /// Frees `slurm_job_will_run2`'s answer. slurm.h names it without
    /// declaring it (it lives in slurm_protocol_defs.h, which Debian does
    /// not ship); libslurm exports it, as `nm -D libslurm.so` shows.
    pub fn slurm_free_will_run_response_msg(msg: *mut will_run_response_msg_t);

    /// A job state as squeue prints it (`COMPLETING`, `PENDING`, ...): the
    /// base state with its flags. Exported by libslurm, declared only in
    /// slurm_protocol_defs.h (as `job_state_string`); a static string.
    pub fn slurm_job_state_string(state: u32) -> *const std::ffi::c_char;

    /// A `state_reason` (`enum job_state_reason`) as squeue prints it
    /// (`Resources`, `JobHeldUser`, `None`, ...); a static string, declared
    /// like `slurm_job_state_string`.
    pub fn slurm_job_reason_string(reason: u32) -> *const std::ffi::c_char;
}

/// SLURM 22.05's `log_options_t` (src/common/log.h, not installed): three
/// levels and flags, 16 bytes, passed in two registers. `raw` exists in some
/// releases and is padding in others; it is always false here.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct log_options_t {
    pub stderr_level: u32,
    pub syslog_level: u32,
    pub logfile_level: u32,
    pub prefix_level: bool,
    pub buffered: bool,
    pub raw: bool,
}

/// `log_level_t` values.
pub const LOG_LEVEL_QUIET: u32 = 0;
pub const LOG_LEVEL_INFO: u32 = 3;

extern "C" {
    /// Sends libslurm's own log (what sbatch prints as `sbatch: error: ...`)
    /// to `fp`, which must wrap a real descriptor (libslurm calls fileno).
    /// Exported by libslurm, declared in its private log.h.
    pub fn slurm_log_alter_with_fp(opts: log_options_t, facility: u32, fp: *mut std::ffi::c_void) -> i32;
}
