//! Bounds on what one request can make the vault build and store. A small JSON patch can
//! copy a document into itself again and again, doubling it each time; without bounds, an
//! 800-byte request grew a profile to hundreds of MB and took the node down. So a patch has
//! at most [`MAX_PATCH_OPERATIONS`] operations, a document nests at most [`MAX_DEPTH`]
//! deep, and a stored record (profile, app record, session) encodes to at most the vault's
//! `max_record_bytes` — checked while a patch applies, after every operation, and once
//! more where every record is encoded for sealing.

use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{VaultError, VaultResult};

/// Operations in one RFC 6902 patch.
pub(crate) const MAX_PATCH_OPERATIONS: usize = 100;
/// Levels of objects and arrays in a stored document (the top-level object is level 1).
pub(crate) const MAX_DEPTH: usize = 32;
/// Requests one subject may have waiting for a DPO at once.
pub(crate) const MAX_OPEN_REQUESTS: usize = 100;
/// App records, sessions and shares (each) a subject's own token may start for its
/// subject: past it, the token may change those there are but not start new ones (staff
/// tokens may). The person cannot fill the disk through their own token.
pub(crate) const MAX_STARTED_BY_SUBJECT_TOKEN: usize = 100;

/// Locks that make a subject token's cap check and the write it guards one step per
/// subject on this node: concurrent requests cannot all pass the same check. (Through
/// several nodes at once a person can still exceed a cap by the requests in flight.)
pub(crate) struct StartLocks([tokio::sync::Mutex<()>; 64]);

impl Default for StartLocks {
    fn default() -> Self {
        Self(std::array::from_fn(|_| tokio::sync::Mutex::new(())))
    }
}

impl StartLocks {
    /// Held by `caller` while it checks and writes, when it is a subject token.
    pub(crate) async fn hold(
        &self,
        caller: &crate::auth::Caller,
        subject: &uuid::Uuid,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        caller.subject?;
        let stripe =
            subject.as_bytes().iter().fold(0usize, |sum, byte| sum.wrapping_mul(31).wrapping_add(*byte as usize));
        Some(self.0[stripe % self.0.len()].lock().await)
    }
}

/// Refuses a document nested deeper than [`MAX_DEPTH`] or whose JSON encoding is longer
/// than `max_bytes`, walking it without encoding it (counting what the encoding takes).
pub(crate) fn check_document(document: &Value, what: &'static str, max_bytes: usize) -> VaultResult<()> {
    let mut budget = max_bytes;
    spend(document, 1, &mut budget).map_err(|excess| excess.error(what, max_bytes))
}

/// Encodes a record for sealing, within the bounds of [`check_document`].
pub(crate) fn encode_record(document: &Value, what: &'static str, max_bytes: usize) -> VaultResult<Zeroizing<Vec<u8>>> {
    check_document(document, what, max_bytes)?;
    encode(document, what, max_bytes)
}

/// [`encode_record`] for a record held as its members.
pub(crate) fn encode_object(
    members: &Map<String, Value>,
    what: &'static str,
    max_bytes: usize,
) -> VaultResult<Zeroizing<Vec<u8>>> {
    let mut budget = max_bytes;
    spend_members(members, 1, &mut budget).map_err(|excess| excess.error(what, max_bytes))?;
    encode(members, what, max_bytes)
}

fn encode(document: &impl Serialize, what: &'static str, max_bytes: usize) -> VaultResult<Zeroizing<Vec<u8>>> {
    let encoded =
        Zeroizing::new(serde_json::to_vec(document).map_err(|_| VaultError::bad_request("record is not valid JSON"))?);
    if encoded.len() > max_bytes {
        return Err(Excess::Size.error(what, max_bytes));
    }
    Ok(encoded)
}

enum Excess {
    Size,
    Depth,
}

impl Excess {
    fn error(self, what: &'static str, max_bytes: usize) -> VaultError {
        match self {
            Excess::Size => VaultError::RecordTooLarge { what, limit: max_bytes },
            Excess::Depth => VaultError::bad_request(format!("the {what} nests deeper than {MAX_DEPTH} levels")),
        }
    }
}

/// Takes `value`'s encoded length from `budget`, failing as soon as it runs out or the
/// nesting passes [`MAX_DEPTH`]; so the walk costs at most the budget, whatever the size.
fn spend(value: &Value, depth: usize, budget: &mut usize) -> Result<(), Excess> {
    let mut take = |bytes: usize| budget.checked_sub(bytes).map(|left| *budget = left).ok_or(Excess::Size);
    match value {
        Value::Null | Value::Bool(true) => take(4),
        Value::Bool(false) => take(5),
        Value::Number(number) => take(number.to_string().len()),
        Value::String(text) => take(encoded_len(text)),
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(Excess::Depth);
            }
            take(2 + items.len().saturating_sub(1))?;
            items.iter().try_for_each(|item| spend(item, depth + 1, budget))
        }
        Value::Object(members) => spend_members(members, depth, budget),
    }
}

fn spend_members(members: &Map<String, Value>, depth: usize, budget: &mut usize) -> Result<(), Excess> {
    if depth > MAX_DEPTH {
        return Err(Excess::Depth);
    }
    let mut take = |bytes: usize| budget.checked_sub(bytes).map(|left| *budget = left).ok_or(Excess::Size);
    // Braces, a colon per member, commas between them.
    take(2 + members.len() + members.len().saturating_sub(1))?;
    members.iter().try_for_each(|(key, item)| {
        budget.checked_sub(encoded_len(key)).map(|left| *budget = left).ok_or(Excess::Size)?;
        spend(item, depth + 1, budget)
    })
}

/// A string's length in JSON: quotes, and escapes for quotes, backslashes and controls.
fn encoded_len(text: &str) -> usize {
    2 + text
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if c.is_control() && (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_walk_counts_what_the_encoding_takes() {
        for value in [
            json!({"a": "b\"c\\d\ne\u{1}f", "n": [1, -2.5, null, true, false, {"x": []}], "é": "ü€𝄞"}),
            json!({}),
            json!({"k": 12345678901234567890u64}),
        ] {
            let encoded = serde_json::to_vec(&value).unwrap().len();
            assert!(check_document(&value, "profile", encoded).is_ok(), "{value}");
            assert!(check_document(&value, "profile", encoded - 1).is_err(), "{value}");
        }
    }

    #[test]
    fn too_large_and_too_deep_documents_are_refused() {
        let big = json!({"a": "x".repeat(100)});
        assert!(matches!(check_document(&big, "profile", 50), Err(VaultError::RecordTooLarge { limit: 50, .. })));
        assert!(matches!(encode_record(&big, "profile", 50), Err(VaultError::RecordTooLarge { .. })));
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert!(check_document(&json!({"d": deep.clone()}), "profile", 1 << 20).is_err());
        assert!(check_document(&deep, "profile", 1 << 20).is_ok(), "{MAX_DEPTH} levels are allowed");
    }
}
