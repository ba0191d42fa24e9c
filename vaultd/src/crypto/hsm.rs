//! The PKCS#11 backend of the KEK: AES-256 keys inside an HSM token, found by label —
//! the one new wraps use, and older ones that wrapped keys still held (a rotation).
//!
//! PKCS#11 sessions are not `Sync`, and HSM calls block, so the backend runs a small pool
//! of worker threads, each owning one session; async callers hand them jobs over a
//! channel and await the answer. The library is initialised once per process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::{random_bytes, CryptoError, NONCE_LEN};
use crate::metrics::HsmOperation;

/// How to reach the KEK. The PIN is held zeroising and never printed.
pub struct HsmConfig {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: Zeroizing<String>,
    pub key_label: String,
    pub create_key: bool,
    pub sessions: usize,
}

impl std::fmt::Debug for HsmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("create_key", &self.create_key)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// Why the HSM could not be opened. Each is a reason to refuse to start.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("cannot load PKCS#11 module {module}: {reason}")]
    Module { module: PathBuf, reason: String },
    #[error("no PKCS#11 token labelled {0:?} (tokens are chosen by label, never by slot)")]
    TokenNotFound(String),
    #[error("HSM login refused: the PIN is incorrect")]
    WrongPin,
    #[error("key {key:?} not found on token {token:?}; start once with --hsm-create-key to create it")]
    KeyNotFound { key: String, token: String },
    #[error("PKCS#11 call failed: {0}")]
    Call(#[from] Pkcs11Error),
}

enum Operation {
    Encrypt,
    Decrypt,
}

struct Job {
    operation: Operation,
    /// The KEK's label.
    key: String,
    data: Zeroizing<Vec<u8>>,
    aad: Vec<u8>,
    reply: oneshot::Sender<Result<Zeroizing<Vec<u8>>, CryptoError>>,
}

/// A KEK held in a PKCS#11 token, served by a pool of session-owning threads.
pub struct HsmKek {
    key_label: String,
    /// `None` once dropping has begun.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for HsmKek {
    /// Closes the queue and waits until every worker has closed its session: a PKCS#11
    /// library (and the crypto library under it) torn down at process exit while a
    /// session still closes crashes the process.
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl HsmKek {
    /// Opens the token, logs in, finds (or, if asked, creates) the KEK and starts the
    /// session workers. Blocking: call before serving or from a blocking context.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        let pkcs11 = library(&config.module)?;
        let slot = find_token(&pkcs11, &config.token_label)?;
        let first = pkcs11.open_rw_session(slot)?;
        login(&first, &config.pin)?;
        match find_key(&first, &config.key_label)? {
            Some(_) => {}
            None if config.create_key => {
                tracing::warn!(key = %config.key_label, token = %config.token_label, "creating KEK in the HSM");
                create_key(&first, &config.key_label)?;
            }
            None => {
                return Err(HsmError::KeyNotFound { key: config.key_label.clone(), token: config.token_label.clone() })
            }
        }

        let mut sessions = vec![first];
        for _ in 1..config.sessions.max(1) {
            let session = pkcs11.open_rw_session(slot)?;
            login(&session, &config.pin)?;
            sessions.push(session);
        }

        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = Vec::with_capacity(sessions.len());
        for (n, session) in sessions.into_iter().enumerate() {
            let receiver = Arc::clone(&receiver);
            let worker = std::thread::Builder::new()
                .name(format!("hsm-{n}"))
                .spawn(move || Worker { session, keys: HashMap::new() }.run(receiver))
                .map_err(|e| HsmError::Module { module: config.module.clone(), reason: e.to_string() })?;
            workers.push(worker);
        }
        tracing::info!(token = %config.token_label, key = %config.key_label, sessions = config.sessions.max(1), "HSM KEK ready");
        Ok(HsmKek { key_label: config.key_label.clone(), jobs: Mutex::new(Some(sender)), workers })
    }

    /// The label the HSM was opened with (`--hsm-key-label`).
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    pub async fn encrypt(&self, key: &str, data: Vec<u8>, aad: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        let out = self.submit(Operation::Encrypt, key, data, aad).await?;
        Ok(out.to_vec())
    }

    pub async fn decrypt(&self, key: &str, data: Vec<u8>, aad: Vec<u8>) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.submit(Operation::Decrypt, key, data, aad).await
    }

    async fn submit(
        &self,
        operation: Operation,
        key: &str,
        data: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { operation, key: key.to_string(), data: Zeroizing::new(data), aad, reply };
        self.jobs
            .lock()
            .map_err(|_| CryptoError::HsmUnavailable)?
            .as_ref()
            .ok_or(CryptoError::HsmUnavailable)?
            .send(job)
            .map_err(|_| CryptoError::HsmUnavailable)?;
        answer.await.map_err(|_| CryptoError::HsmUnavailable)?
    }
}

/// One HSM session and the handles of the KEKs it has used, by label.
struct Worker {
    session: Session,
    keys: HashMap<String, ObjectHandle>,
}

impl Worker {
    fn run(mut self, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
        loop {
            let job = {
                let Ok(receiver) = jobs.lock() else { return };
                match receiver.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let instruments = crate::metrics::instruments();
            let result = match job.operation {
                Operation::Encrypt => instruments.hsm_call(HsmOperation::Encrypt, || {
                    let key = self.key(&job.key)?;
                    encrypt(&self.session, key, &job.data, &job.aad)
                }),
                Operation::Decrypt => instruments.hsm_call(HsmOperation::Decrypt, || {
                    let key = self.key(&job.key)?;
                    decrypt(&self.session, key, &job.data, &job.aad)
                }),
            };
            // The requester may have gone away; nothing to do then.
            let _ = job.reply.send(result);
        }
    }

    /// The handle of the KEK labelled `label`: remembered, or found in the token.
    fn key(&mut self, label: &str) -> Result<ObjectHandle, CryptoError> {
        if let Some(key) = self.keys.get(label) {
            return Ok(*key);
        }
        let found = find_key(&self.session, label).map_err(|e| CryptoError::Hsm(e.to_string()))?;
        let key = found.ok_or_else(|| CryptoError::UnknownKek(label.to_string()))?;
        self.keys.insert(label.to_string(), key);
        Ok(key)
    }
}

fn encrypt(session: &Session, key: ObjectHandle, data: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut iv = random_bytes::<NONCE_LEN>();
    let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| CryptoError::Hsm(e.to_string()))?;
    let ciphertext =
        session.encrypt(&Mechanism::AesGcm(params), key, data).map_err(|e| CryptoError::Hsm(e.to_string()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ciphertext);
    Ok(Zeroizing::new(out))
}

fn decrypt(session: &Session, key: ObjectHandle, data: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if data.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let mut iv = [0u8; NONCE_LEN];
    iv.copy_from_slice(&data[..NONCE_LEN]);
    let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|e| CryptoError::Hsm(e.to_string()))?;
    session.decrypt(&Mechanism::AesGcm(params), key, &data[NONCE_LEN..]).map(Zeroizing::new).map_err(|e| match e {
        Pkcs11Error::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _) => {
            CryptoError::Authentication
        }
        other => CryptoError::Hsm(other.to_string()),
    })
}

/// The process-wide PKCS#11 context for a module, initialised on first use.
fn library(module: &Path) -> Result<Pkcs11, HsmError> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut libraries = LIBRARIES.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(existing) = libraries.get(module) {
        return Ok(existing.clone());
    }
    let failed = |e: Pkcs11Error| HsmError::Module { module: module.to_path_buf(), reason: e.to_string() };
    let pkcs11 = Pkcs11::new(module).map_err(failed)?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)).map_err(failed)?;
    libraries.insert(module.to_path_buf(), pkcs11.clone());
    Ok(pkcs11)
}

fn find_token(pkcs11: &Pkcs11, label: &str) -> Result<Slot, HsmError> {
    for slot in pkcs11.get_slots_with_initialized_token()? {
        if pkcs11.get_token_info(slot)?.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound(label.to_string()))
}

fn login(session: &Session, pin: &str) -> Result<(), HsmError> {
    match session.login(UserType::User, Some(&AuthPin::from(pin.to_string()))) {
        Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(Pkcs11Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid, _)) => {
            Err(HsmError::WrongPin)
        }
        Err(other) => Err(other.into()),
    }
}

fn find_key(session: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    Ok(session.find_objects(&template)?.into_iter().next())
}

/// Whether `import_key` stored the key or found one under the label already.
#[derive(Debug, PartialEq, Eq)]
pub enum Imported {
    Stored,
    AlreadyPresent,
}

/// Stores 32 bytes as the KEK under `key_label` (token object, sensitive, not
/// extractable), unless the token already holds a key under that label. This is how every
/// pod of a SoftHSM dev-mode cluster gets the same KEK; a production HSM partition is
/// shared by its nodes instead and never needs it.
pub fn import_key(
    module: &Path,
    token_label: &str,
    pin: &str,
    key_label: &str,
    value: &Zeroizing<Vec<u8>>,
) -> Result<Imported, HsmError> {
    if value.len() != 32 {
        return Err(HsmError::Module {
            module: module.to_path_buf(),
            reason: "the key must be exactly 32 bytes (AES-256)".into(),
        });
    }
    let pkcs11 = library(module)?;
    let session = pkcs11.open_rw_session(find_token(&pkcs11, token_label)?)?;
    login(&session, pin)?;
    if find_key(&session, key_label)?.is_some() {
        return Ok(Imported::AlreadyPresent);
    }
    let mut template = kek_attributes(key_label);
    template.extend([
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value.to_vec()),
    ]);
    session.create_object(&template)?;
    Ok(Imported::Stored)
}

fn create_key(session: &Session, label: &str) -> Result<ObjectHandle, HsmError> {
    let mut template = kek_attributes(label);
    template.push(Attribute::ValueLen(32.into()));
    Ok(session.generate_key(&Mechanism::AesKeyGen, &template)?)
}

/// What every KEK is, however it got into the token: a token object that is sensitive,
/// never extractable, and used only to encrypt and decrypt.
fn kek_attributes(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}
