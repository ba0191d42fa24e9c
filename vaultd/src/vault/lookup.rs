//! Finding subjects: what a `{mode}/{id}` pair names (through the blind index), whether a
//! caller may reach it, and the subject's state as the read path sees it.

use super::*;

impl Vault {
    /// What a `{mode}/{id}` pair names, as far as the caller may reach it. For a subject
    /// token the pair must name the token's own subject (403 otherwise), and the target
    /// becomes that subject's token, so that an identifier moving to another subject
    /// meanwhile cannot redirect the command.
    ///
    /// A subject token's pair is checked against its own subject's record only, never
    /// looked up in the index: whether the identifier belongs to someone else, or to
    /// nobody, must not show in the answer or in how long it takes.
    pub(super) async fn target(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<Target> {
        let target = self.identify(mode, id).await?;
        let Some(own) = caller.subject else { return Ok(target) };
        if self.names_own(&target, own)? {
            return Ok(Target::Token(own));
        }
        // This node may not have applied the caller's latest change of identifiers yet.
        self.catch_up().await?;
        match self.names_own(&target, own)? {
            true => Ok(Target::Token(own)),
            false => Err(VaultError::NotOwnSubject),
        }
    }

    /// Whether `target` names the subject `own`, by its token or by one of its own
    /// blind-index entries, in this node's state.
    fn names_own(&self, target: &Target, own: Uuid) -> VaultResult<bool> {
        Ok(match target {
            Target::Token(subject) => *subject == own,
            Target::Index(entry) => matches!(
                self.find_local(&Target::Token(own))?,
                Some(Found::Active(_, _, active)) if active.index.contains(entry)
            ),
            Target::ExpToken(_) => false,
        })
    }

    /// What a `{mode}/{id}` pair names, for the state machine to resolve.
    pub(super) async fn identify(&self, mode: Mode, id: &str) -> VaultResult<Target> {
        match mode.index_kind() {
            None => Uuid::parse_str(id).map(Target::Token).map_err(|_| VaultError::bad_request("token must be a UUID")),
            Some(kind) => match identifiers::normalise(kind, id, self.settings.phone_region) {
                None => Err(VaultError::bad_request(format!("{} must not be empty", kind.field()))),
                Some(normalised) => Ok(Target::Index(self.index().await?.entry(kind, &normalised))),
            },
        }
    }

    /// The blind-index entries of a profile; empty identifiers are absent.
    pub(super) async fn index_entries(&self, profile: &Map<String, Value>) -> VaultResult<Vec<Vec<u8>>> {
        let mut entries = Vec::new();
        for kind in IndexKind::ALL {
            let raw = match profile.get(kind.field()) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(VaultError::bad_request(format!("{} must be a string", kind.field()))),
            };
            if let Some(normalised) = identifiers::normalise(kind, &raw, self.settings.phone_region) {
                entries.push(self.index().await?.entry(kind, &normalised));
            }
        }
        Ok(entries)
    }
}

/// A subject as the read path sees it.
pub(super) enum Found {
    /// The subject, its record version (for optimistic updates) and its keys and data.
    Active(Uuid, u64, Box<ActiveSubject>),
    Forgotten(Uuid),
}

impl Vault {
    /// The subject a target names, from this node's state. Read-modify-write paths start
    /// here; their writes carry the version they read, so a stale read cannot overwrite
    /// a newer write. A miss may only mean this node lags, so it catches up and looks
    /// again before reporting one.
    pub(super) async fn find(&self, target: &Target) -> VaultResult<Option<Found>> {
        if let Some(found) = self.find_local(target)? {
            return Ok(Some(found));
        }
        self.catch_up().await?;
        self.find_local(target)
    }

    pub(super) fn find_local(&self, target: &Target) -> VaultResult<Option<Found>> {
        let subject = match target {
            Target::Token(subject) => *subject,
            Target::Index(entry) => match self.store.lookup(entry)? {
                Some(subject) => subject,
                None => return Ok(None),
            },
            Target::ExpToken(hash) => match self.store.subject_by_exptoken(hash)? {
                Some(subject) => subject,
                None => return Ok(None),
            },
        };
        Ok(self.store.subject(&subject)?.map(|record| match record.state {
            SubjectState::Active(active) => Found::Active(subject, record.version, Box::new(active)),
            SubjectState::Forgotten { .. } => Found::Forgotten(subject),
        }))
    }

    /// Like `find`, but a missing subject is a 404 and is audited as a failed access.
    pub(super) async fn find_audited(
        &self,
        caller: &Caller,
        op: Operation,
        mode: Mode,
        app: Option<&str>,
        id: &str,
    ) -> VaultResult<Found> {
        match self.find(&self.target(caller, mode, id).await?).await? {
            Some(found) => Ok(found),
            None => {
                self.record_access(draft(caller, op, None, app, Some(mode)), false).await?;
                Err(VaultError::NotFound("record"))
            }
        }
    }
}
