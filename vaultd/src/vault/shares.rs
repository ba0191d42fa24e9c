//! Shared records (Databunker's `sharedrecord`): a capability a partner can use to read
//! chosen fields of one subject's profile (or of one app record, or of one of its
//! sessions) until it ends, without an access token. The record id is the credential;
//! the vault stores only its SHA-256, and the share disappears when the subject is
//! forgotten or the share ends.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::*;
use crate::store::SharedRecord;

const MAX_PARTNER_LEN: usize = 128;

/// What `GET /v1/get/{record}` shows.
pub struct SharedView {
    pub app: Option<String>,
    pub session: Option<Uuid>,
    pub data: Value,
}

impl Vault {
    /// Shares `fields` (a comma-separated string or an array; `token` is the subject's
    /// token) of a subject's profile — or of its `app` record, or of one of its sessions
    /// (`session`) — with `partner` until `expiration` (capped by `max_share_ttl`).
    /// Returns the record id.
    pub async fn share_record(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        request: &Map<String, Value>,
    ) -> VaultResult<Uuid> {
        let fields = share_fields(request.get("fields"))?;
        let app = match request.get("app") {
            None | Some(Value::Null) => None,
            Some(Value::String(app)) if app.is_empty() => None,
            Some(Value::String(app)) if valid_app_name(&app.to_lowercase()) => Some(app.to_lowercase()),
            Some(_) => return Err(VaultError::bad_request("app must be a valid app name")),
        };
        let session = match request.get("session") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => {
                Some(Uuid::parse_str(s).map_err(|_| VaultError::bad_request("session must be a UUID"))?)
            }
            Some(_) => return Err(VaultError::bad_request("session must be a UUID")),
        };
        if app.is_some() && session.is_some() {
            return Err(VaultError::bad_request("share from an app record or from a session, not both"));
        }
        // A share lets its holder read what it names, so it takes the scope that reads it.
        match &app {
            Some(app) => caller.require(&Scope::app(app, "read"))?,
            None => caller.require(&Scope::users("read"))?,
        }
        let partner = match request.get("partner") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.chars().count() <= MAX_PARTNER_LEN && !p.chars().any(char::is_control) => {
                Some(p.clone())
            }
            Some(_) => {
                return Err(VaultError::bad_request(format!("partner must be at most {MAX_PARTNER_LEN} characters")))
            }
        };
        let lifetime = lifetime::parse(request.get("expiration"), now_ms() / 1000)?;
        let op = Operation::ShareCreate;
        let subject = match self.find_audited(caller, op, mode, app.as_deref(), id).await? {
            Found::Active(subject, _, _) => subject,
            Found::Forgotten(_) => return Err(VaultError::NotFound("record")),
        };
        let _start = self.starts.hold(caller, &subject).await;
        if caller.subject.is_some() && self.store.shares_of(&subject)? >= limits::MAX_STARTED_BY_SUBJECT_TOKEN {
            return Err(VaultError::Conflict(
                "a subject token may not share more of its subject's data until shares end",
            ));
        }
        let record_id = Uuid::new_v4();
        let mut audit = draft(caller, op, Some(subject), app.as_deref(), Some(mode));
        audit.purpose = partner.as_ref().map(|p| format!("shared with {p}")).or(audit.purpose);
        let record = SharedRecord {
            subject,
            fields,
            app,
            partner,
            created: audit.time,
            expires_at: lifetime.end_ms(self.settings.max_share_ttl, audit.time),
            session,
        };
        let change = Change::ShareRecord { hash: auth::capability_hash(&record_id), record };
        self.commit(audit, change).await?.outcome.map_err(rejected)?;
        Ok(record_id)
    }

    /// `GET /v1/get/{record}`: the shared fields, audited, while the share lasts.
    pub async fn get_shared(&self, record_id: &str) -> VaultResult<SharedView> {
        let record_id = Uuid::parse_str(record_id).map_err(|_| VaultError::bad_request("record must be a UUID"))?;
        let hash = auth::capability_hash(&record_id);
        // Anyone may ask, so a miss costs no write: only a share this node (caught up
        // with the leader first, if need be) knows as live goes on to the audited read.
        let live = |store: &Store| -> VaultResult<bool> {
            Ok(store.shared(&hash)?.is_some_and(|record| record.expires_at > now_ms()))
        };
        if !live(&self.store)? {
            self.catch_up().await?;
            if !live(&self.store)? {
                return Err(VaultError::NotFound("shared record"));
            }
        }
        let audit = AuditDraft {
            time: now_ms(),
            actor: "shared-record".into(),
            operation: Operation::ShareRead,
            subject: None,
            app: None,
            mode: Some("record".into()),
            purpose: None,
        };
        let receipt = self.commit(audit, Change::ReadShared { hash }).await?;
        let Applied::Shared { record, owner, app, session } = receipt.outcome.map_err(rejected)? else {
            return Err(VaultError::Storage(StoreError::Corrupt));
        };
        let dek = self.dek(&record.subject, &owner).await?;
        let document = match (&record.app, &app, &record.session, &session) {
            (Some(name), Some(app), _, _) => apps::open_app(&dek, &record.subject, name, &app.sealed)?,
            (_, _, Some(id), Some(session)) => sessions::open_linked(&dek, &record.subject, id, session)?,
            (None, _, None, _) => self.open_profile(&record.subject, &owner).await?,
            // The state machine answers with the app record or session a share names.
            _ => return Err(VaultError::Storage(StoreError::Corrupt)),
        };
        let mut shown = Map::new();
        for field in &record.fields {
            let value = match field.as_str() {
                "token" => Value::String(record.subject.to_string()),
                _ => document.get(field).cloned().unwrap_or(Value::Null),
            };
            shown.insert(field.clone(), value);
        }
        Ok(SharedView { app: record.app, session: record.session, data: Value::Object(shown) })
    }
}

/// The shared fields: `"a,b"` or `["a","b"]`, at least one, each a plain field name.
fn share_fields(value: Option<&Value>) -> VaultResult<Vec<String>> {
    let names: Vec<String> = match value {
        Some(Value::String(list)) => list.split(',').map(|f| f.trim().to_string()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(|f| f.trim().to_string()))
            .collect::<Option<_>>()
            .ok_or_else(|| VaultError::bad_request("fields must be strings"))?,
        _ => return Err(VaultError::bad_request("fields is required: the fields to share, e.g. \"name,email\"")),
    };
    if names.is_empty() || names.len() > 64 || names.iter().any(|f| f.is_empty() || f.chars().count() > 128) {
        return Err(VaultError::bad_request("fields must name 1-64 fields of 1-128 characters"));
    }
    Ok(names)
}
