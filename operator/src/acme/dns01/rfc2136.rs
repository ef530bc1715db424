//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), e.g. to bind9 or PowerDNS.

use std::net::SocketAddr;

use base64::Engine as _;
use hickory_proto::op::{ResponseCode, update_message};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as Algorithm;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType};

use super::ProviderError;
use crate::api::acme_issuer::TsigAlgorithm;

const PROVIDER: &str = "rfc2136";
/// TTL of challenge records: short, they live for minutes.
const TTL: u32 = 60;
/// Allowed clock difference between the operator and the server, in seconds.
const FUDGE: u16 = 300;

/// A client of one primary server, with one TSIG key.
pub struct Rfc2136 {
    nameserver: String,
    signer: TSigner,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("nameserver", &self.nameserver)
            .field("key", self.signer.signer_name())
            .finish_non_exhaustive()
    }
}

fn other(message: impl Into<String>) -> ProviderError {
    ProviderError::Other {
        provider: PROVIDER,
        message: message.into(),
    }
}

impl Rfc2136 {
    /// A client of `nameserver` (`host:port`) with the TSIG key `key_name` whose secret is
    /// `secret_base64`.
    pub fn new(
        nameserver: &str,
        key_name: &str,
        algorithm: TsigAlgorithm,
        secret_base64: &str,
    ) -> Result<Self, ProviderError> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_base64.trim())
            .map_err(|_| other("the TSIG secret is not base64"))?;
        let name = Name::from_ascii(key_name)
            .map_err(|e| other(format!("tsigKeyName {key_name:?}: {e}")))?;
        let algorithm = match algorithm {
            TsigAlgorithm::HmacSha256 => Algorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => Algorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => Algorithm::HmacSha512,
        };
        let signer = TSigner::new(secret, algorithm, name, FUDGE)
            .map_err(|e| other(format!("TSIG key: {e}")))?;
        Ok(Self {
            nameserver: nameserver.to_owned(),
            signer,
        })
    }

    /// The server the updates go to; it is also the one to check propagation against.
    pub async fn address(&self) -> Result<SocketAddr, ProviderError> {
        crate::dns::resolve(&self.nameserver)
            .await
            .map_err(|e| transport(&self.nameserver, e))
    }

    /// Adds `value` to the TXT records at `fqdn` (other values stay).
    pub async fn add_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let (address, zone, name) = self.locate(fqdn).await?;
        let message = update_message::append(txt_set(&name, value), zone, false, false);
        self.send(address, message).await
    }

    /// Removes `value` from the TXT records at `fqdn`; other values and an absent value are
    /// left alone.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let (address, zone, name) = self.locate(fqdn).await?;
        let message = update_message::delete_by_rdata(txt_set(&name, value), zone, false);
        self.send(address, message).await
    }

    async fn locate(&self, fqdn: &str) -> Result<(SocketAddr, Name, Name), ProviderError> {
        let address = self.address().await?;
        let name = Name::from_ascii(fqdn.trim_end_matches('.').to_owned() + ".")
            .map_err(|e| other(format!("bad record name {fqdn:?}: {e}")))?;
        let zone = crate::dns::zone_of(address, &name)
            .await
            .map_err(|e| transport(&self.nameserver, e))?;
        Ok((address, zone, name))
    }

    async fn send(
        &self,
        address: SocketAddr,
        mut message: hickory_proto::op::Message,
    ) -> Result<(), ProviderError> {
        let now = jiff::Timestamp::now().as_second().max(0).unsigned_abs();
        message
            .finalize(&self.signer, now)
            .map_err(|e| other(format!("cannot sign the update: {e}")))?;
        let reply = crate::dns::exchange_tcp(address, &message)
            .await
            .map_err(|e| transport(&self.nameserver, e))?;
        match reply.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(ProviderError::Api {
                provider: PROVIDER,
                status: code.to_string(),
                code: code.to_str().to_owned(),
                message: format!(
                    "{} refused the update signed with key {} ({})",
                    self.nameserver,
                    self.signer.signer_name(),
                    explain(code)
                ),
            }),
        }
    }
}

fn explain(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::Refused => "updates with this key are not allowed for the zone",
        ResponseCode::NotAuth => {
            "the key or its signature was not accepted (check the secret, algorithm and clock)"
        }
        ResponseCode::NotZone => "the name is outside the zone",
        _ => "see the server's log",
    }
}

fn transport(nameserver: &str, message: String) -> ProviderError {
    ProviderError::Transport {
        provider: PROVIDER,
        message: format!("{nameserver}: {message}"),
    }
}

fn txt_set(name: &Name, value: &str) -> RecordSet {
    let mut set = RecordSet::with_ttl(name.clone(), RecordType::TXT, TTL);
    set.insert(
        Record::from_rdata(
            name.clone(),
            TTL,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        ),
        0,
    );
    set
}
