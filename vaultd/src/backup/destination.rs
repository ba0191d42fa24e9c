//! Where backups are kept: a local directory or an S3-compatible bucket (`s3://bucket/prefix`,
//! through `object_store`), laid out as
//!
//! - `backups/<id>/state.bin`, `backups/<id>/audit.bin`, then `backups/<id>/manifest.json`,
//!   written last: a backup is listed only once its manifest is there;
//! - `ledger/<cluster-id>/<first>-<last>.json`: the erasure ledger, shipped in segments
//!   (a JSON array of entries each), never rewritten.
//!
//! Every object is written whole or not at all (an upload that does not complete leaves
//! nothing under the object's name).

use std::path::Path as LocalPath;
use std::str::FromStr;
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use strongroom_admin_api::backup::{ErasureRow, Manifest};

use super::BackupError;

const BACKUPS: &str = "backups";
const LEDGER: &str = "ledger";
const MANIFEST: &str = "manifest.json";

/// A place backups are written to and read from.
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// How the user named it, for messages.
    pub name: String,
}

impl Destination {
    /// Opens `location`: `s3://bucket[/prefix]` (credentials and endpoint from the `AWS_*`
    /// environment variables, or `KEY=value` lines of `credentials_file`), or a local
    /// directory (created if missing).
    pub fn open(location: &str, credentials_file: Option<&LocalPath>) -> Result<Self, BackupError> {
        let store: Arc<dyn ObjectStore> = if location.starts_with("s3://") {
            let mut builder = AmazonS3Builder::from_env().with_url(location);
            if let Some(file) = credentials_file {
                for (key, value) in read_credentials(file)? {
                    let key = AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase())
                        .map_err(|_| BackupError::Invalid(format!("{}: unknown setting {key}", file.display())))?;
                    builder = builder.with_config(key, value.as_str());
                }
            }
            let bucket = builder.build().map_err(|e| BackupError::Store(location.to_string(), e.to_string()))?;
            let prefix = location.trim_start_matches("s3://").split_once('/').map_or("", |(_, prefix)| prefix);
            Arc::new(PrefixStore::new(bucket, prefix.trim_matches('/')))
        } else if location.contains("://") {
            return Err(BackupError::Invalid(format!(
                "{location}: a backup destination is a local directory or s3://bucket/prefix"
            )));
        } else {
            std::fs::create_dir_all(location).map_err(|e| BackupError::Store(location.to_string(), e.to_string()))?;
            let local = LocalFileSystem::new_with_prefix(location)
                .map_err(|e| BackupError::Store(location.into(), e.to_string()))?;
            Arc::new(local)
        };
        Ok(Destination { store, name: location.to_string() })
    }

    fn failed(&self, error: impl std::fmt::Display) -> BackupError {
        BackupError::Store(self.name.clone(), error.to_string())
    }

    pub fn part(&self, id: &str, name: &str) -> Path {
        Path::from_iter([BACKUPS, id, name])
    }

    /// The complete backups (those with a manifest), oldest first.
    pub async fn backups(&self) -> Result<Vec<String>, BackupError> {
        let listed = self.store.list_with_delimiter(Some(&Path::from(BACKUPS))).await;
        let folders = match listed {
            Ok(listed) => listed.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.failed(e)),
        };
        let mut complete = Vec::new();
        for folder in folders {
            let Some(id) = folder.filename().map(str::to_string) else { continue };
            if self.store.head(&self.part(&id, MANIFEST)).await.is_ok() {
                complete.push(id);
            }
        }
        complete.sort();
        Ok(complete)
    }

    /// The backup named `id`, or the newest when `None`.
    pub async fn choose(&self, id: Option<&str>) -> Result<(String, Manifest), BackupError> {
        let id = match id {
            Some(id) => id.to_string(),
            None => self.backups().await?.pop().ok_or_else(|| BackupError::NoBackup(self.name.clone()))?,
        };
        Ok((id.clone(), self.manifest(&id).await?))
    }

    pub async fn manifest(&self, id: &str) -> Result<Manifest, BackupError> {
        let bytes = match self.store.get(&self.part(id, MANIFEST)).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed(e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::NoBackup(format!("{} (no complete backup {id})", self.name)))
            }
            Err(e) => return Err(self.failed(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| BackupError::Corrupt(format!("manifest of {id}: {e}")))
    }

    /// Starts writing an object in parts; it appears only when the upload is finished.
    pub async fn upload(&self, path: &Path) -> Result<WriteMultipart, BackupError> {
        let upload = self.store.put_multipart(path).await.map_err(|e| self.failed(e))?;
        Ok(WriteMultipart::new(upload))
    }

    pub async fn put(&self, path: &Path, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.store.put(path, PutPayload::from(bytes)).await.map(drop).map_err(|e| self.failed(e))
    }

    /// Streams an object into `sink`, chunk by chunk.
    pub async fn read(
        &self,
        path: &Path,
        mut sink: impl FnMut(&[u8]) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let found = match self.store.get(path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::Corrupt(format!("{path} is missing")))
            }
            Err(e) => return Err(self.failed(e)),
        };
        let mut chunks = found.into_stream();
        while let Some(chunk) = chunks.try_next().await.map_err(|e| self.failed(e))? {
            sink(&chunk)?;
        }
        Ok(())
    }

    /// Removes a backup: its manifest first, so that it stops counting at once.
    pub async fn delete(&self, id: &str) -> Result<(), BackupError> {
        self.store.delete(&self.part(id, MANIFEST)).await.map_err(|e| self.failed(e))?;
        let prefix = Path::from_iter([BACKUPS, id]);
        let parts: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(|e| self.failed(e))?;
        for part in parts {
            self.store.delete(&part.location).await.map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    /// The ledger segments shipped for `cluster`, as (first, last) sequence numbers, in order.
    async fn segments(&self, cluster: &str) -> Result<Vec<(u64, u64, Path)>, BackupError> {
        let prefix = Path::from_iter([LEDGER, cluster]);
        let objects: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(objects) => objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.failed(e)),
        };
        let mut segments: Vec<_> = objects
            .into_iter()
            .filter_map(|object| {
                let name = object.location.filename()?.strip_suffix(".json")?.to_string();
                let (first, last) = name.split_once('-')?;
                Some((first.parse().ok()?, last.parse().ok()?, object.location))
            })
            .collect();
        segments.sort_by_key(|(first, _, _)| *first);
        Ok(segments)
    }

    /// The last ledger entry shipped for `cluster` (0: none).
    pub async fn ledger_shipped(&self, cluster: &str) -> Result<u64, BackupError> {
        Ok(self.segments(cluster).await?.iter().map(|(_, last, _)| *last).max().unwrap_or(0))
    }

    /// Ships ledger entries (in order, after those already shipped) as one segment.
    pub async fn ship_ledger(&self, cluster: &str, rows: &[ErasureRow]) -> Result<(), BackupError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { return Ok(()) };
        let path = Path::from_iter([LEDGER, cluster, &format!("{:020}-{:020}.json", first.seq, last.seq)]);
        let bytes = serde_json::to_vec(rows).map_err(|e| BackupError::Invalid(e.to_string()))?;
        self.put(&path, bytes).await
    }

    /// Every shipped ledger entry of `cluster` from sequence number `from` on, in order.
    pub async fn ledger_from(&self, cluster: &str, from: u64) -> Result<Vec<ErasureRow>, BackupError> {
        let mut rows = Vec::new();
        for (_, last, path) in self.segments(cluster).await? {
            if last < from {
                continue;
            }
            let bytes =
                self.store.get(&path).await.map_err(|e| self.failed(e))?.bytes().await.map_err(|e| self.failed(e))?;
            let segment: Vec<ErasureRow> = serde_json::from_slice(&bytes)
                .map_err(|e| BackupError::Corrupt(format!("ledger segment {path}: {e}")))?;
            rows.extend(segment.into_iter().filter(|row| row.seq >= from));
        }
        rows.sort_by_key(|row| row.seq);
        rows.dedup_by_key(|row| row.seq);
        Ok(rows)
    }
}

/// `KEY=value` lines (blank lines and `#` comments skipped), e.g. `AWS_ACCESS_KEY_ID=...`.
fn read_credentials(file: &LocalPath) -> Result<Vec<(String, String)>, BackupError> {
    let text = crate::config::read_secret_file(file).map_err(|e| BackupError::Invalid(e.to_string()))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
                .ok_or_else(|| BackupError::Invalid(format!("{}: lines must be KEY=value", file.display())))
        })
        .collect()
}
