//! Certificate private keys and certificate signing requests.

#[cfg(test)]
use rcgen::PublicKeyData;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
use rsa::pkcs8::EncodePrivateKey;

use crate::api::acme_certificate::{KeyAlgorithm, PrivateKeyPolicy};

/// Why a key or CSR could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The algorithm and size a policy asks for, e.g. `ECDSA-256`.
pub fn describe(policy: &PrivateKeyPolicy) -> String {
    let (name, size) = algorithm_and_size(policy);
    format!("{name}-{size}")
}

fn algorithm_and_size(policy: &PrivateKeyPolicy) -> (&'static str, i32) {
    match policy.algorithm {
        KeyAlgorithm::Ecdsa => ("ECDSA", policy.size.unwrap_or(256)),
        KeyAlgorithm::Rsa => ("RSA", policy.size.unwrap_or(2048)),
    }
}

/// A new private key following `policy`.
pub fn generate(policy: &PrivateKeyPolicy) -> Result<KeyPair, KeyError> {
    match algorithm_and_size(policy) {
        ("ECDSA", 384) => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        ("ECDSA", _) => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        (_, bits) => {
            let bits = usize::try_from(bits).map_err(|_| KeyError(format!("bad size {bits}")))?;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .map_err(|e| KeyError(format!("RSA-{bits} key generation: {e}")))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| KeyError(format!("RSA-{bits} key encoding: {e}")))?;
            KeyPair::from_pkcs8_der_and_sign_algo(&der.as_bytes().into(), &rcgen::PKCS_RSA_SHA256)
        }
    }
    .map_err(|e| KeyError(format!("key generation: {e}")))
}

/// Parses a PKCS #8 PEM key (as written to `tls.key`).
pub fn parse(pem: &str) -> Result<KeyPair, KeyError> {
    KeyPair::from_pem(pem).map_err(|e| KeyError(format!("tls.key: {e}")))
}

/// True when `key` is of the algorithm and size `policy` asks for.
pub fn matches(key: &KeyPair, policy: &PrivateKeyPolicy) -> bool {
    let algorithm = key.algorithm();
    match algorithm_and_size(policy) {
        ("ECDSA", 384) => algorithm == &PKCS_ECDSA_P384_SHA384,
        ("ECDSA", _) => algorithm == &PKCS_ECDSA_P256_SHA256,
        (_, bits) => {
            algorithm == &rcgen::PKCS_RSA_SHA256
                && rsa_bits(key).is_some_and(|b| i64::from(bits) == b)
        }
    }
}

/// The modulus size of an RSA key, read from its public key.
fn rsa_bits(key: &KeyPair) -> Option<i64> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::from_pkcs8_der(&key.serialize_der()).ok()?;
    i64::try_from(private.size() * 8).ok()
}

/// A DER certificate signing request for `names`, signed by `key`.
pub fn csr(names: &[String], key: &KeyPair) -> Result<Vec<u8>, KeyError> {
    let params =
        CertificateParams::new(names.to_vec()).map_err(|e| KeyError(format!("CSR: {e}")))?;
    let request = params
        .serialize_request(key)
        .map_err(|e| KeyError(format!("CSR: {e}")))?;
    Ok(request.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::acme_certificate::RotationPolicy;

    fn policy(algorithm: KeyAlgorithm, size: Option<i32>) -> PrivateKeyPolicy {
        PrivateKeyPolicy {
            algorithm,
            size,
            rotation_policy: RotationPolicy::Always,
        }
    }

    #[test]
    fn keys_follow_the_policy_and_survive_a_round_trip_through_pem() {
        for (algorithm, size) in [
            (KeyAlgorithm::Ecdsa, None),
            (KeyAlgorithm::Ecdsa, Some(384)),
            (KeyAlgorithm::Rsa, Some(2048)),
        ] {
            let policy = policy(algorithm, size);
            let key = generate(&policy).expect("key");
            assert!(matches(&key, &policy), "{}", describe(&policy));
            let parsed = parse(&key.serialize_pem()).expect("parse");
            assert!(matches(&parsed, &policy), "{} after PEM", describe(&policy));
            assert_eq!(
                parsed.subject_public_key_info(),
                key.subject_public_key_info()
            );
        }
        let p256 = generate(&policy(KeyAlgorithm::Ecdsa, None)).expect("key");
        assert!(!matches(&p256, &policy(KeyAlgorithm::Ecdsa, Some(384))));
        assert!(!matches(&p256, &policy(KeyAlgorithm::Rsa, Some(2048))));
    }

    #[test]
    fn a_csr_names_every_requested_name() {
        let key = generate(&PrivateKeyPolicy::default()).expect("key");
        let names = vec!["a.example.com".to_owned(), "*.example.com".to_owned()];
        let der = csr(&names, &key).expect("csr");
        let (_, request) =
            <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&der)
                .expect("parse");
        let text = format!(
            "{:?}",
            request
                .requested_extensions()
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        );
        assert!(
            text.contains("a.example.com") && text.contains("*.example.com"),
            "{text}"
        );
    }
}
