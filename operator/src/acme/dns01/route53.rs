//! Amazon Route 53 (REST/XML API 2013-04-01), signed with [`super::sigv4`].
//!
//! A TXT name in Route 53 is one record set holding every value, so publishing a challenge
//! value is read-modify-write: `ListResourceRecordSets` reads the current set, an `UPSERT` of
//! `ChangeResourceRecordSets` writes it back with the value added, and `GetChange` is polled
//! until the change is `INSYNC` on every Route 53 name server. Removing a value writes back
//! the rest, or `DELETE`s the set (with its exact current values and TTL, as Route 53 requires)
//! when ours was the last. Within one [`Route53`] those edits are serialised, so the two values
//! of a wildcard and its apex (same `_acme-challenge` name) do not overwrite each other.
//!
//! API reference:
//! <https://docs.aws.amazon.com/Route53/latest/APIReference/API_Operations_Amazon_Route_53.html>.

use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ProviderError;
use super::sigv4;

const PROVIDER: &str = "route53";
/// The global endpoint; every Route 53 call is signed for `us-east-1`.
const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com";
const SIGNING_REGION: &str = "us-east-1";
const SERVICE: &str = "route53";
const API_VERSION: &str = "2013-04-01";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// TTL, in seconds, of a record set that [`Route53::add_txt`] writes.
pub const TXT_TTL: u32 = 60;
/// Default pause between two `GetChange` calls.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Default time to wait for a change to be `INSYNC`.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(300);

/// An AWS access key pair, with the session token of temporary credentials.
/// `Debug` shows the access key id only.
#[derive(Clone)]
pub struct Route53Credentials {
    /// The access key id (`AKIA…` or, for temporary credentials, `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The STS session token, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Route53Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A Route 53 client that publishes and removes `_acme-challenge` TXT values.
pub struct Route53 {
    http: reqwest::Client,
    endpoint: String,
    credentials: Route53Credentials,
    hosted_zone_id: Option<String>,
    poll_interval: Duration,
    poll_timeout: Duration,
    /// Serialises the read-modify-write of record sets.
    edits: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Route53 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .field("hosted_zone_id", &self.hosted_zone_id)
            .field("poll_interval", &self.poll_interval)
            .field("poll_timeout", &self.poll_timeout)
            .finish_non_exhaustive()
    }
}

/// Scheme, host and port of an endpoint, and the `Host` header that goes with them.
pub(super) struct Endpoint {
    /// `scheme://host[:port]`, to which the path is appended.
    pub(super) base: String,
    /// The `Host` header: the host, with `:port` when it is not the scheme's default.
    pub(super) host: String,
}

/// One TXT record set as Route 53 holds it.
struct TxtSet {
    ttl: u32,
    /// The values exactly as Route 53 returned them (quoted strings).
    values: Vec<String>,
}

impl Route53 {
    /// A client for `endpoint` (default `https://route53.amazonaws.com`). With
    /// `hosted_zone_id` every name is assumed to be in that zone; without it the zone is
    /// looked up with `ListHostedZonesByName`.
    pub fn new(
        http: reqwest::Client,
        endpoint: Option<String>,
        credentials: Route53Credentials,
        hosted_zone_id: Option<String>,
    ) -> Self {
        Route53 {
            http,
            endpoint: endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
            credentials,
            hosted_zone_id: hosted_zone_id
                .map(|id| bare_id(&id, "/hostedzone/").to_owned())
                .filter(|id| !id.is_empty()),
            poll_interval: DEFAULT_POLL_INTERVAL,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            edits: tokio::sync::Mutex::new(()),
        }
    }

    /// Sets how often `GetChange` is called after a change, and how long [`Route53::add_txt`]
    /// waits for `INSYNC` before failing (defaults: 2 s and 5 min).
    pub fn with_change_polling(mut self, interval: Duration, timeout: Duration) -> Self {
        self.poll_interval = interval;
        self.poll_timeout = timeout;
        self
    }

    /// The id (without `/hostedzone/`) of the hosted zone that holds `fqdn`: the configured
    /// one, else the public zone with the longest name that is a suffix of `fqdn` (on label
    /// boundaries, at least two labels). Private zones are skipped.
    pub async fn zone_for(&self, fqdn: &str) -> Result<String, ProviderError> {
        if let Some(id) = &self.hosted_zone_id {
            return Ok(id.clone());
        }
        let name = normalize_name(fqdn);
        let labels: Vec<&str> = name.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let path = format!("/{API_VERSION}/hostedzonesbyname");
            let list: ListHostedZonesByNameResponse = self
                .call(
                    "ListHostedZonesByName",
                    reqwest::Method::GET,
                    &path,
                    &[("dnsname", &candidate), ("maxitems", "100")],
                    None,
                )
                .await?;
            // The list starts at `candidate`; zones of that name come first, public or private.
            for zone in list.hosted_zones.zones {
                if normalize_name(&zone.name) != candidate {
                    break;
                }
                if !zone.config.is_some_and(|c| c.private_zone) {
                    return Ok(bare_id(&zone.id, "/hostedzone/").to_owned());
                }
            }
        }
        Err(ProviderError::Other {
            provider: PROVIDER,
            message: format!("no public hosted zone contains {fqdn}"),
        })
    }

    /// Adds `value` to the TXT record set `fqdn` (keeping the values already there) and waits
    /// until Route 53 reports the change `INSYNC`.
    pub async fn add_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let zone = self.zone_for(fqdn).await?;
        let name = format!("{}.", normalize_name(fqdn));
        let change = {
            let _edit = self.edits.lock().await;
            let mut values = match self.txt_set(&zone, &name).await? {
                Some(set) => set.values,
                None => Vec::new(),
            };
            if !values.iter().any(|v| txt_text(v) == value) {
                values.push(quote_txt(value));
            }
            // Upserted even when the value is already there: the change id then tells when
            // the set is on every name server.
            self.change(&zone, "UPSERT", &name, TXT_TTL, &values)
                .await?
        };
        if change.status != "INSYNC" {
            self.wait_insync(&change.id).await?;
        }
        Ok(())
    }

    /// Removes `value` from the TXT record set `fqdn`, leaving its other values; deletes the
    /// set when no value remains. A value that is not there is not an error.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let zone = self.zone_for(fqdn).await?;
        let name = format!("{}.", normalize_name(fqdn));
        let _edit = self.edits.lock().await;
        let Some(set) = self.txt_set(&zone, &name).await? else {
            return Ok(());
        };
        let rest: Vec<String> = set
            .values
            .iter()
            .filter(|v| txt_text(v) != value)
            .cloned()
            .collect();
        if rest.len() == set.values.len() {
            return Ok(());
        }
        if rest.is_empty() {
            self.change(&zone, "DELETE", &name, set.ttl, &set.values)
                .await?;
        } else {
            self.change(&zone, "UPSERT", &name, set.ttl, &rest).await?;
        }
        Ok(())
    }

    /// The TXT record set named `name` (with its final dot), without a routing policy.
    async fn txt_set(&self, zone: &str, name: &str) -> Result<Option<TxtSet>, ProviderError> {
        let path = format!(
            "/{API_VERSION}/hostedzone/{}/rrset",
            sigv4::uri_encode(zone, false)
        );
        let list: ListResourceRecordSetsResponse = self
            .call(
                "ListResourceRecordSets",
                reqwest::Method::GET,
                &path,
                &[("name", name), ("type", "TXT"), ("maxitems", "100")],
                None,
            )
            .await?;
        let wanted = normalize_name(name);
        // The list starts at (name, TXT) and goes on with the names that follow.
        let set = list.record_sets.sets.into_iter().find(|s| {
            s.set_identifier.is_none() && s.kind == "TXT" && normalize_name(&s.name) == wanted
        });
        Ok(set.map(|s| TxtSet {
            ttl: s.ttl.unwrap_or(TXT_TTL),
            values: s
                .records
                .map(|r| r.records)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.value)
                .collect(),
        }))
    }

    /// Sends one `ChangeResourceRecordSets` with a single change of the TXT set `name`.
    async fn change(
        &self,
        zone: &str,
        action: &str,
        name: &str,
        ttl: u32,
        values: &[String],
    ) -> Result<ChangeInfo, ProviderError> {
        let path = format!(
            "/{API_VERSION}/hostedzone/{}/rrset/",
            sigv4::uri_encode(zone, false)
        );
        let body = change_batch(action, name, ttl, values);
        let response: ChangeResponse = self
            .call(
                "ChangeResourceRecordSets",
                reqwest::Method::POST,
                &path,
                &[],
                Some(body),
            )
            .await?;
        tracing::debug!(
            provider = PROVIDER,
            action,
            name,
            change = %response.change_info.id,
            "record set change submitted"
        );
        Ok(response.change_info)
    }

    /// Polls `GetChange` (at least once) until the change is `INSYNC`, or fails after the
    /// timeout.
    async fn wait_insync(&self, change_id: &str) -> Result<(), ProviderError> {
        let id = bare_id(change_id, "/change/");
        let path = format!("/{API_VERSION}/change/{}", sigv4::uri_encode(id, false));
        let deadline = tokio::time::Instant::now() + self.poll_timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ProviderError::Other {
                    provider: PROVIDER,
                    message: format!(
                        "change {id} was not INSYNC after {}s",
                        self.poll_timeout.as_secs_f32()
                    ),
                });
            }
            tokio::time::sleep(self.poll_interval.min(left)).await;
            let response: ChangeResponse = self
                .call("GetChange", reqwest::Method::GET, &path, &[], None)
                .await?;
            if response.change_info.status == "INSYNC" {
                return Ok(());
            }
        }
    }

    /// One signed call: `op` names the API operation in errors.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<T, ProviderError> {
        let endpoint = endpoint(PROVIDER, &self.endpoint)?;
        let query_string = sigv4::canonical_query(query);
        let url = if query_string.is_empty() {
            format!("{}{path}", endpoint.base)
        } else {
            format!("{}{path}?{query_string}", endpoint.base)
        };
        let content_type = [("content-type", "application/xml")];
        let headers: &[(&str, &str)] = if body.is_some() { &content_type } else { &[] };
        let request = sigv4::Request {
            method: method.as_str(),
            host: &endpoint.host,
            path,
            query,
            headers,
            payload: body.as_deref().unwrap_or_default().as_bytes(),
        };
        let credentials = sigv4::Credentials {
            access_key_id: &self.credentials.access_key_id,
            secret_access_key: &self.credentials.secret_access_key,
            session_token: self.credentials.session_token.as_deref(),
        };
        let scope = sigv4::Scope {
            region: SIGNING_REGION,
            service: SERVICE,
        };
        let signed = sigv4::sign(&request, &credentials, &scope, Timestamp::now(), false);

        let mut builder = self
            .http
            .request(method, url)
            .header(reqwest::header::HOST, &endpoint.host);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        for (name, value) in &signed.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport(PROVIDER, op, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport(PROVIDER, op, &e))?;
        if !status.is_success() {
            return Err(api_error(op, status, &text));
        }
        quick_xml::de::from_str(&text).map_err(|e| ProviderError::Other {
            provider: PROVIDER,
            message: format!("{op}: unreadable response: {e}"),
        })
    }
}

/// Parses an endpoint URL; its path, if any, is ignored.
pub(super) fn endpoint(provider: &'static str, endpoint: &str) -> Result<Endpoint, ProviderError> {
    let invalid = |why: &str| ProviderError::Other {
        provider,
        message: format!("invalid endpoint {endpoint:?}: {why}"),
    };
    let url = reqwest::Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| invalid("no host"))?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Endpoint {
        base: format!("{}://{host}", url.scheme()),
        host,
    })
}

/// A failed exchange: `op` and the error with its causes.
pub(super) fn transport(provider: &'static str, op: &str, error: &reqwest::Error) -> ProviderError {
    let mut message = format!("{op}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ProviderError::Transport { provider, message }
}

/// At most 300 characters of a body, for messages.
pub(super) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The error of a non-2xx answer. Route 53 answers `<ErrorResponse><Error><Code>…` for most
/// errors, and `<InvalidChangeBatch><Messages><Message>…` for rejected change batches.
fn api_error(op: &str, status: reqwest::StatusCode, body: &str) -> ProviderError {
    let root = root_element(body);
    let doc: ErrorDocument = quick_xml::de::from_str(body).unwrap_or_default();
    let (code, message) = match (doc.error, doc.messages) {
        (Some(error), _) if error.code.is_some() => (
            error.code.unwrap_or_default(),
            error.message.unwrap_or_default(),
        ),
        (_, Some(messages)) if !messages.messages.is_empty() => (
            root.unwrap_or_else(|| "InvalidChangeBatch".to_owned()),
            messages.messages.join("; "),
        ),
        _ => ("UnknownError".to_owned(), excerpt(body)),
    };
    ProviderError::Api {
        provider: PROVIDER,
        status: status.as_u16().to_string(),
        code,
        message: format!("{op}: {}", excerpt(&message)),
    }
}

/// The local name of the first element of an XML document.
fn root_element(body: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// An id without the prefix Route 53 puts before it (`/hostedzone/`, `/change/`).
fn bare_id<'a>(id: &'a str, prefix: &str) -> &'a str {
    let id = id.trim();
    id.strip_prefix(prefix).unwrap_or(id)
}

/// A name for comparisons: lower case, no final dot, Route 53's `\ddd` escapes decoded.
fn normalize_name(name: &str) -> String {
    let name = name.trim().trim_end_matches('.');
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        match digits {
            Some(digits) if bytes[i] == b'\\' => {
                out.push(octal_byte(digits));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// The byte of a three-digit `\ddd` escape (decimal in RFC 1035 zone files, but Route 53
/// writes octal: `\052` is `*`).
fn octal_byte(digits: &[u8]) -> u8 {
    let code = digits
        .iter()
        .fold(0u32, |n, d| n * 8 + u32::from(d.saturating_sub(b'0')));
    u8::try_from(code).unwrap_or(b'?')
}

/// A TXT value in Route 53's syntax: quoted strings of at most 255 bytes, `"` and `\`
/// escaped with `\`, bytes outside printable ASCII as `\ddd` (octal).
fn quote_txt(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return "\"\"".to_owned();
    }
    bytes
        .chunks(255)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() + 2);
            s.push('"');
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(char::from(b));
                    }
                    0x20..=0x7e => s.push(char::from(b)),
                    _ => s.push_str(&format!("\\{b:03o}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of a TXT value as Route 53 returns it: its quoted strings, unescaped and joined.
/// A value without quotes is taken as it is.
fn txt_text(value: &str) -> String {
    let value = value.trim();
    if !value.starts_with('"') {
        return value.to_owned();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => quoted = !quoted,
            b'\\' if quoted && i + 1 < bytes.len() => {
                let digits = bytes
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(u8::is_ascii_digit));
                if let Some(digits) = digits {
                    out.push(octal_byte(digits));
                    i += 3;
                } else {
                    out.push(bytes[i + 1]);
                    i += 1;
                }
            }
            _ if quoted => out.push(b),
            _ => {} // the spaces between strings
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of `ChangeResourceRecordSets` with one change of a TXT set.
fn change_batch(action: &str, name: &str, ttl: u32, values: &[String]) -> String {
    use quick_xml::escape::escape;
    let records: String = values
        .iter()
        .map(|v| {
            format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                escape(v.as_str())
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ChangeResourceRecordSetsRequest xmlns=\"{XMLNS}\"><ChangeBatch><Changes><Change>\
         <Action>{action}</Action><ResourceRecordSet><Name>{}</Name><Type>TXT</Type>\
         <TTL>{ttl}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>\
         </Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>",
        escape(name)
    )
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDocument {
    #[serde(rename = "Error")]
    error: Option<ErrorBody>,
    #[serde(rename = "Messages")]
    messages: Option<ErrorMessages>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorMessages {
    #[serde(rename = "Message", default)]
    messages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ListHostedZonesByNameResponse {
    #[serde(rename = "HostedZones", default)]
    hosted_zones: HostedZones,
}

#[derive(Debug, Default, Deserialize)]
struct HostedZones {
    #[serde(rename = "HostedZone", default)]
    zones: Vec<HostedZone>,
}

#[derive(Debug, Deserialize)]
struct HostedZone {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: Option<HostedZoneConfig>,
}

#[derive(Debug, Deserialize)]
struct HostedZoneConfig {
    #[serde(rename = "PrivateZone", default)]
    private_zone: bool,
}

#[derive(Debug, Deserialize)]
struct ListResourceRecordSetsResponse {
    #[serde(rename = "ResourceRecordSets", default)]
    record_sets: ResourceRecordSets,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceRecordSets {
    #[serde(rename = "ResourceRecordSet", default)]
    sets: Vec<ResourceRecordSet>,
}

#[derive(Debug, Deserialize)]
struct ResourceRecordSet {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "SetIdentifier")]
    set_identifier: Option<String>,
    #[serde(rename = "TTL")]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords")]
    records: Option<ResourceRecords>,
}

#[derive(Debug, Deserialize)]
struct ResourceRecords {
    #[serde(rename = "ResourceRecord", default)]
    records: Vec<ResourceRecord>,
}

#[derive(Debug, Deserialize)]
struct ResourceRecord {
    #[serde(rename = "Value")]
    value: String,
}

/// The answer of `ChangeResourceRecordSets` and of `GetChange`.
#[derive(Debug, Deserialize)]
struct ChangeResponse {
    #[serde(rename = "ChangeInfo")]
    change_info: ChangeInfo,
}

#[derive(Debug, Deserialize)]
struct ChangeInfo {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Status")]
    status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_are_quoted_and_unquoted() {
        assert_eq!(quote_txt("abc-DEF_123"), "\"abc-DEF_123\"");
        assert_eq!(quote_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote_txt("é"), "\"\\303\\251\"");
        for text in ["abc-DEF_123", "a\"b\\c", "é", "with space", ""] {
            assert_eq!(txt_text(&quote_txt(text)), text);
        }
        let long = "x".repeat(300);
        let quoted = quote_txt(&long);
        assert_eq!(quoted.matches('"').count(), 4, "two strings");
        assert_eq!(txt_text(&quoted), long);
        assert_eq!(txt_text("\"part1\" \"part2\""), "part1part2");
        assert_eq!(txt_text("unquoted"), "unquoted");
    }

    #[test]
    fn names_compare_without_case_final_dot_or_escapes() {
        assert_eq!(
            normalize_name("_ACME-Challenge.Example.com."),
            "_acme-challenge.example.com"
        );
        assert_eq!(normalize_name("\\052.example.com."), "*.example.com");
        assert_eq!(bare_id("/hostedzone/Z123", "/hostedzone/"), "Z123");
        assert_eq!(bare_id("Z123", "/hostedzone/"), "Z123");
    }

    #[test]
    fn change_batch_is_escaped_xml() {
        let xml = change_batch(
            "UPSERT",
            "_acme-challenge.example.com.",
            60,
            &[quote_txt("v")],
        );
        assert!(xml.contains("<Action>UPSERT</Action>"));
        assert!(xml.contains("<TTL>60</TTL>"));
        assert!(xml.contains("<Value>&quot;v&quot;</Value>"));
    }

    #[test]
    fn error_shapes_are_read() {
        let body = "<?xml version=\"1.0\"?>\n\
            <ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
            <Error><Type>Sender</Type><Code>NoSuchHostedZone</Code>\
            <Message>No hosted zone found with ID: Z1</Message></Error>\
            <RequestId>r</RequestId></ErrorResponse>";
        let error = api_error("GetHostedZone", reqwest::StatusCode::NOT_FOUND, body).to_string();
        assert_eq!(
            error,
            "route53: 404 NoSuchHostedZone: GetHostedZone: No hosted zone found with ID: Z1"
        );

        let body = "<InvalidChangeBatch xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\">\
            <Messages><Message>Tried to delete resource record set but it was not found</Message>\
            </Messages><RequestId>r</RequestId></InvalidChangeBatch>";
        let error = api_error(
            "ChangeResourceRecordSets",
            reqwest::StatusCode::BAD_REQUEST,
            body,
        )
        .to_string();
        assert!(error.contains("400 InvalidChangeBatch"), "{error}");
        assert!(error.contains("it was not found"), "{error}");

        let error = api_error(
            "GetChange",
            reqwest::StatusCode::BAD_GATEWAY,
            "<html>bad</html>",
        );
        assert!(error.to_string().contains("502 UnknownError"), "{error}");
    }

    #[test]
    fn debug_hides_secrets() {
        let credentials = Route53Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "very-secret".to_owned(),
            session_token: Some("token-secret".to_owned()),
        };
        let text = format!("{credentials:?}");
        assert!(text.contains("AKIDEXAMPLE"));
        assert!(
            !text.contains("very-secret") && !text.contains("token-secret"),
            "{text}"
        );
    }
}
