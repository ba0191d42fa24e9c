//! Where things live inside a vault pod: the paths the ConfigMap points vaultd at and the
//! StatefulSet mounts volumes on. Kept together so the two cannot disagree.

/// The data volume (the PersistentVolumeClaim).
pub const DATA_DIR: &str = "/var/lib/strongroom";
/// The root token, as a file named `token`.
pub const ROOT_TOKEN_DIR: &str = "/etc/strongroom/root-token";
pub const ROOT_TOKEN_FILE: &str = "/etc/strongroom/root-token/token";
/// The shared secret that authenticates peers, as a file named `secret`.
pub const PEER_AUTH_DIR: &str = "/etc/strongroom/peer-auth";
pub const PEER_AUTH_FILE: &str = "/etc/strongroom/peer-auth/secret";
/// The peer port's certificate, key and CA (`tls.crt`, `tls.key`, `ca.crt`).
/// The API certificate and its CA (`tls.crt`, `tls.key`, `ca.crt`).
pub const API_TLS_DIR: &str = "/etc/strongroom/api-tls";
pub const PEER_TLS_DIR: &str = "/etc/strongroom/peer-tls";
/// The HSM user PIN, as a file named `pin`.
pub const HSM_PIN_DIR: &str = "/etc/strongroom/hsm-pin";
pub const HSM_PIN_FILE: &str = "/etc/strongroom/hsm-pin/pin";
/// SoftHSM: the token directory and configuration (an emptyDir shared with the init
/// container that creates the token).
pub const SOFTHSM_DIR: &str = "/hsm";
pub const SOFTHSM_CONF: &str = "/hsm/softhsm2.conf";
/// SoftHSM: the generated PINs and KEK, mounted in the init container only.
pub const SOFTHSM_SECRET_DIR: &str = "/hsm-secret";
/// A vendor PKCS#11 library copied from its image.
pub const PKCS11_MODULE_DIR: &str = "/opt/strongroom/pkcs11";
/// A vendor PKCS#11 library's configuration files and client credentials.
pub const PKCS11_CONFIG_DIR: &str = "/etc/strongroom/pkcs11";
/// Scratch space (the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
