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
        let verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| other(format!("cannot sign the update: {e}")))?;
        let (reply, bytes) = crate::dns::exchange_tcp_bytes(address, &message)
            .await
            .map_err(|e| transport(&self.nameserver, e))?;
        match reply.metadata.response_code {
            // A success counts only when the server signed it with the same key: anyone
            // on the path could otherwise say the record is there (RFC 8945 §5.3). A
            // refusal may come unsigned (a key the server does not know), and is reported
            // as it is.
            ResponseCode::NoError => match verifier {
                Some(mut verifier) => verifier.verify(&bytes).map(|_| ()).map_err(|e| {
                    other(format!(
                        "{} answered the update, but its TSIG signature with key {} does not verify ({e}): not the server holding the key, or an answer changed on the way",
                        self.nameserver,
                        self.signer.signer_name()
                    ))
                }),
                None => Ok(()),
            },
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

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::serialize::binary::BinEncodable;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on loopback that answers one update over TCP with `code`, unsigned.
    async fn unsigned_server(code: ResponseCode) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a connection");
            let mut size = [0u8; 2];
            stream.read_exact(&mut size).await.expect("a length");
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(size))];
            stream.read_exact(&mut request).await.expect("a request");
            let request = Message::from_vec(&request).expect("a message");
            let mut reply = Message::new(
                request.metadata.id,
                MessageType::Response,
                request.metadata.op_code,
            );
            reply.metadata.response_code = code;
            let bytes = reply.to_bytes().expect("encoded");
            let mut framed = u16::try_from(bytes.len())
                .expect("small")
                .to_be_bytes()
                .to_vec();
            framed.extend_from_slice(&bytes);
            stream.write_all(&framed).await.expect("sent");
        });
        address
    }

    fn client(address: SocketAddr) -> Rfc2136 {
        Rfc2136::new(
            &address.to_string(),
            "vigil-key.",
            TsigAlgorithm::HmacSha256,
            "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==",
        )
        .expect("a client")
    }

    fn update() -> Message {
        let zone = Name::from_ascii("certs.test.").expect("a zone");
        let name = Name::from_ascii("_acme-challenge.api.certs.test.").expect("a name");
        update_message::append(txt_set(&name, "token"), zone, false, false)
    }

    #[tokio::test]
    async fn a_success_not_signed_with_the_key_is_not_believed() {
        let address = unsigned_server(ResponseCode::NoError).await;
        let error = client(address)
            .send(address, update())
            .await
            .expect_err("an unsigned success must not count");
        assert!(
            error.to_string().contains(
                "answered the update, but its TSIG signature with key vigil-key. does not verify"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unsigned_refusal_is_reported_as_the_refusal() {
        let address = unsigned_server(ResponseCode::NotAuth).await;
        let error = client(address)
            .send(address, update())
            .await
            .expect_err("a refusal");
        assert!(
            error
                .to_string()
                .contains("the key or its signature was not accepted"),
            "{error}"
        );
    }
}
