//! The one DNS client of the operator: plain queries and RFC 2136 updates over UDP/TCP,
//! used by the MemberCluster probes and the ACME DNS-01 solvers.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
pub use hickory_proto::rr::Name;
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::validate::parse_host_port;

/// How long one server has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The address of `host:port` (a name is resolved with the system resolver).
pub async fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) = parse_host_port(endpoint)?;
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve host: {e}"))?
        .next()
        .ok_or_else(|| "host has no address".to_owned())
}

/// A query message for `name`/`record_type`.
pub fn query(name: &Name, record_type: RecordType, recursion_desired: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = recursion_desired;
    message.add_query(Query::query(name.clone(), record_type));
    message
}

/// Sends `message` over UDP and waits for the matching answer, retrying over TCP when the
/// answer is truncated.
pub async fn exchange(address: SocketAddr, message: &Message) -> Result<Message, String> {
    let answer = exchange_udp(address, message).await?;
    if answer.metadata.truncation {
        return exchange_tcp(address, message).await;
    }
    Ok(answer)
}

async fn exchange_udp(address: SocketAddr, message: &Message) -> Result<Message, String> {
    let packet = message
        .to_vec()
        .map_err(|e| format!("cannot encode the message: {e}"))?;
    let bind = if address.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(address)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    socket
        .send(&packet)
        .await
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut buffer = vec![0u8; 65535];
    let answer = async {
        loop {
            let n = socket
                .recv(&mut buffer)
                .await
                .map_err(|e| format!("no answer: {e}"))?;
            if let Ok(reply) = Message::from_vec(&buffer[..n])
                && is_answer_to(&reply, message)
            {
                return Ok(reply);
            }
        }
    };
    tokio::time::timeout(TIMEOUT, answer)
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
}

/// Sends `message` over TCP (used for updates, whose answers must not be lost or spoofed
/// as easily) and reads one answer.
pub async fn exchange_tcp(address: SocketAddr, message: &Message) -> Result<Message, String> {
    exchange_tcp_bytes(address, message)
        .await
        .map(|(reply, _)| reply)
}

/// Like [`exchange_tcp`], with the answer's bytes as they came (to verify its TSIG).
pub async fn exchange_tcp_bytes(
    address: SocketAddr,
    message: &Message,
) -> Result<(Message, Vec<u8>), String> {
    let packet = message
        .to_vec()
        .map_err(|e| format!("cannot encode the message: {e}"))?;
    let length = u16::try_from(packet.len()).map_err(|_| "message too large".to_owned())?;
    let run = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(&packet);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut size = [0u8; 2];
        stream
            .read_exact(&mut size)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let mut buffer = vec![0u8; usize::from(u16::from_be_bytes(size))];
        stream
            .read_exact(&mut buffer)
            .await
            .map_err(|e| format!("truncated answer: {e}"))?;
        let reply =
            Message::from_vec(&buffer).map_err(|e| format!("cannot decode the answer: {e}"))?;
        if !is_answer_to(&reply, message) {
            return Err("the answer does not match the request".to_owned());
        }
        Ok((reply, buffer))
    };
    tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
}

fn is_answer_to(reply: &Message, request: &Message) -> bool {
    reply.metadata.id == request.metadata.id
        && reply.metadata.message_type == MessageType::Response
        && reply.metadata.op_code == request.metadata.op_code
}

/// The TXT strings at `name` (each record's strings joined), as `server` answers them.
pub async fn txt_values(address: SocketAddr, name: &Name) -> Result<Vec<String>, String> {
    let reply = exchange(address, &query(name, RecordType::TXT, false)).await?;
    Ok(reply
        .answers
        .iter()
        .filter(|r| &r.name == name)
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// The zone `name` belongs to, as the authoritative `server` sees it: the owner of the SOA
/// record in the answer (at the apex) or in the authority section.
pub async fn zone_of(address: SocketAddr, name: &Name) -> Result<Name, String> {
    let reply = exchange(address, &query(name, RecordType::SOA, false)).await?;
    reply
        .answers
        .iter()
        .chain(reply.authorities.iter())
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name.clone())
        .filter(|zone| zone.zone_of(name))
        .ok_or_else(|| {
            format!(
                "{address} is not authoritative for {name} (answer {}, no SOA)",
                reply.metadata.response_code
            )
        })
}

/// The IPv4 addresses `server` answers for `name` (with recursion desired, as a client
/// asks its resolver), and the response code.
pub async fn a_records(
    address: SocketAddr,
    name: &Name,
) -> Result<(Vec<std::net::Ipv4Addr>, String), String> {
    let reply = exchange(address, &query(name, RecordType::A, true)).await?;
    let addresses = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    Ok((addresses, reply.metadata.response_code.to_string()))
}
