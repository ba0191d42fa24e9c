//! Read-modify-write changes: applying a merge object or JSON patch to a stored
//! document, and retrying with a pause when a concurrent write got there first.

use super::*;
use crate::vault::limits;

/// Applies a PUT body to a JSON object: an object is an RFC 7396 merge, an array an
/// RFC 6902 patch, applied to a copy one operation at a time so that no operation can
/// grow the `what` past `max_bytes` (see `limits`). The result must still be an object;
/// on any error `current` is unchanged.
pub(crate) fn apply_update(
    current: &mut Value,
    update: &Value,
    what: &'static str,
    max_bytes: usize,
) -> VaultResult<()> {
    check_update(update)?;
    let mut updated = current.clone();
    match update {
        Value::Object(_) => {
            json_patch::merge(&mut updated, update);
            limits::check_document(&updated, what, max_bytes)?;
        }
        Value::Array(_) => {
            let patch: json_patch::Patch =
                serde_json::from_value(update.clone()).map_err(|_| VaultError::bad_request("malformed JSON patch"))?;
            for operation in &patch.0 {
                json_patch::patch_unsafe(&mut updated, std::slice::from_ref(operation))
                    .map_err(|_| VaultError::bad_request("JSON patch cannot be applied"))?;
                limits::check_document(&updated, what, max_bytes)?;
            }
        }
        _ => return Err(VaultError::bad_request("body must be a JSON object (merge) or array (JSON patch)")),
    }
    if !updated.is_object() {
        return Err(VaultError::bad_request("the record must remain a JSON object"));
    }
    *current = updated;
    Ok(())
}

/// Checks that a PUT body can be applied to a JSON object at all (a merge object, or a
/// patch array that parses), without applying it. An empty one (`{}`, `[]`) changes
/// nothing and is refused, as Databunker refuses it.
pub(crate) fn check_update(update: &Value) -> VaultResult<()> {
    match update {
        Value::Object(map) if map.is_empty() => Err(VaultError::bad_request("the change is empty")),
        Value::Array(ops) if ops.is_empty() => Err(VaultError::bad_request("the change is empty")),
        Value::Array(ops) if ops.len() > limits::MAX_PATCH_OPERATIONS => Err(VaultError::bad_request(format!(
            "a JSON patch has at most {} operations",
            limits::MAX_PATCH_OPERATIONS
        ))),
        Value::Object(_) => Ok(()),
        Value::Array(_) => serde_json::from_value::<json_patch::Patch>(update.clone())
            .map(drop)
            .map_err(|_| VaultError::bad_request("malformed JSON patch")),
        _ => Err(VaultError::bad_request("body must be a JSON object (merge) or array (JSON patch)")),
    }
}

/// How many times a read-modify-write retries when a concurrent write got there first.
/// Among n writers racing for one record one wins per commit batch, so this bounds how
/// many may race before some get a 409 and must retry themselves.
pub(super) const UPDATE_ATTEMPTS: u32 = 32;

impl Vault {
    /// After a read-modify-write lost a race: waits until this node has applied the write
    /// that won (so the next read sees it), then a short random pause, growing with the
    /// attempt, so racing writers spread over several log entries.
    pub(super) async fn after_conflict(&self, receipt: &Receipt, attempt: u32) -> VaultResult<()> {
        self.cluster.wait_applied(receipt.log_index).await?;
        backoff(attempt).await;
        Ok(())
    }
}

async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap_micros = 200u64 << attempt.min(5);
    let pause = rand::thread_rng().gen_range(0..=cap_micros);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}
