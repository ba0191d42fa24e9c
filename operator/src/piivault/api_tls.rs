//! HTTPS on the vault's client API: the certificate the pods serve and the CA that the
//! operator, the retention Jobs and applications trust.
//!
//! With `tls.enabled` (the default) and no `tls.apiSecretName`, the operator keeps a CA of
//! its own per vault in `<name>-api-ca` (`ca.crt`, `ca.key`; never mounted anywhere) and
//! issues the API certificate from it into `<name>-api-tls` (`tls.crt`, `tls.key`,
//! `ca.crt`), valid for the client Service and every pod's DNS name. The certificate lives
//! [`CERTIFICATE_DAYS`] days; a reconcile after it is [`RENEW_BEFORE_DAYS`] days from expiry
//! (converged vaults are reconciled at least every minute) issues a new one, and vaultd
//! re-reads the mounted files when the Secret changes. Unlike the peer material, both may be
//! made again at any time: nothing but trust depends on them, and the operator reads the CA
//! anew on every reconcile. With `tls.apiSecretName` (cert-manager) the operator only reads
//! that Secret's `ca.crt`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{civil::Date, Timestamp, ToSpan};
use k8s_openapi::ByteString;
use kube::api::Api;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::names::VaultNames;
use super::secret_material::peer_dns_names;
use crate::crd::PiiVault;
use crate::Error;

/// Validity of an issued API certificate.
pub const CERTIFICATE_DAYS: i32 = 90;
/// An issued certificate is replaced this long before it expires.
pub const RENEW_BEFORE_DAYS: i32 = 30;
/// Validity of the API CA.
const CA_YEARS: i16 = 10;
/// The annotation on `<name>-api-tls` holding the certificate's last valid day (UTC).
pub const NOT_AFTER_ANNOTATION: &str = "strongroom.dev/not-after";

/// The Secret whose `tls.crt`/`tls.key`/`ca.crt` the pods serve the API with; `None` when
/// TLS is off.
pub fn api_tls_secret(vault: &PiiVault) -> Option<String> {
    let tls = &vault.spec.tls;
    tls.enabled.then(|| tls.api_secret_name.clone().unwrap_or_else(|| VaultNames::of(vault).api_tls_secret()))
}

/// The CA (PEM) the vault's API certificate chains to, from the Secret the pods serve it
/// with (`ca.crt`); `None` when TLS is off.
pub async fn read_trusted_ca(vault: &PiiVault, secrets: &Api<Secret>) -> Result<Option<Vec<u8>>, Error> {
    let Some(name) = api_tls_secret(vault) else { return Ok(None) };
    let secret = secrets.get_opt(&name).await?.ok_or_else(|| Error::SecretMissing { secret: name.clone() })?;
    let ca = secret.data.unwrap_or_default().remove("ca.crt").filter(|value| !value.0.is_empty());
    ca.map(|value| Some(value.0)).ok_or(Error::SecretIncomplete { secret: name, key: "ca.crt".to_string() })
}

/// The DNS names of the API certificate: the client Service, every pod a vault can have,
/// and `localhost` (for a client inside a pod, e.g. `kubectl exec`).
pub fn api_dns_names(names: &VaultNames) -> Vec<String> {
    let service = names.client_service();
    let namespace = names.namespace();
    let mut dns = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    dns.extend(peer_dns_names(names));
    dns.push("localhost".to_string());
    dns
}

fn tls_error(error: impl std::fmt::Display) -> Error {
    Error::Tls(error.to_string())
}

/// Valid from the day before `today` (clock skew) to `not_after`.
fn set_validity(params: &mut CertificateParams, today: Date, not_after: Date) -> Result<(), Error> {
    let ymd = |date: Date| -> Result<_, Error> {
        let month = u8::try_from(date.month()).map_err(tls_error)?;
        let day = u8::try_from(date.day()).map_err(tls_error)?;
        Ok(rcgen::date_time_ymd(i32::from(date.year()), month, day))
    };
    params.not_before = ymd(today.yesterday().map_err(tls_error)?)?;
    params.not_after = ymd(not_after)?;
    Ok(())
}

fn ca_params(names: &VaultNames) -> CertificateParams {
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "Strongroom");
    subject.push(DnType::CommonName, format!("{} API CA ({})", names.vault(), names.namespace()));
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A fresh CA: the data of `<name>-api-ca`.
pub fn generate_ca(names: &VaultNames, today: Date) -> Result<BTreeMap<String, ByteString>, Error> {
    let key = KeyPair::generate().map_err(tls_error)?;
    let mut params = ca_params(names);
    set_validity(&mut params, today, today.checked_add(CA_YEARS.years()).map_err(tls_error)?)?;
    let ca = params.self_signed(&key).map_err(tls_error)?;
    Ok(BTreeMap::from([
        ("ca.crt".to_string(), ByteString(ca.pem().into_bytes())),
        ("ca.key".to_string(), ByteString(key.serialize_pem().into_bytes())),
    ]))
}

/// The API certificate, signed by the CA in `ca` (the data of `<name>-api-ca`): the data of
/// `<name>-api-tls` and its last valid day.
pub fn issue(
    names: &VaultNames,
    ca: &BTreeMap<String, ByteString>,
    today: Date,
) -> Result<(BTreeMap<String, ByteString>, Date), Error> {
    let text = |key: &str| {
        ca.get(key)
            .and_then(|value| String::from_utf8(value.0.clone()).ok())
            .ok_or_else(|| Error::SecretIncomplete { secret: names.api_ca_secret(), key: key.to_string() })
    };
    let ca_pem = text("ca.crt")?;
    let ca_key = KeyPair::from_pem(&text("ca.key")?).map_err(tls_error)?;
    // Signing needs the CA's subject and key only: the same subject as generated.
    let issuer = Issuer::new(ca_params(names), ca_key);

    let key = KeyPair::generate().map_err(tls_error)?;
    let mut params = CertificateParams::new(api_dns_names(names)).map_err(tls_error)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "Strongroom");
    subject.push(DnType::CommonName, format!("{}.{}.svc", names.client_service(), names.namespace()));
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = today.checked_add(CERTIFICATE_DAYS.days()).map_err(tls_error)?;
    set_validity(&mut params, today, not_after)?;
    let certificate = params.signed_by(&key, &issuer).map_err(tls_error)?;
    let data = BTreeMap::from([
        ("tls.crt".to_string(), ByteString(certificate.pem().into_bytes())),
        ("tls.key".to_string(), ByteString(key.serialize_pem().into_bytes())),
        ("ca.crt".to_string(), ByteString(ca_pem.into_bytes())),
    ]);
    Ok((data, not_after))
}

/// Whether the issued certificate in `existing` must be (re)issued on `today`: absent,
/// incomplete, from another CA than `ca_pem`, of unknown expiry, or within
/// [`RENEW_BEFORE_DAYS`] of it.
pub fn needs_issuing(existing: Option<&Secret>, ca_pem: &[u8], today: Date) -> bool {
    let Some(secret) = existing else { return true };
    let data = secret.data.clone().unwrap_or_default();
    let filled = |key: &str| data.get(key).is_some_and(|value| !value.0.is_empty());
    if !filled("tls.crt") || !filled("tls.key") || data.get("ca.crt").map(|value| value.0.as_slice()) != Some(ca_pem) {
        return true;
    }
    let not_after = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(NOT_AFTER_ANNOTATION))
        .and_then(|value| value.parse::<Date>().ok());
    match (not_after, today.checked_add(RENEW_BEFORE_DAYS.days())) {
        (Some(not_after), Ok(renew_from)) => renew_from >= not_after,
        _ => true,
    }
}

/// Today's date in UTC.
pub fn today() -> Date {
    Timestamp::now().to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).date()
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;

    use super::*;
    use crate::piivault::builders::test_support::softhsm_vault;

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    fn issued(data: BTreeMap<String, ByteString>, not_after: Date) -> Secret {
        Secret {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(NOT_AFTER_ANNOTATION.to_string(), not_after.to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn the_certificate_names_the_service_and_every_pod() {
        let dns = api_dns_names(&VaultNames::new("vault", "pii"));
        for name in
            ["vault", "vault.pii", "vault.pii.svc", "vault.pii.svc.cluster.local", "vault-4.vault-headless.pii.svc"]
        {
            assert!(dns.contains(&name.to_string()), "{name}");
        }
    }

    #[test]
    fn an_issued_certificate_is_renewed_30_days_before_it_expires() {
        let names = VaultNames::new("vault", "pii");
        let today = day("2026-12-07");
        let ca = generate_ca(&names, today).unwrap();
        let (data, not_after) = issue(&names, &ca, today).unwrap();
        assert_eq!(not_after, day("2027-03-07"));
        assert_eq!(data["ca.crt"], ca["ca.crt"]);
        assert!(!data.contains_key("ca.key"), "the CA key never goes to the pods");
        let secret = issued(data, not_after);
        let ca_pem = &ca["ca.crt"].0;
        assert!(!needs_issuing(Some(&secret), ca_pem, today));
        assert!(!needs_issuing(Some(&secret), ca_pem, day("2027-02-04")));
        assert!(needs_issuing(Some(&secret), ca_pem, day("2027-02-05")), "30 days before");
        assert!(needs_issuing(Some(&secret), ca_pem, day("2027-04-01")), "expired");
        assert!(needs_issuing(None, ca_pem, today));
        let other_ca = generate_ca(&names, today).unwrap();
        assert!(needs_issuing(Some(&secret), &other_ca["ca.crt"].0, today), "a new CA issues anew");
        let mut unknown = secret.clone();
        unknown.metadata.annotations = None;
        assert!(needs_issuing(Some(&unknown), ca_pem, today));
    }

    #[test]
    fn the_issued_certificate_verifies_against_the_ca() {
        let names = VaultNames::new("vault", "pii");
        let ca = generate_ca(&names, today()).unwrap();
        let (data, _) = issue(&names, &ca, today()).unwrap();
        // reqwest (rustls) accepts both as PEM: the operator's client trusts exactly this CA.
        reqwest::Certificate::from_pem(&data["ca.crt"].0).unwrap();
        reqwest::Identity::from_pem(&[data["tls.crt"].0.as_slice(), data["tls.key"].0.as_slice()].concat()).unwrap();
    }

    #[test]
    fn the_api_secret_is_the_named_one_or_the_issued_one_and_none_without_tls() {
        let mut vault = softhsm_vault(3);
        assert_eq!(api_tls_secret(&vault).as_deref(), Some("vault-api-tls"));
        vault.spec.tls.api_secret_name = Some("vault-cert-manager".into());
        assert_eq!(api_tls_secret(&vault).as_deref(), Some("vault-cert-manager"));
        vault.spec.tls.enabled = false;
        assert_eq!(api_tls_secret(&vault), None);
    }
}
