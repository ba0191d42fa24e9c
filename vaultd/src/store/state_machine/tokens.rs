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

/// Revokes the token with this id and secret hash; once the root token is retired, not
/// the last administrator token (nobody could hand out its scopes again).
pub(super) fn revoke(staged: &mut Staged, id: &str, secret_hash: &[u8; 32]) -> Result<Outcome, StoreError> {
    let key = keys::token(secret_hash);
    let Some(token) = read::<AccessTokenRecord>(staged, &key)?.filter(|token| token.id == *id) else {
        return Ok(Err(Rejection::TokenNotFound));
    };
    if staged.contains(&keys::meta(keys::ROOT_RETIRED))?
        && administers_everything(&token)
        && administrators(staged)?.iter().all(|other| other.id == token.id)
    {
        return Ok(Err(Rejection::NoOtherAdmin));
    }
    staged.remove(key)?;
    Ok(Ok(Applied::Done))
}

/// Retires the root token, unless no other token could do all it did afterwards.
pub(super) fn retire_root(staged: &mut Staged) -> Result<Outcome, StoreError> {
    if administrators(staged)?.is_empty() {
        return Ok(Err(Rejection::NoOtherAdmin));
    }
    write(staged, keys::meta(keys::ROOT_RETIRED), &true)?;
    Ok(Ok(Applied::Done))
}

/// The tokens that administer everything.
fn administrators(staged: &Staged) -> Result<Vec<AccessTokenRecord>, StoreError> {
    let mut found = Vec::new();
    for key in staged.keys_with_prefix(&[keys::TOKEN])? {
        if let Some(token) = read::<AccessTokenRecord>(staged, &key)?.filter(administers_everything) {
            found.push(token);
        }
    }
    Ok(found)
}

/// Whether a token (not a subject's) holds every scope there is, through its patterns: it
/// can do all the root token can, and hand every scope out again.
fn administers_everything(token: &AccessTokenRecord) -> bool {
    let held: Vec<Scope> = token.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    token.subject.is_none() && Scope::every().iter().all(|needed| held.iter().any(|s| s.covers(needed)))
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
