//! Checks of an issued certificate before it may replace the working one.

use jiff::Timestamp;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// What a verified certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
    /// DNS names of the leaf, sorted.
    pub dns_names: Vec<String>,
    /// DER of the leaf certificate.
    pub leaf_der: Vec<u8>,
    /// PEM of the last certificate of the chain when it is self-signed (a root).
    pub root_pem: Option<String>,
}

impl CertInfo {
    /// The lifetime of the certificate.
    pub fn lifetime(&self) -> jiff::SignedDuration {
        self.not_after.duration_since(self.not_before)
    }
}

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CertError(pub String);

fn err(message: impl Into<String>) -> CertError {
    CertError(message.into())
}

/// The DER blocks of every `CERTIFICATE` in a PEM bundle, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut ders = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| err(format!("the chain is not valid PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            ders.push(block.contents);
        }
    }
    if ders.is_empty() {
        return Err(err("the chain holds no certificate"));
    }
    Ok(ders)
}

/// Parses the chain and checks that:
/// - every certificate parses and is signed by the next one;
/// - the leaf's DNS names are exactly `names`;
/// - the leaf's public key is `public_key_der` (the SubjectPublicKeyInfo of our key).
pub fn verify_chain(
    chain_pem: &str,
    names: &[String],
    public_key_der: &[u8],
) -> Result<CertInfo, CertError> {
    let ders = pem_certificates(chain_pem)?;
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| err(format!("certificate {i} of the chain does not parse: {e}")))?;
        certs.push(cert);
    }
    for (i, pair) in certs.windows(2).enumerate() {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|e| {
                err(format!(
                    "certificate {i} of the chain is not signed by certificate {}: {e}",
                    i + 1
                ))
            })?;
    }
    let leaf = &certs[0];
    if leaf.public_key().raw != public_key_der {
        return Err(err(
            "the certificate's public key is not the key of the request",
        ));
    }
    let mut got = dns_names(leaf)?;
    got.sort();
    let mut want = names.to_vec();
    want.sort();
    want.dedup();
    if got != want {
        return Err(err(format!(
            "the certificate names {got:?}, the spec asks for {want:?}"
        )));
    }
    let time = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| err(format!("bad validity time: {e}")))
    };
    let not_before = time(leaf.validity().not_before)?;
    let not_after = time(leaf.validity().not_after)?;
    if not_after <= not_before {
        return Err(err("the certificate's validity period is empty"));
    }
    let root_pem = certs
        .last()
        .filter(|c| certs.len() > 1 && c.subject() == c.issuer())
        .and(ders.last())
        .map(|der| pem_encode(der));
    Ok(CertInfo {
        not_before,
        not_after,
        dns_names: got,
        leaf_der: ders[0].clone(),
        root_pem,
    })
}

fn dns_names(cert: &X509Certificate<'_>) -> Result<Vec<String>, CertError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| err(format!("bad subjectAltName: {e}")))?
        .ok_or_else(|| err("the certificate has no subjectAltName"))?;
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// PEM text of one DER certificate.
pub fn pem_encode(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// PEM text of one DER object with `label` (`CERTIFICATE`, `PRIVATE KEY`).
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};

    struct Ca {
        key: KeyPair,
        params: CertificateParams,
        pem: String,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.clone().self_signed(&key).expect("ca").pem();
        Ca { key, params, pem }
    }

    fn leaf(ca: &Ca, names: &[&str], key: &KeyPair) -> String {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        params.signed_by(key, &issuer).expect("leaf").pem()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_good_chain_is_accepted_with_its_dates_and_root() {
        let ca = ca();
        let key = KeyPair::generate().expect("key");
        let chain = format!("{}{}", leaf(&ca, &["b.test", "a.test"], &key), ca.pem);
        let info = verify_chain(
            &chain,
            &names(&["a.test", "b.test"]),
            &key.subject_public_key_info(),
        )
        .expect("ok");
        assert_eq!(info.dns_names, names(&["a.test", "b.test"]));
        assert!(info.not_after > info.not_before);
        assert_eq!(info.root_pem.as_deref().map(str::trim), Some(ca.pem.trim()));
    }

    #[test]
    fn wrong_names_key_signature_or_text_are_refused() {
        let ca = ca();
        let key = KeyPair::generate().expect("key");
        let chain = format!("{}{}", leaf(&ca, &["a.test"], &key), ca.pem);
        let other = KeyPair::generate().expect("key");
        let e = verify_chain(
            &chain,
            &names(&["a.test", "b.test"]),
            &key.subject_public_key_info(),
        );
        assert!(e.expect_err("names").0.contains("the spec asks for"));
        let e = verify_chain(
            &chain,
            &names(&["a.test"]),
            &other.subject_public_key_info(),
        );
        assert!(e.expect_err("key").0.contains("public key"));
        let stranger = self::ca();
        let forged = format!("{}{}", leaf(&ca, &["a.test"], &key), stranger.pem);
        let e = verify_chain(&forged, &names(&["a.test"]), &key.subject_public_key_info());
        assert!(e.expect_err("signature").0.contains("not signed by"));
        let e = verify_chain("hello", &names(&["a.test"]), &key.subject_public_key_info());
        assert_eq!(e.expect_err("text").0, "the chain holds no certificate");
    }
}
