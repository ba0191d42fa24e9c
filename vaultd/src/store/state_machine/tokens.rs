//! Applies the access-token commands: tokens created and revoked; a subject's own tokens
//! go when it is forgotten. Only the SHA-256 of a token's secret is stored.

use uuid::Uuid;

use super::{read, write, Outcome};
use crate::auth::Scope;
use crate::store::command::{Applied, Rejection};
use crate::store::keys;
use crate::store::records::AccessTokenRecord;
use crate::store::staged::Staged;
use crate::store::StoreError;

pub(super) fn create(staged: &mut Staged, token: &AccessTokenRecord) -> Result<Outcome, StoreError> {
    let key = keys::token(&token.secret_hash);
    if staged.contains(&key)? {
        return Ok(Err(Rejection::Exists));
    }
    write(staged, key, token)?;
    Ok(Ok(Applied::Done))
}

/// Revokes the token with this id and secret hash.
pub(super) fn revoke(staged: &mut Staged, id: &str, secret_hash: &[u8; 32]) -> Result<Outcome, StoreError> {
    let key = keys::token(secret_hash);
    Ok(match read::<AccessTokenRecord>(staged, &key)? {
        Some(token) if token.id == *id => {
            staged.remove(key)?;
            Ok(Applied::Done)
        }
        _ => Err(Rejection::TokenNotFound),
    })
}

/// Retires the root token, unless no other token could administer tokens afterwards.
pub(super) fn retire_root(staged: &mut Staged) -> Result<Outcome, StoreError> {
    let admin = Scope::tokens_admin();
    let mut another_admin = false;
    for key in staged.keys_with_prefix(&[keys::TOKEN])? {
        if let Some(token) = read::<AccessTokenRecord>(staged, &key)? {
            another_admin |= token.subject.is_none()
                && token.scopes.iter().filter_map(|s| s.parse::<Scope>().ok()).any(|s| s.covers(&admin));
        }
    }
    if !another_admin {
        return Ok(Err(Rejection::NoOtherAdmin));
    }
    write(staged, keys::meta(keys::ROOT_RETIRED), &true)?;
    Ok(Ok(Applied::Done))
}

/// Removes the subject tokens of `subject` (it is being forgotten).
pub(super) fn remove_all_of(staged: &mut Staged, subject: &Uuid) -> Result<(), StoreError> {
    for key in staged.keys_with_prefix(&[keys::TOKEN])? {
        if read::<AccessTokenRecord>(staged, &key)?.is_some_and(|t| t.subject == Some(*subject)) {
            staged.remove(key)?;
        }
    }
    Ok(())
}
