//! `GET /v1/sys/backup` (a backup of the whole vault, streamed) and `GET /v1/sys/erasures`
//! (the erasure ledger, which backups ship beside themselves).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use super::{doc, ok_body};
use crate::auth::Caller;
use crate::error::{VaultError, VaultResult};
use crate::vault::Vault;

/// Bytes read from a part per chunk sent.
const CHUNK: usize = 256 * 1024;
const MAX_ERASURES: usize = 10_000;

#[utoipa::path(
    get,
    path = "/v1/sys/backup",
    operation_id = "takeBackup",
    tag = "backup",
    summary = "Take a backup of the whole vault",
    description = r#"Requires scope `backup:read` (not a subject token). After a read barrier this node takes a fresh snapshot — everything acknowledged before the request is in it — and streams it: first the manifest as one line of JSON (format, cluster id, KEK labels, last applied log index, subjects, the erasure ledger's next sequence number, audit events and head, and the size and SHA-256 of each part), then the bytes of each part in the manifest's order: `state.bin` (the state as a snapshot holds it) and `audit.bin` (the audit trail up to the cut). Everything is as encrypted as at rest. Audited as `backup-read`. One backup at a time per node: 409 while another is being sent. `vaultd backup` stores it."#,
    extensions(("x-required-scope" = json!("backup:read"))),
    responses(
        (status = 200, description = r#"The manifest line, then the parts"#, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn backup(vault: web::Data<Vault>, caller: Caller) -> VaultResult<HttpResponse> {
    let backup = vault.backup(&caller).await?;
    let mut line = serde_json::to_vec(&backup.manifest).map_err(|_| VaultError::Unavailable("backup"))?;
    line.push(b'\n');
    let head = stream::once(async move { Ok::<_, actix_web::Error>(Bytes::from(line)) });
    // The permit goes with the stream: the next backup may start once this one is sent.
    let permit = backup.permit;
    let parts = stream::iter(backup.parts).flat_map(move |(file, len)| {
        let _held = &permit;
        part_chunks(file, len)
    });
    Ok(HttpResponse::Ok().content_type("application/octet-stream").streaming(head.chain(parts)))
}

/// The first `len` bytes of `file`, in chunks read off the async workers.
fn part_chunks(file: Arc<File>, len: u64) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    stream::unfold(Some(0u64), move |offset| {
        let file = Arc::clone(&file);
        async move {
            let offset = offset?;
            if offset >= len {
                return None;
            }
            let want = CHUNK.min(usize::try_from(len - offset).unwrap_or(CHUNK));
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                let read = file.read_at(&mut buf, offset)?;
                buf.truncate(read);
                Ok::<_, std::io::Error>(buf)
            })
            .await;
            match read {
                Ok(Ok(buf)) if !buf.is_empty() => {
                    let next = offset + buf.len() as u64;
                    Some((Ok(Bytes::from(buf)), Some(next)))
                }
                // A part that cannot be read in full ends the response early: the client
                // sees a short part, whose checksum cannot match.
                _ => {
                    tracing::error!("a backup part could not be read; the backup stream is cut short");
                    Some((Err(actix_web::error::ErrorInternalServerError("backup cut short")), None))
                }
            }
        }
    })
}

/// `?after=&limit=`
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ErasuresQuery {
    /// Entries after this sequence number (0: from the first)
    #[serde(default)]
    #[param(minimum = 0)]
    after: i64,
    /// Entries to return at most
    #[serde(default = "default_limit")]
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: usize,
}

fn default_limit() -> usize {
    1000
}

#[utoipa::path(
    get,
    path = "/v1/sys/erasures",
    operation_id = "listErasures",
    tag = "backup",
    summary = "The erasure ledger",
    description = r#"Requires scope `backup:read` (not a subject token). Every erasure — forget-me (of a subject, or of an identifier kept with agreements before sign-up), an ended expiration, retention's `delete`, `dropFields`, `pseudonymize` and `deleteApp`, an app record's deletion — and every access token revocation, in the order applied: subject token, kind, the app or the fields (or the revoked token's id, or the identifier's blind-index entry), time; never personal data. `next` is the sequence number the next entry will take. A restored backup applies the entries newer than itself. A page with entries is audited as `ledger-read`."#,
    extensions(("x-required-scope" = json!("backup:read"))),
    params(ErasuresQuery),
    responses(
        (
            status = 200,
            description = r#"A page of the ledger"#,
            body = doc::ErasuresReply,
            content_type = "application/json",
            example = json!({"status": "ok", "clusterId": "0b6f3c3e-5a4f-4c1e-9a55-3d1b2c4e5f60", "erasures": [{"seq": 1, "time": 1_765_100_000_000_u64, "token": "7c0f9c36-3a5e-4b8e-9d1e-2f4c5b6a7d8e", "kind": "dropFields", "fields": ["phone"]}], "next": 2})
        ),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable)
    ),
)]
pub async fn erasures(vault: web::Data<Vault>, caller: Caller, req: HttpRequest) -> VaultResult<HttpResponse> {
    let query: ErasuresQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| VaultError::bad_request(format!("query takes after=<n> and limit=<1-{MAX_ERASURES}>")))?;
    if query.limit == 0 || query.limit > MAX_ERASURES {
        return Err(VaultError::bad_request(format!("limit must be between 1 and {MAX_ERASURES}")));
    }
    let after = u64::try_from(query.after).map_err(|_| VaultError::bad_request("after must not be negative"))?;
    ok_body(&vault.erasures(&caller, after, query.limit).await?)
}
