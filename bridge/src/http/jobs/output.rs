//! `GET /v1/jobs/{id}/output`: a chunk of a job's stdout or stderr from an
//! offset, or (`follow=true`) Server-Sent Events until the job ends. The
//! file is opened as its owner could (`owned_file`), off the async threads.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{job_id, visible_job};
use crate::http::error::ApiError;
use crate::http::{ApiQuery, AppState, AuthUser};
use crate::jobspec;
use crate::owned_file::{self, OwnedFileError};
use crate::slots::{KeyedSlots, Slot};
use crate::store::jobs;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputQuery {
    stream: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
    #[serde(default)]
    follow: bool,
}

/// Largest output chunk per request.
const MAX_OUTPUT_CHUNK: u64 = 4 * 1024 * 1024;

/// Opens a job's output file as only its owner could (`owned_file`), off
/// the async threads.
async fn open_output(path: String, uid: u32) -> Result<tokio::fs::File, ApiError> {
    let opened = tokio::task::spawn_blocking(move || owned_file::open_owned(&path, uid, None))
        .await
        .map_err(anyhow::Error::from)?;
    match opened {
        Ok(file) => Ok(tokio::fs::File::from_std(file)),
        Err(OwnedFileError::NotFound { .. }) => Err(ApiError::NotFound("the job has written no output yet".into())),
        Err(OwnedFileError::Io { source, .. }) => {
            Err(ApiError::Forbidden(format!("cannot read the output file: {source}")))
        }
        Err(_) => Err(ApiError::Forbidden("the output path is not a regular file owned by the job's user".into())),
    }
}

pub(super) async fn get_output(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OutputQuery>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    let pattern = match query.stream.as_deref().unwrap_or("stdout") {
        "stdout" => job.stdout_path.clone(),
        "stderr" => job.stderr_path.clone(),
        other => return Err(ApiError::invalid("stream", format!("must be stdout or stderr, not {other:?}"))),
    };
    let limit = query.limit.unwrap_or(MAX_OUTPUT_CHUNK);
    if limit == 0 || limit > MAX_OUTPUT_CHUNK {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_OUTPUT_CHUNK}")));
    }
    let slurm_id = job.slurm_job_id.ok_or_else(|| ApiError::NotFound("the job has not started".into()))?;
    let path = pattern
        .and_then(|p| jobspec::resolve_output(&p, slurm_id, &job.name, &job.unix_user))
        .ok_or_else(|| ApiError::NotFound("this job writes one output file per task or array element".into()))?;
    let offset = query.offset.unwrap_or(0);
    if query.follow {
        let slot = take_follow_slot(&state.follow_slots, caller.user.id, state.settings.limits.max_follows_per_user)?;
        return Ok(follow(state, job.id, path, job.uid, offset, slot).into_response());
    }
    let mut file = open_output(path, job.uid).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(anyhow::Error::from)?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).await.map_err(anyhow::Error::from)?;
    let next = offset + buf.len() as u64;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::HeaderName::from_static("x-next-offset"), next.to_string()),
        ],
        buf,
    )
        .into_response())
}

/// Server-Sent Events: `output` events with new bytes as they appear, then
/// one `end` event once the job has finished and everything was sent. The
/// producer ends as soon as the client goes away (the channel closes), and
/// holds the user's stream slot until then.
fn follow(
    state: AppState,
    id: i64,
    path: String,
    uid: u32,
    mut offset: u64,
    slot: Slot<i64>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut stopping = state.stopping.clone();
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        loop {
            // The read-only connections: a follower never queues behind writes.
            let finished =
                matches!(state.store.read(move |conn| jobs::by_id(conn, id)).await, Ok(Some(ref j)) if j.finished);
            let chunk = match open_output(path.clone(), uid).await {
                Ok(file) => read_from(file, offset).await.unwrap_or_default(),
                Err(ApiError::NotFound(_)) => Vec::new(),
                Err(e) => {
                    let _ = tx.send(SseEvent::default().event("error").data(e.to_string())).await;
                    return;
                }
            };
            // An event carries text: a character the job has only half
            // written (or the read cut) waits for its other bytes, unless
            // the job has ended; the event's id is the offset after it.
            let whole = if finished { chunk.len() } else { complete_utf8_prefix(&chunk) };
            if whole > 0 {
                offset += whole as u64;
                let text = String::from_utf8_lossy(&chunk[..whole]);
                let event = SseEvent::default().event("output").id(offset.to_string()).data(text);
                if tx.send(event).await.is_err() {
                    return;
                }
                continue;
            }
            if finished {
                let _ = tx.send(SseEvent::default().event("end").data(offset.to_string())).await;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = tx.closed() => return,
                // The bridge is stopping: the client reconnects (to the next
                // bridge) with the offset of the last event.
                () = stopping.wait() => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The length of `bytes` without a UTF-8 character cut off at its end (at
/// most 3 bytes shorter). Bytes that are not UTF-8 at all are left to the
/// lossy decoding: only a sequence that could still complete waits.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=len.min(3) {
        let byte = bytes[len - back];
        if byte & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for its lead
        }
        let needs = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needs > back { len - back } else { len };
    }
    len
}

/// Open output streams per user, capped (`max_follows_per_user`).
pub type FollowSlots = KeyedSlots<i64>;

/// 429 once the user holds `max` open streams.
fn take_follow_slot(slots: &FollowSlots, user_id: i64, max: usize) -> Result<Slot<i64>, ApiError> {
    slots.try_take(user_id, max).ok_or_else(|| ApiError::TooManyRequests {
        detail: format!("at most {max} output streams per user at once; close one first"),
        retry_after: 1,
    })
}

async fn read_from(mut file: tokio::fs::File, offset: u64) -> std::io::Result<Vec<u8>> {
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    file.take(64 * 1024).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|event| event.map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::complete_utf8_prefix;

    #[test]
    fn a_character_cut_at_the_end_waits_for_its_other_bytes() {
        let whole = "one é € 𝄞";
        let text = whole.as_bytes();
        // Every cut of the text: the prefix sent is whole characters, and
        // what is held back is only the cut character's first bytes.
        for cut in 0..=text.len() {
            let sent = complete_utf8_prefix(&text[..cut]);
            assert!(std::str::from_utf8(&text[..sent]).is_ok(), "cut {cut}");
            assert!(cut - sent <= 3 && (sent == cut || !whole.is_char_boundary(cut)), "cut {cut}: {sent}");
        }
        assert_eq!(complete_utf8_prefix(b"ab\xc3"), 2);
        assert_eq!(complete_utf8_prefix(b"ab\xf0\x9d\x84"), 2);
        // Not UTF-8 at all: nothing to wait for.
        assert_eq!(complete_utf8_prefix(b"ab\xff"), 3);
        assert_eq!(complete_utf8_prefix(b"\x80\x80\x80\x80"), 4);
    }
}
