//! Sessions (Databunker's session API): what an application keeps about a visit or a
//! device — an IP address, a user agent — under an id it can log instead of the data.
//! A session ends after its TTL (capped by `max_session_ttl`); the leader's sweeper
//! deletes ended sessions. A session linked to a subject is sealed under the subject's
//! DEK and disappears with the subject; an unlinked one has a key of its own, wrapped
//! by the KEK.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::*;
use crate::store::SessionRecord;

/// One session as the API shows it.
pub struct SessionView {
    pub session: Uuid,
    /// When it was created, seconds since the Unix epoch (Databunker's `when`).
    pub when: u64,
    pub data: Value,
}

/// The identifiers in a session body that link it to a subject, in the order Databunker
/// tries them: the token last (applications keep other tokens, CSRF or OAuth ones, in
/// their sessions too).
const LINKS: [(&str, Mode); 5] = [
    ("login", Mode::Login),
    ("email", Mode::Email),
    ("phone", Mode::Phone),
    ("custom", Mode::Custom),
    ("token", Mode::Token),
];

impl Vault {
    /// Creates or replaces session `session` with `data`. A `login`, `email`, `phone`,
    /// `custom` or `token` field links it to that subject; an `expiration` field (e.g.
    /// `1h`) shortens its life below the configured maximum.
    ///
    /// As in Databunker, a field naming no active subject leaves the session unlinked
    /// rather than refusing it (express-session stores whatever the application keeps in
    /// its session, a visitor's email before sign-up included). A subject token keeps
    /// sessions linked to its own subject only.
    pub async fn put_session(&self, caller: &Caller, session: Uuid, data: Map<String, Value>) -> VaultResult<()> {
        if data.is_empty() {
            return Err(VaultError::bad_request("session data must not be empty"));
        }
        // A session's `expiration` is the application's own field as much as ours: one we
        // cannot read asks for the maximum, as Databunker reads it (express-session's store
        // crashes the application on a refusal).
        let lifetime = lifetime::parse(data.get("expiration"), now_ms() / 1000).unwrap_or(lifetime::Requested::Maximum);
        let named = LINKS.iter().find_map(|(field, mode)| link(&data, field).map(|id| (*mode, id)));
        let owner = match (named, caller.subject) {
            (Some((mode, id)), Some(_)) => {
                match self.find_audited(caller, Operation::SessionCreate, mode, None, &id).await? {
                    Found::Active(subject, _, active) => Some((subject, active)),
                    Found::Forgotten(_) => return Err(VaultError::NotFound("record")),
                }
            }
            (None, Some(_)) => return Err(VaultError::NotOwnSubject),
            (Some((mode, id)), None) => match self.identify(mode, &id).await {
                Ok(target) => match self.find(&target).await? {
                    Some(Found::Active(subject, _, active)) => Some((subject, active)),
                    _ => None,
                },
                // Not a well-formed token or identifier: it names nobody.
                Err(VaultError::BadRequest(_)) => None,
                Err(other) => return Err(other),
            },
            (None, None) => None,
        };
        let _start = match &owner {
            Some((subject, _)) => self.starts.hold(caller, subject).await,
            None => None,
        };
        if let (Some(_), Some((subject, _))) = (caller.subject, &owner) {
            let started = self.store.sessions_of(subject)?;
            if started >= limits::MAX_STARTED_BY_SUBJECT_TOKEN && !self.store.is_session_of(subject, &session)? {
                return Err(VaultError::Conflict("a subject token may not start more sessions for its subject"));
            }
        }
        let plaintext = limits::encode_object(&data, "session", self.settings.max_record_bytes)?;
        let audit = draft(caller, Operation::SessionCreate, owner.as_ref().map(|(s, _)| *s), None, None);
        let (sealed, key) = match &owner {
            Some((subject, active)) => {
                let dek = self.dek(subject, active).await?;
                (dek.seal(&plaintext, &session_aad(Some(subject), &session))?, None)
            }
            None => {
                let key = DataKey::generate();
                let kek = self.active_kek();
                let wrapped = self.kek.wrap_key(&kek, &key, &crypto::dek_aad(&session)).await?;
                let sealed = key.seal(&plaintext, &session_aad(None, &session))?;
                (sealed, Some(WrappedKey { kek, wrapped }))
            }
        };
        let record = SessionRecord {
            subject: owner.map(|(subject, _)| subject),
            created: audit.time,
            expires_at: lifetime.end_ms(self.settings.max_session_ttl, audit.time),
            key,
            sealed,
        };
        let change = Change::PutSession { session, record, may_take: caller.subject.is_none() };
        self.commit(audit, change).await?.outcome.map_err(rejected)?;
        Ok(())
    }

    /// A session that has not ended, read through the log (audited when linked).
    pub async fn get_session(&self, caller: &Caller, session: Uuid) -> VaultResult<SessionView> {
        let audit = draft(caller, Operation::SessionRead, None, None, None);
        let receipt = self.commit(audit, Change::ReadSession { session, owner: caller.subject }).await?;
        match receipt.outcome.map_err(rejected)? {
            Applied::Session { record, owner } => self.open_session(session, &record, owner.as_ref()).await,
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
    }

    /// Deletes a session. Deleting one that does not exist (or has ended, or is not the
    /// subject token's own) succeeds, as in Databunker: afterwards the caller has no
    /// session of that id either way (express-session destroys sessions it never saved).
    pub async fn delete_session(&self, caller: &Caller, session: Uuid) -> VaultResult<()> {
        let audit = draft(caller, Operation::SessionDelete, None, None, None);
        let change = Change::DeleteSession { session, only_if_ended: false, owner: caller.subject };
        match self.commit(audit, change).await?.outcome {
            Ok(_) | Err(Rejection::SessionNotFound) => Ok(()),
            Err(other) => Err(rejected(other)),
        }
    }

    /// A page of a subject's sessions that have not ended, and how many there are.
    pub async fn user_sessions(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> VaultResult<(u64, Vec<SessionView>)> {
        let target = self.target(caller, mode, id).await?;
        let (offset, limit) = page_bounds(offset, limit);
        let change = Change::ReadSessions { target, offset, limit };
        let audit = draft(caller, Operation::SessionList, None, None, Some(mode));
        match self.commit(audit, change).await?.outcome.map_err(rejected)? {
            Applied::Sessions { owner, total, page, .. } => {
                let mut sessions = Vec::with_capacity(page.len());
                for (session, record) in page {
                    sessions.push(self.open_session(session, &record, owner.as_ref()).await?);
                }
                Ok((total, sessions))
            }
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
    }

    async fn open_session(
        &self,
        session: Uuid,
        record: &SessionRecord,
        owner: Option<&ActiveSubject>,
    ) -> VaultResult<SessionView> {
        let data = match (&record.subject, owner, &record.key) {
            (Some(subject), Some(owner), _) => {
                open_linked(&self.dek(subject, owner).await?, subject, &session, record)?
            }
            (None, _, Some(key)) => {
                let key = self.kek.unwrap_key(&key.kek, &key.wrapped, &crypto::dek_aad(&session)).await?;
                document(&key.open(&record.sealed, &session_aad(None, &session))?)?
            }
            _ => return Err(VaultError::Storage(StoreError::Corrupt)),
        };
        Ok(SessionView { session, when: record.created / 1000, data })
    }
}

/// The document of a session linked to `subject`, opened with the subject's DEK.
pub(super) fn open_linked(dek: &DataKey, subject: &Uuid, session: &Uuid, record: &SessionRecord) -> VaultResult<Value> {
    document(&dek.open(&record.sealed, &session_aad(Some(subject), session))?)
}

fn document(plaintext: &[u8]) -> VaultResult<Value> {
    serde_json::from_slice(plaintext).map_err(|_| VaultError::Crypto(CryptoError::Malformed))
}

/// A non-empty identifier in a session body.
fn link(data: &Map<String, Value>, field: &str) -> Option<String> {
    match data.get(field)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// AAD of a session: bound to its id, and to its subject when linked.
fn session_aad(subject: Option<&Uuid>, session: &Uuid) -> Vec<u8> {
    match subject {
        Some(subject) => crypto::record_aad(subject, &format!("session:{session}")),
        None => crypto::record_aad(session, "session"),
    }
}
