//! The secrets the operator generates for a vault, and how each is made.
//!
//! A generated Secret is created once — only while the vault has never had a member — and
//! then only re-applied with the data it already holds: a new root token, peer secret or —
//! worst of all — a new SoftHSM KEK would cut the running nodes off from each other or from
//! their data. So a generated Secret that disappears once the vault has members, or that
//! lacks a key, is reported, never replaced by new material; and a Secret of a generated
//! name that this vault does not control is never taken over ([`GeneratedSecret::decide`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{civil::Date, ToSpan, Zoned};
use k8s_openapi::ByteString;
use rand::rngs::OsRng;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::names::VaultNames;
use crate::crd::PiiVault;
use crate::vaultd_client::RootToken;
use crate::Error;

/// The largest vault (spec.replicas is 1, 3 or 5): generated certificates name every pod
/// a vault of any allowed size can have.
const MAX_REPLICAS: i32 = 5;
/// Validity of the generated CA and peer certificate.
const CERTIFICATE_YEARS: i16 = 10;

/// What to do about one generated Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It exists, this vault controls it and it is complete: re-apply it with this data.
    Keep(BTreeMap<String, ByteString>),
    /// It does not exist and the vault never had a member: create it with fresh material.
    Generate,
}

/// One kind of Secret the operator generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratedSecret {
    /// `token`: the root token, when the spec names no Secret.
    RootToken,
    /// `secret`: the shared secret that authenticates peers to each other.
    PeerAuth,
    /// `ca.crt`, `tls.crt`, `tls.key`: the peer port's CA and certificate, when TLS is on
    /// and the spec names no Secret.
    PeerTls,
    /// `user.pin`, `so.pin`, `kek`: the SoftHSM token's PINs and the 32-byte KEK.
    SoftHsm,
}

impl GeneratedSecret {
    /// The generated Secrets `vault` needs, in the order they are ensured.
    pub fn needed_by(vault: &PiiVault) -> Vec<GeneratedSecret> {
        let spec = &vault.spec;
        let mut needed = Vec::new();
        if spec.root_token_secret_ref.is_none() {
            needed.push(GeneratedSecret::RootToken);
        }
        needed.push(GeneratedSecret::PeerAuth);
        if spec.tls.enabled && spec.tls.secret_name.is_none() {
            needed.push(GeneratedSecret::PeerTls);
        }
        if spec.hsm.softhsm.is_some() {
            needed.push(GeneratedSecret::SoftHsm);
        }
        needed
    }

    pub fn secret_name(self, names: &VaultNames) -> String {
        match self {
            GeneratedSecret::RootToken => names.root_token_secret(),
            GeneratedSecret::PeerAuth => names.peer_auth_secret(),
            GeneratedSecret::PeerTls => names.peer_tls_secret(),
            GeneratedSecret::SoftHsm => names.softhsm_secret(),
        }
    }

    pub fn keys(self) -> &'static [&'static str] {
        match self {
            GeneratedSecret::RootToken => &["token"],
            GeneratedSecret::PeerAuth => &["secret"],
            GeneratedSecret::PeerTls => &["ca.crt", "tls.crt", "tls.key"],
            GeneratedSecret::SoftHsm => &["kek", "so.pin", "user.pin"],
        }
    }

    /// Fresh material for this Secret.
    pub fn generate(self, names: &VaultNames) -> Result<BTreeMap<String, ByteString>, Error> {
        let text = |value: String| ByteString(value.into_bytes());
        Ok(match self {
            GeneratedSecret::RootToken => BTreeMap::from([("token".to_string(), text(random_hex(32)))]),
            GeneratedSecret::PeerAuth => BTreeMap::from([("secret".to_string(), text(random_hex(32)))]),
            GeneratedSecret::PeerTls => {
                let tls = peer_certificates(names)?;
                BTreeMap::from([
                    ("ca.crt".to_string(), text(tls.ca_pem)),
                    ("tls.crt".to_string(), text(tls.certificate_pem)),
                    ("tls.key".to_string(), text(tls.key_pem)),
                ])
            }
            GeneratedSecret::SoftHsm => BTreeMap::from([
                ("user.pin".to_string(), text(random_hex(16))),
                ("so.pin".to_string(), text(random_hex(16))),
                ("kek".to_string(), ByteString(random_bytes(32))),
            ]),
        })
    }

    /// Decides about the Secret `name` of this kind, given the one that exists (if any), the
    /// UID of the vault that needs it, and whether that vault has (or had) a cluster.
    pub fn decide(
        self,
        name: &str,
        existing: Option<&Secret>,
        vault_uid: &str,
        vault_initialised: bool,
    ) -> Result<Decision, Error> {
        let Some(secret) = existing else {
            return match vault_initialised {
                true => Err(Error::GeneratedSecretMissing { secret: name.to_string() }),
                false => Ok(Decision::Generate),
            };
        };
        let controlled = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == vault_uid && owner.controller == Some(true));
        if !controlled {
            return Err(Error::SecretConflict { secret: name.to_string() });
        }
        let data = secret.data.clone().unwrap_or_default();
        match self.missing_key(&data) {
            Some(key) => Err(Error::SecretIncomplete { secret: name.to_string(), key: key.to_string() }),
            None => Ok(Decision::Keep(data)),
        }
    }

    /// The first expected key missing from existing Secret data.
    pub fn missing_key(self, data: &BTreeMap<String, ByteString>) -> Option<&'static str> {
        self.keys().iter().copied().find(|key| data.get(*key).is_none_or(|value| value.0.is_empty()))
    }
}

fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0; count];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// `count` random bytes as lower-case hex (so `2 * count` characters).
fn random_hex(count: usize) -> String {
    random_bytes(count).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The source vault's SoftHSM Secret a vault restored from a backup takes its KEK from
/// (`bootstrap.fromBackup.softhsmSecret`, in SoftHSM mode only).
pub fn restored_kek_secret(vault: &PiiVault) -> Option<&str> {
    vault.spec.hsm.softhsm.as_ref()?;
    vault.spec.bootstrap.as_ref()?.from_backup.softhsm_secret.as_deref()
}

/// The KEK in that Secret (as read): the one that wrapped the backup's keys, so the new
/// vault's generated SoftHSM Secret gets it instead of a fresh one.
pub fn restored_kek(vault: &PiiVault, source: Option<&Secret>) -> Result<Option<ByteString>, Error> {
    let Some(name) = restored_kek_secret(vault) else { return Ok(None) };
    let secret = source.ok_or_else(|| Error::SecretMissing { secret: name.to_string() })?;
    let kek = secret.data.as_ref().and_then(|data| data.get("kek")).filter(|kek| !kek.0.is_empty());
    kek.cloned().map(Some).ok_or_else(|| Error::SecretIncomplete { secret: name.to_string(), key: "kek".to_string() })
}

/// Where a vault's root token is: the Secret and key the spec names, or the generated
/// Secret (key `token`).
pub fn root_token_location(vault: &PiiVault) -> (String, String) {
    match &vault.spec.root_token_secret_ref {
        Some(reference) => (reference.name.clone(), reference.key.clone()),
        None => (VaultNames::of(vault).root_token_secret(), "token".to_string()),
    }
}

/// The root token of an initialised vault in `secret` (the Secret at
/// [`root_token_location`], as read): a referenced Secret as it is, a generated one only
/// when this vault controls it (never a token from a foreign Secret).
pub fn root_token_of(vault: &PiiVault, secret: Option<&Secret>) -> Result<RootToken, Error> {
    let (name, key) = root_token_location(vault);
    let data = match (&vault.spec.root_token_secret_ref, secret) {
        (Some(_), None) => return Err(Error::SecretMissing { secret: name }),
        (Some(_), Some(secret)) => secret.data.clone().unwrap_or_default(),
        (None, secret) => {
            let uid = vault.metadata.uid.as_deref().unwrap_or_default();
            match GeneratedSecret::RootToken.decide(&name, secret, uid, true)? {
                Decision::Keep(data) => data,
                // Not reached for an initialised vault; never a token that was not stored.
                Decision::Generate => return Err(Error::SecretMissing { secret: name }),
            }
        }
    };
    data.get(&key)
        .and_then(|value| RootToken::from_secret_value(&value.0))
        .ok_or(Error::SecretIncomplete { secret: name, key })
}

/// The name of the operator's own vault token (one per vault).
pub const OPERATOR_TOKEN_NAME: &str = "strongroom-operator";
/// What the operator does with its token: membership (`cluster:admin`), tokens for
/// retention policies and backups (`tokens:admin`, which may only grant scopes it holds,
/// hence `retention:run` and `backup:read`).
pub const OPERATOR_TOKEN_SCOPES: [&str; 4] = ["cluster:admin", "tokens:admin", "retention:run", "backup:read"];

/// The operator's scoped token in `secret` (the Secret `<name>-operator-token`, as read):
/// `Ok(None)` when there is none yet, an error when a Secret of that name is not this
/// vault's.
pub fn operator_token_of(vault: &PiiVault, secret: Option<&Secret>) -> Result<Option<RootToken>, Error> {
    token_of(vault, secret, VaultNames::of(vault).operator_token_secret())
}

/// A vault token the operator stored in the Secret `name` (see [`operator_token_data`]),
/// as read: `Ok(None)` when there is none yet, an error when that Secret is not the
/// vault's or lacks the token.
pub fn token_of(vault: &PiiVault, secret: Option<&Secret>, name: String) -> Result<Option<RootToken>, Error> {
    let Some(secret) = secret else { return Ok(None) };
    let uid = vault.metadata.uid.as_deref().unwrap_or_default();
    let controlled = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid && owner.controller == Some(true));
    if !controlled {
        return Err(Error::SecretConflict { secret: name });
    }
    let data = secret.data.clone().unwrap_or_default();
    data.get("token")
        .and_then(|value| RootToken::from_secret_value(&value.0))
        .map(Some)
        .ok_or(Error::SecretIncomplete { secret: name, key: "token".to_string() })
}

/// The data of the operator token's Secret.
pub fn operator_token_data(id: &str, token: &RootToken) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        ("id".to_string(), ByteString(id.as_bytes().to_vec())),
        ("token".to_string(), ByteString(token.expose().as_bytes().to_vec())),
    ])
}

/// A generated CA and the peer certificate it signed (PEM).
pub struct PeerCertificates {
    pub ca_pem: String,
    pub certificate_pem: String,
    pub key_pem: String,
}

/// The DNS names the peer certificate must carry: every pod a vault can have, under the
/// short and the fully qualified cluster domain.
pub fn peer_dns_names(names: &VaultNames) -> Vec<String> {
    (0..MAX_REPLICAS)
        .flat_map(|ordinal| {
            let host = names.pod_host(ordinal);
            [format!("{host}.cluster.local"), host]
        })
        .collect()
}

fn validity(params: &mut CertificateParams) -> Result<(), Error> {
    let today: Date = Zoned::now().date();
    let not_after = today.checked_add(CERTIFICATE_YEARS.years()).map_err(|error| Error::Tls(error.to_string()))?;
    let yesterday = today.yesterday().map_err(|error| Error::Tls(error.to_string()))?;
    let ymd = |date: Date| {
        u8::try_from(date.month())
            .and_then(|month| u8::try_from(date.day()).map(|day| (month, day)))
            .map(|(month, day)| rcgen::date_time_ymd(i32::from(date.year()), month, day))
            .map_err(|error| Error::Tls(error.to_string()))
    };
    params.not_before = ymd(yesterday)?;
    params.not_after = ymd(not_after)?;
    Ok(())
}

/// A CA for this vault's peers and one certificate, valid for server and client
/// authentication, that every node presents (each node trusts only this CA).
pub fn peer_certificates(names: &VaultNames) -> Result<PeerCertificates, Error> {
    let tls = |error: rcgen::Error| Error::Tls(error.to_string());
    let subject = |common_name: String| {
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Strongroom");
        name.push(DnType::CommonName, common_name);
        name
    };

    let ca_key = KeyPair::generate().map_err(tls)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = subject(format!("{} peer CA ({})", names.vault(), names.namespace()));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params)?;
    let ca = ca_params.self_signed(&ca_key).map_err(tls)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(tls)?;
    let mut params = CertificateParams::new(peer_dns_names(names)).map_err(tls)?;
    params.distinguished_name = subject(format!("{}.{} peer", names.vault(), names.namespace()));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params)?;
    let certificate = params.signed_by(&key, &issuer).map_err(tls)?;

    Ok(PeerCertificates { ca_pem: ca.pem(), certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::piivault::{Pkcs11Spec, SecretKeyRef};
    use crate::piivault::builders::test_support::softhsm_vault;

    #[test]
    fn the_root_token_is_read_only_from_a_secret_the_vault_may_use() {
        let vault = softhsm_vault(3);
        let names = VaultNames::of(&vault);
        let data = BTreeMap::from([("token".to_string(), ByteString(b"root-secret\n".to_vec()))]);
        let owned =
            crate::piivault::builders::generated_secret(&vault, names.root_token_secret(), data.clone()).unwrap();
        assert_eq!(root_token_of(&vault, Some(&owned)).unwrap(), RootToken::new("root-secret"));
        let foreign = Secret { data: Some(data.clone()), ..Secret::default() };
        assert!(matches!(root_token_of(&vault, Some(&foreign)), Err(Error::SecretConflict { .. })));
        assert!(matches!(root_token_of(&vault, None), Err(Error::GeneratedSecretMissing { .. })));

        let mut referenced = softhsm_vault(3);
        referenced.spec.root_token_secret_ref = Some(SecretKeyRef { name: "mine".into(), key: "root".into() });
        assert_eq!(root_token_location(&referenced), ("mine".to_string(), "root".to_string()));
        let theirs = Secret {
            data: Some(BTreeMap::from([("root".to_string(), ByteString(b"r".to_vec()))])),
            ..Secret::default()
        };
        assert_eq!(root_token_of(&referenced, Some(&theirs)).unwrap(), RootToken::new("r"));
        assert!(matches!(root_token_of(&referenced, Some(&foreign)), Err(Error::SecretIncomplete { .. })));
        assert!(matches!(root_token_of(&referenced, None), Err(Error::SecretMissing { .. })));
    }

    #[test]
    fn a_softhsm_vault_needs_every_generated_secret() {
        assert_eq!(
            GeneratedSecret::needed_by(&softhsm_vault(3)),
            vec![
                GeneratedSecret::RootToken,
                GeneratedSecret::PeerAuth,
                GeneratedSecret::PeerTls,
                GeneratedSecret::SoftHsm
            ]
        );
    }

    #[test]
    fn referenced_secrets_are_not_generated() {
        let mut vault = softhsm_vault(3);
        vault.spec.root_token_secret_ref = Some(SecretKeyRef { name: "t".into(), key: "k".into() });
        vault.spec.tls.secret_name = Some("tls".into());
        vault.spec.hsm.softhsm = None;
        vault.spec.hsm.pkcs11 = Some(Pkcs11Spec {
            module_path: "/lib.so".into(),
            module_image: None,
            pin_secret_ref: SecretKeyRef { name: "pin".into(), key: "pin".into() },
            config_secret_name: None,
            env: vec![],
        });
        assert_eq!(GeneratedSecret::needed_by(&vault), vec![GeneratedSecret::PeerAuth]);
        vault.spec.tls.enabled = false;
        assert_eq!(GeneratedSecret::needed_by(&vault), vec![GeneratedSecret::PeerAuth]);
    }

    #[test]
    fn generated_material_has_every_key_and_is_random() {
        let names = VaultNames::new("vault", "pii");
        for kind in [GeneratedSecret::RootToken, GeneratedSecret::PeerAuth, GeneratedSecret::SoftHsm] {
            let first = kind.generate(&names).unwrap();
            let second = kind.generate(&names).unwrap();
            assert_eq!(kind.missing_key(&first), None, "{kind:?}");
            assert_ne!(first, second, "{kind:?} must be random");
        }
        let token = GeneratedSecret::RootToken.generate(&names).unwrap();
        assert_eq!(token["token"].0.len(), 64, "at least 32 characters");
        let softhsm = GeneratedSecret::SoftHsm.generate(&names).unwrap();
        assert_eq!(softhsm["kek"].0.len(), 32, "an AES-256 key");
    }

    #[test]
    fn a_missing_or_empty_key_is_reported() {
        let mut data = GeneratedSecret::SoftHsm.generate(&VaultNames::new("v", "ns")).unwrap();
        data.insert("kek".into(), ByteString(vec![]));
        assert_eq!(GeneratedSecret::SoftHsm.missing_key(&data), Some("kek"));
        data.remove("so.pin");
        assert_eq!(GeneratedSecret::SoftHsm.missing_key(&data), Some("kek"));
    }

    fn owned_secret(kind: GeneratedSecret, owner_uid: &str, controller: bool) -> Secret {
        let names = VaultNames::new("vault", "pii");
        let mut secret = crate::piivault::builders::generated_secret(
            &softhsm_vault(3),
            kind.secret_name(&names),
            kind.generate(&names).unwrap(),
        )
        .unwrap();
        for owner in secret.metadata.owner_references.iter_mut().flatten() {
            owner.uid = owner_uid.to_string();
            owner.controller = Some(controller);
        }
        secret
    }

    const UID: &str = "5f0c8f5e-0000-4000-8000-000000000001";

    #[test]
    fn a_missing_secret_is_generated_only_for_a_vault_that_never_had_members() {
        for kind in
            [GeneratedSecret::RootToken, GeneratedSecret::PeerAuth, GeneratedSecret::PeerTls, GeneratedSecret::SoftHsm]
        {
            assert_eq!(kind.decide("s", None, UID, false).unwrap(), Decision::Generate, "{kind:?}");
            match kind.decide("s", None, UID, true) {
                Err(Error::GeneratedSecretMissing { secret }) => assert_eq!(secret, "s"),
                other => panic!("{kind:?}: a vault with members must not get new material: {other:?}"),
            }
        }
    }

    #[test]
    fn an_existing_secret_of_this_vault_is_kept_with_its_data() {
        let secret = owned_secret(GeneratedSecret::SoftHsm, UID, true);
        let expected = secret.data.clone().unwrap();
        for initialised in [false, true] {
            let decision = GeneratedSecret::SoftHsm.decide("vault-softhsm", Some(&secret), UID, initialised);
            assert_eq!(decision.unwrap(), Decision::Keep(expected.clone()));
        }
    }

    #[test]
    fn a_secret_this_vault_does_not_control_is_never_adopted() {
        let unowned = Secret {
            data: Some(GeneratedSecret::PeerAuth.generate(&VaultNames::new("v", "ns")).unwrap()),
            ..Secret::default()
        };
        let foreign = owned_secret(GeneratedSecret::PeerAuth, "another-uid", true);
        let not_controller = owned_secret(GeneratedSecret::PeerAuth, UID, false);
        for secret in [unowned, foreign, not_controller] {
            for initialised in [false, true] {
                match GeneratedSecret::PeerAuth.decide("vault-peer-auth", Some(&secret), UID, initialised) {
                    Err(Error::SecretConflict { secret }) => assert_eq!(secret, "vault-peer-auth"),
                    other => panic!("expected a conflict, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn an_incomplete_secret_is_reported_not_regenerated() {
        let mut secret = owned_secret(GeneratedSecret::SoftHsm, UID, true);
        secret.data.as_mut().unwrap().remove("kek");
        match GeneratedSecret::SoftHsm.decide("vault-softhsm", Some(&secret), UID, false) {
            Err(Error::SecretIncomplete { secret, key }) => {
                assert_eq!((secret.as_str(), key.as_str()), ("vault-softhsm", "kek"))
            }
            other => panic!("expected an incomplete Secret, got {other:?}"),
        }
    }

    #[test]
    fn the_peer_certificate_names_every_possible_pod() {
        let names = VaultNames::new("vault", "pii");
        let dns = peer_dns_names(&names);
        assert_eq!(dns.len(), 10);
        assert!(dns.contains(&"vault-0.vault-headless.pii.svc".to_string()));
        assert!(dns.contains(&"vault-4.vault-headless.pii.svc.cluster.local".to_string()));
        let tls = GeneratedSecret::PeerTls.generate(&names).unwrap();
        let text = |key: &str| String::from_utf8(tls[key].0.clone()).unwrap();
        assert!(text("ca.crt").starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(text("tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(text("tls.key").starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(text("ca.crt"), text("tls.crt"));
    }
}
