//! Generates bindings for the part of libslurm the bridge calls, from the
//! installed headers (Debian's libslurm-dev), and refuses any SLURM release
//! other than the one the bridge's job-descriptor code is written for: the
//! library has no stable ABI, and `job_desc_msg_t` changes between releases.

use std::path::PathBuf;

/// The release the bridge's `slurm/libslurm.rs` fills descriptors for.
const WRITTEN_FOR: (u32, u32) = (22, 5);

fn main() {
    let include = std::env::var_os("SLURM_INCLUDE_DIR").map(PathBuf::from).unwrap_or_else(|| "/usr/include".into());
    let version_h = include.join("slurm/slurm_version.h");
    println!("cargo:rerun-if-changed={}", version_h.display());
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    let text = std::fs::read_to_string(&version_h).unwrap_or_else(|e| {
        fail(&format!("cannot read {} ({e}): install libslurm-dev (SLURM 22.05)", version_h.display()))
    });
    let number = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define SLURM_VERSION_NUMBER"))
        .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| fail(&format!("no SLURM_VERSION_NUMBER in {}", version_h.display())));
    let (major, minor, micro) = (number >> 16, (number >> 8) & 0xff, number & 0xff);
    if (major, minor) != WRITTEN_FOR {
        fail(&format!(
            "the bridge's libslurm bindings are written for SLURM {}.{:02}, but {} is SLURM {major}.{minor:02}.{micro}: \
             install SLURM {}.{:02}'s libslurm-dev or port bridge/src/slurm/libslurm.rs",
            WRITTEN_FOR.0,
            WRITTEN_FOR.1,
            version_h.display(),
            WRITTEN_FOR.0,
            WRITTEN_FOR.1,
        ));
    }

    let header = include.join("slurm/slurm.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let bindings = bindgen::Builder::default()
        .header(header.display().to_string())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_function("slurm_init")
        .allowlist_function("slurm_api_version")
        .allowlist_function("slurm_init_job_desc_msg")
        .allowlist_function("slurm_submit_batch_job")
        .allowlist_function("slurm_free_submit_response_response_msg")
        .allowlist_function("slurm_job_will_run2")
        .allowlist_function("slurm_strerror")
        .allowlist_function("slurm_get_errno")
        .allowlist_type("will_run_response_msg_t")
        .allowlist_function("slurm_load_jobs")
        .allowlist_function("slurm_load_job")
        .allowlist_function("slurm_free_job_info_msg")
        .allowlist_type("job_info_msg_t")
        .allowlist_var("INFINITE")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("NO_VAL")
        .allowlist_var("NO_VAL16")
        .allowlist_var("MEM_PER_CPU")
        .allowlist_var("JOB_NTASKS_SET")
        .allowlist_var("JOB_CPUS_SET")
        .allowlist_var("JOB_SHARED_NONE")
        .allowlist_var("MAIL_.*")
        .allowlist_type("slurm_err_t")
        .rustified_enum("slurm_err_t")
        // MAIL_* and the JOB_* flags are SLURM_BIT(n): evaluated by clang.
        .clang_macro_fallback()
        .derive_debug(false)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen could not read {}: {e}", header.display())));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(&out).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
    let api = library_api_version();
    println!("cargo:rustc-env=ODYSSEY_SLURM_API_VERSION={api}");
    println!("cargo:rustc-link-lib=slurm");
    println!("cargo:version_number={number}");
}

/// The API version of the libslurm the build links (its libtool version,
/// `libslurm.so.<current>.<revision>.<age>`, which `slurm_api_version()`
/// returns as `current << 16 | revision << 8 | age`).
fn library_api_version() -> u32 {
    let dirs: Vec<PathBuf> = match std::env::var_os("SLURM_LIB_DIR") {
        Some(dir) => vec![dir.into()],
        None => ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    };
    println!("cargo:rerun-if-env-changed=SLURM_LIB_DIR");
    let Some(lib) = dirs.iter().map(|d| d.join("libslurm.so")).find(|p| p.exists()) else {
        fail("no libslurm.so in /usr/lib*: install libslurm-dev (or set SLURM_LIB_DIR)");
    };
    println!("cargo:rustc-link-search=native={}", lib.parent().expect("a file has a directory").display());
    let real = std::fs::canonicalize(&lib).unwrap_or_else(|e| fail(&format!("{}: {e}", lib.display())));
    let name = real.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let parts: Vec<u32> =
        name.strip_prefix("libslurm.so.").unwrap_or_default().split('.').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [current, revision, age] => current << 16 | revision << 8 | age,
        _ => fail(&format!("cannot read libslurm's version from {}", real.display())),
    }
}

/// One clear line, then stop the build.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
