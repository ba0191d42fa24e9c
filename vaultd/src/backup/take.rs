//! `vaultd backup`: takes a backup through a vault's API and stores it, then ships the
//! erasure ledger entries the destination does not have yet (`ship_ledger`, also run on
//! its own to keep the ledger current between backups).

use std::path::Path;
use std::time::Duration;

use actix_web::web::Bytes;
use sha2::{Digest, Sha256};
use strongroom_admin_api::backup::{ErasurePage, Manifest, TakeReport};
use zeroize::Zeroizing;

use super::{backup_id, BackupError, Destination};
use crate::api_client::{ca_certificates, with_causes};
use crate::vault::backup::{AUDIT_PART, STATE_PART};

/// The manifest line is small; anything longer is not a backup stream.
const MAX_MANIFEST: usize = 1 << 20;
/// Ledger entries fetched per request.
const LEDGER_PAGE: usize = 10_000;
/// Part uploads in flight at once.
const UPLOADS_IN_FLIGHT: usize = 4;

/// A vault's API, as the backup commands call it.
pub struct VaultApi {
    client: reqwest::Client,
    base: String,
    token: Zeroizing<String>,
}

impl VaultApi {
    /// `vault` is any node's base URL; `token_file` holds a token with `backup:read`;
    /// `ca_file` is the CA to trust for an `https://` vault.
    pub fn new(vault: &str, token_file: &Path, ca_file: Option<&Path>, timeout: Duration) -> Result<Self, BackupError> {
        let token = crate::config::read_secret_file(token_file).map_err(|e| BackupError::Invalid(e.to_string()))?;
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).read_timeout(timeout);
        if let Some(path) = ca_file {
            for certificate in ca_certificates(path).map_err(BackupError::Invalid)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| BackupError::Unreachable(vault.to_string(), with_causes(&e)))?;
        Ok(VaultApi { client, base: vault.trim_end_matches('/').to_string(), token })
    }

    /// A successful answer to `GET path`, or the vault's refusal.
    async fn get(&self, path: &str) -> Result<reqwest::Response, BackupError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .header("X-Bunker-Token", self.token.as_str())
            .send()
            .await
            .map_err(|e| BackupError::Unreachable(self.base.clone(), with_causes(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("no message").to_string();
        Err(BackupError::Refused(status.as_u16(), message))
    }

    async fn erasures(&self, after: u64) -> Result<ErasurePage, BackupError> {
        let response = self.get(&format!("/v1/sys/erasures?after={after}&limit={LEDGER_PAGE}")).await?;
        response.json().await.map_err(|e| BackupError::Refusal(format!("the erasure ledger answer is not one: {e}")))
    }
}

/// Takes a backup and stores it under its id; the manifest goes last, so a backup cut
/// short is never listed. Then ships the ledger.
pub async fn take(api: &VaultApi, destination: &Destination) -> Result<TakeReport, BackupError> {
    let mut stream = Chunks { response: api.get("/v1/sys/backup").await?, pending: Bytes::new() };
    let manifest = stream.manifest().await?;
    let names: Vec<&str> = manifest.parts.iter().map(|p| p.name.as_str()).collect();
    if names != [STATE_PART, AUDIT_PART] {
        return Err(BackupError::Refusal(format!(
            "the vault sent parts {names:?}; this vaultd expects state and audit"
        )));
    }
    let id = backup_id(&manifest);
    for part in &manifest.parts {
        let mut upload = destination.upload(&destination.part(&id, &part.name)).await?;
        let mut hasher = Sha256::new();
        let mut remaining = part.bytes;
        while remaining > 0 {
            let chunk = match stream.next(remaining).await {
                Ok(chunk) => chunk,
                Err(error) => {
                    drop(upload.abort().await);
                    return Err(error);
                }
            };
            hasher.update(&chunk);
            upload.wait_for_capacity(UPLOADS_IN_FLIGHT).await.map_err(|e| store_error(destination, e))?;
            upload.write(&chunk);
            remaining -= chunk.len() as u64;
        }
        if crate::audit::hex(&hasher.finalize()) != part.sha256 {
            drop(upload.abort().await);
            return Err(BackupError::Corrupt(format!(
                "{} arrived with another checksum than its manifest's",
                part.name
            )));
        }
        upload.finish().await.map_err(|e| store_error(destination, e))?;
    }
    let encoded = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    destination.put(&destination.part(&id, "manifest.json"), encoded).await?;
    // The backup is complete from here on: a failure to ship the ledger is reported, not
    // made the backup's (a retried backup would only store another one).
    let (shipped, ledger_error) = match ship_ledger(api, destination).await {
        Ok(shipped) => (shipped, None),
        Err(error) => {
            tracing::warn!(%error, "the backup is stored, but the erasure ledger could not be shipped");
            (0, Some(error.to_string()))
        }
    };
    Ok(TakeReport {
        backup: id,
        destination: destination.name.clone(),
        subjects: manifest.subjects,
        bytes: manifest.parts.iter().map(|p| p.bytes).sum(),
        last_applied_index: manifest.last_applied_index,
        ledger_entries_shipped: shipped,
        ledger_error,
    })
}

/// Ships the ledger entries the destination lacks, as one segment per page; returns how
/// many were shipped.
pub async fn ship_ledger(api: &VaultApi, destination: &Destination) -> Result<u64, BackupError> {
    // A page past the end names the vault without reading (or auditing) any entry.
    let cluster = api.erasures(i64::MAX as u64).await?.cluster_id;
    let mut after = destination.ledger_shipped(&cluster).await?;
    let mut shipped = 0;
    loop {
        let page = api.erasures(after).await?;
        let Some(last) = page.erasures.last().map(|row| row.seq) else { break };
        destination.ship_ledger(&cluster, &page.erasures).await?;
        shipped += page.erasures.len() as u64;
        if page.erasures.len() < LEDGER_PAGE {
            break;
        }
        after = last;
    }
    Ok(shipped)
}

fn store_error(destination: &Destination, error: object_store::Error) -> BackupError {
    BackupError::Store(destination.name.clone(), error.to_string())
}

/// The backup stream, read in the sizes its parts need.
struct Chunks {
    response: reqwest::Response,
    pending: Bytes,
}

impl Chunks {
    async fn fill(&mut self) -> Result<(), BackupError> {
        if self.pending.is_empty() {
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Err(BackupError::Refusal("the vault ended the backup stream early".into())),
                Err(e) => {
                    return Err(BackupError::Refusal(format!("the backup stream broke off: {}", with_causes(&e))))
                }
            }
        }
        Ok(())
    }

    /// The manifest line.
    async fn manifest(&mut self) -> Result<Manifest, BackupError> {
        let mut line = Vec::new();
        loop {
            self.fill().await?;
            match self.pending.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    line.extend_from_slice(&self.pending.split_to(end + 1)[..end]);
                    break;
                }
                None => line.extend_from_slice(&std::mem::take(&mut self.pending)),
            }
            if line.len() > MAX_MANIFEST {
                return Err(BackupError::Refusal("the backup stream does not start with a manifest".into()));
            }
        }
        serde_json::from_slice(&line).map_err(|e| BackupError::Refusal(format!("the backup manifest is not one: {e}")))
    }

    /// The next bytes of the stream, at most `limit`.
    async fn next(&mut self, limit: u64) -> Result<Bytes, BackupError> {
        self.fill().await?;
        let take = self.pending.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(self.pending.split_to(take))
    }
}
