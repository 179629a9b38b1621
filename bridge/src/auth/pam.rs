//! Proof of a Unix account: its own password, checked by the machine's PAM
//! stack (`pam_authenticate`, then `pam_acct_mgmt` for locked and expired
//! accounts) under the bridge's service name (`/etc/pam.d/odyssey-bridge`,
//! shipped in `bridge/pam.d/`). Runs on the credential pool: pam_unix
//! sleeps about two seconds after a wrong password, by design.
//!
//! Written against libpam's C API (Linux-PAM, `security/pam_appl.h`) rather
//! than the `pam` crate: its `pam-sys` generates bindings with bindgen 0.69
//! without libclang's runtime loading, which breaks as soon as another
//! build dependency of the workspace (mpi-sys) turns clang-sys's `runtime`
//! feature on. Five functions and one callback are all it takes.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use super::pool::{Busy, CredentialPool};

#[derive(Debug, thiserror::Error)]
pub enum PamError {
    /// Wrong password, unknown account, locked or expired: one answer for all,
    /// so the reply does not tell which names exist.
    #[error("PAM refused: {0}")]
    Denied(String),
    #[error("PAM service {service:?} cannot start: {reason}")]
    Unavailable { service: String, reason: String },
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Checks `password` for Unix account `user` with PAM service `service`.
pub async fn authenticate(pool: &CredentialPool, service: &str, user: &str, password: String) -> Result<(), PamError> {
    let (service, user) = (service.to_owned(), user.to_owned());
    pool.run(move || authenticate_blocking(&service, &user, &password)).await?
}

// Linux-PAM constants (security/_pam_types.h).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type Converse = extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Converse,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(service: *const c_char, user: *const c_char, conv: *const PamConv, pamh: *mut *mut c_void) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
}

/// What the conversation answers: the user name to an echoed prompt, the
/// password to a hidden one.
struct Answers {
    user: CString,
    password: CString,
}

/// PAM's conversation callback. Every response string is `malloc`ed, since
/// PAM frees them; informational messages get no response.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: PAM passes back the `appdata_ptr` given to pam_start, which
    // points at an `Answers` alive for the whole pam_start..pam_end span.
    let answers = unsafe { &*(appdata as *const Answers) };
    let n = num_msg as usize;
    // SAFETY: calloc of n zeroed responses; PAM frees the array.
    let replies = unsafe { nix::libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for idx in 0..n {
        // SAFETY: Linux-PAM passes `msg` as an array of `num_msg` pointers.
        let message = unsafe { &**msg.add(idx) };
        let answer = match message.msg_style {
            PAM_PROMPT_ECHO_OFF => Some(&answers.password),
            PAM_PROMPT_ECHO_ON => Some(&answers.user),
            _ => None,
        };
        if let Some(answer) = answer {
            // SAFETY: strdup copies a NUL-terminated string into malloc'ed
            // memory; `replies` has `n` zeroed slots.
            unsafe { (*replies.add(idx)).resp = nix::libc::strdup(answer.as_ptr()) };
        }
    }
    // SAFETY: `resp` is PAM's out-pointer for the array.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

fn authenticate_blocking(service: &str, user: &str, password: &str) -> Result<(), PamError> {
    let unavailable = |reason: String| PamError::Unavailable { service: service.to_owned(), reason };
    let (c_service, c_user) = (
        CString::new(service).map_err(|_| unavailable("NUL in service name".into()))?,
        CString::new(user).map_err(|_| PamError::Denied("NUL in user name".into()))?,
    );
    let answers = Answers {
        user: c_user.clone(),
        password: CString::new(password).map_err(|_| PamError::Denied("NUL in password".into()))?,
    };
    let conv = PamConv { conv: converse, appdata_ptr: &answers as *const Answers as *mut c_void };
    let mut handle: *mut c_void = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `conv` and `answers`
    // outlive the handle, which pam_end closes below on every path.
    let started = unsafe { pam_start(c_service.as_ptr(), c_user.as_ptr(), &conv, &mut handle) };
    if started != PAM_SUCCESS || handle.is_null() {
        return Err(unavailable(format!("pam_start returned {started}")));
    }
    let describe = |code: c_int| {
        // SAFETY: pam_strerror returns a static string for any code.
        let text = unsafe { pam_strerror(handle, code) };
        if text.is_null() {
            code.to_string()
        } else {
            // SAFETY: non-null, NUL-terminated, static.
            unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: `handle` came from pam_start and is not yet ended.
    let mut status = unsafe { pam_authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
    let result = if status != PAM_SUCCESS {
        Err(PamError::Denied(describe(status)))
    } else {
        // SAFETY: as above.
        status = unsafe { pam_acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
        if status == PAM_SUCCESS {
            Ok(())
        } else {
            Err(PamError::Denied(describe(status)))
        }
    };
    // SAFETY: ends the handle started above, once.
    unsafe { pam_end(handle, status) };
    result
}
