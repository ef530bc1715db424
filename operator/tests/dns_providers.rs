//! The Route 53 and AliDNS clients against local fakes of both APIs.
//!
//! Each fake behaves as the real API would for the calls the clients make, and recomputes
//! every request's signature from the request it received (method, path, query, headers,
//! body), with its own code written here on `ring`, not with the library's signers: a
//! request whose signature does not match is refused with the provider's own error shape,
//! so a wrong signer fails these tests.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::{digest, hmac};
use serde::Deserialize;
use serde_json::json;

use vigil::acme::dns01::alidns::{AliDns, AliDnsCredentials};
use vigil::acme::dns01::route53::{Route53, Route53Credentials};

// ---------------------------------------------------------------------------------------
// Shared pieces of the fakes.

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The query of a request, decoded, in the order sent.
fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Both signatures sort the encoded pairs and join them with `&`.
fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    encoded.sort();
    encoded.join("&")
}

fn header_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Was a request's time within 15 minutes of now?
fn fresh(time: jiff::Timestamp) -> bool {
    (jiff::Timestamp::now().as_second() - time.as_second()).abs() < 15 * 60
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    format!("http://{address}")
}

fn client() -> reqwest::Client {
    vigil::tls::http_client(None, Duration::from_secs(5)).expect("HTTP client")
}

/// A fake's state and the one key pair it accepts.
struct Fake<S> {
    state: Mutex<S>,
    access_key_id: &'static str,
    secret: &'static str,
}

impl<S> Fake<S> {
    fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().expect("fake state")
    }
}

// ---------------------------------------------------------------------------------------
// Route 53.

const R53_KEY_ID: &str = "AKIDVIGILTEST";
const R53_SECRET: &str = "r53/Secret+Never-Printed";
const R53_XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

struct Zone {
    id: &'static str,
    name: &'static str,
    private: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct TxtSet {
    ttl: u32,
    values: Vec<String>,
}

#[derive(Default)]
struct R53State {
    zones: Vec<Zone>,
    /// TXT record sets by (zone id, name with its final dot).
    sets: BTreeMap<(String, String), TxtSet>,
    /// Change id → how many more `GetChange` answers say PENDING.
    changes: BTreeMap<String, u32>,
    pending_polls: u32,
    session_token: Option<&'static str>,
    /// Operations served, in order.
    calls: Vec<&'static str>,
    /// Accepted changes: (action, name, set written).
    changes_made: Vec<(String, String, TxtSet)>,
}

impl R53State {
    fn standard() -> Self {
        let mut state = R53State {
            zones: vec![
                // A private zone of the same name comes first; it must be skipped.
                Zone {
                    id: "ZPRIVATE",
                    name: "example.com.",
                    private: true,
                },
                Zone {
                    id: "ZPUBLIC",
                    name: "example.com.",
                    private: false,
                },
                Zone {
                    id: "ZSUB",
                    name: "sub.example.com.",
                    private: false,
                },
                Zone {
                    id: "ZORG",
                    name: "example.org.",
                    private: false,
                },
            ],
            pending_polls: 1,
            ..R53State::default()
        };
        state.sets.insert(
            ("ZPUBLIC".into(), "_acme-challenge.www.example.com.".into()),
            TxtSet {
                ttl: 300,
                values: vec!["\"unrelated\"".into()],
            },
        );
        state
    }

    fn count(&self, op: &str) -> usize {
        self.calls.iter().filter(|c| **c == op).count()
    }

    fn set(&self, zone: &str, name: &str) -> Option<TxtSet> {
        self.sets.get(&(zone.to_owned(), name.to_owned())).cloned()
    }
}

/// Sort key of DNS names in Route 53 lists: labels from the right.
fn reversed(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.split('.').rev().collect::<Vec<_>>().join(".")
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn r53_error(status: StatusCode, code: &str, message: &str) -> Response {
    let message = quick_xml::escape::escape(message);
    xml(
        status,
        format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{R53_XMLNS}\">\
             <Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>11111111-2222-3333-4444-555555555555</RequestId></ErrorResponse>"
        ),
    )
}

fn invalid_change_batch(message: &str) -> Response {
    let message = quick_xml::escape::escape(message);
    xml(
        StatusCode::BAD_REQUEST,
        format!(
            "<?xml version=\"1.0\"?>\n<InvalidChangeBatch xmlns=\"{R53_XMLNS}\"><Messages>\
             <Message>{message}</Message></Messages>\
             <RequestId>11111111-2222-3333-4444-555555555555</RequestId></InvalidChangeBatch>"
        ),
    )
}

/// Recomputes the SigV4 signature of a request; `Err((status, code, message))` refuses it.
fn check_sigv4(
    fake: &Fake<R53State>,
    parts: &Parts,
    body: &[u8],
) -> Result<(), (StatusCode, &'static str, String)> {
    let refuse = |code: &'static str, message: String| Err((StatusCode::FORBIDDEN, code, message));
    let Some(authorization) = header_value(parts, "authorization") else {
        return refuse(
            "MissingAuthenticationToken",
            "no Authorization header".into(),
        );
    };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return refuse("IncompleteSignature", "unknown algorithm".into());
    };
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for field in fields.split(", ") {
        match field.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed_headers = v,
            Some(("Signature", v)) => signature = v,
            _ => return refuse("IncompleteSignature", format!("unexpected field {field:?}")),
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return refuse("IncompleteSignature", "malformed credential".into());
    };
    if key_id != fake.access_key_id {
        return refuse("InvalidClientTokenId", "unknown access key".into());
    }
    if region != "us-east-1" || service != "route53" || terminator != "aws4_request" {
        return refuse("SignatureDoesNotMatch", format!("wrong scope {credential}"));
    }
    let Some(amz_date) = header_value(parts, "x-amz-date") else {
        return refuse("IncompleteSignature", "no X-Amz-Date".into());
    };
    let time = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", amz_date)
        .ok()
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok());
    match time {
        Some(time) if fresh(time.timestamp()) && amz_date.starts_with(date) => {}
        _ => {
            return refuse(
                "SignatureDoesNotMatch",
                format!("bad or stale date {amz_date}"),
            );
        }
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    if signed != sorted || !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return refuse(
            "SignatureDoesNotMatch",
            format!("bad SignedHeaders {signed_headers}"),
        );
    }
    for name in parts.headers.keys() {
        if name.as_str().starts_with("x-amz-") && !signed.contains(&name.as_str()) {
            return refuse("SignatureDoesNotMatch", format!("{name} is not signed"));
        }
    }
    let token = header_value(parts, "x-amz-security-token");
    if token != fake.state().session_token {
        return refuse(
            "InvalidClientTokenId",
            "the security token is invalid".into(),
        );
    }
    let payload_hash = sha256_hex(body);
    if let Some(sent) = header_value(parts, "x-amz-content-sha256")
        && sent != payload_hash
    {
        return refuse(
            "SignatureDoesNotMatch",
            "X-Amz-Content-Sha256 is not the body's".into(),
        );
    }

    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = parts
            .headers
            .get_all(*name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return refuse(
                "SignatureDoesNotMatch",
                format!("signed header {name} is missing"),
            );
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // Every service but S3: each segment of the path as received is encoded once more.
    let canonical_uri = parts
        .uri
        .path()
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    let canonical_request = format!(
        "{}\n{canonical_uri}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        parts.method,
        canonical_query(&query_pairs(parts)),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{}", fake.secret).as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    if hex::encode(hmac_sha256(&key, &string_to_sign)) != signature {
        return refuse(
            "SignatureDoesNotMatch",
            format!("signature differs; the canonical request was:\n{canonical_request}"),
        );
    }
    Ok(())
}

async fn route53_api(State(fake): State<Arc<Fake<R53State>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if let Err((status, code, message)) = check_sigv4(&fake, &parts, &body) {
        return r53_error(status, code, &message);
    }
    let path = parts.uri.path().trim_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').collect();
    let query = query_pairs(&parts);
    match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["2013-04-01", "hostedzonesbyname"]) => list_zones(&fake, &query),
        (&Method::GET, ["2013-04-01", "hostedzone", zone, "rrset"]) => {
            list_sets(&fake, zone, &query)
        }
        (&Method::POST, ["2013-04-01", "hostedzone", zone, "rrset"]) => {
            change_sets(&fake, zone, &body)
        }
        (&Method::GET, ["2013-04-01", "change", id]) => get_change(&fake, id),
        _ => r53_error(StatusCode::NOT_FOUND, "UnknownOperation", parts.uri.path()),
    }
}

fn list_zones(fake: &Fake<R53State>, query: &[(String, String)]) -> Response {
    let mut state = fake.state();
    state.calls.push("ListHostedZonesByName");
    let start = reversed(param(query, "dnsname").unwrap_or_default());
    let max: usize = param(query, "maxitems")
        .and_then(|m| m.parse().ok())
        .unwrap_or(100);
    let mut zones: Vec<&Zone> = state
        .zones
        .iter()
        .filter(|z| reversed(z.name) >= start)
        .collect();
    zones.sort_by_key(|z| reversed(z.name)); // stable: same-name zones keep their order
    let listed: String = zones
        .iter()
        .take(max)
        .map(|z| {
            format!(
                "<HostedZone><Id>/hostedzone/{}</Id><Name>{}</Name><CallerReference>ref-{}\
                 </CallerReference><Config><PrivateZone>{}</PrivateZone></Config>\
                 <ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone>",
                z.id, z.name, z.id, z.private
            )
        })
        .collect();
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?>\n<ListHostedZonesByNameResponse xmlns=\"{R53_XMLNS}\">\
             <HostedZones>{listed}</HostedZones><IsTruncated>{}</IsTruncated>\
             <MaxItems>{max}</MaxItems></ListHostedZonesByNameResponse>",
            zones.len() > max
        ),
    )
}

fn list_sets(fake: &Fake<R53State>, zone: &str, query: &[(String, String)]) -> Response {
    let mut state = fake.state();
    state.calls.push("ListResourceRecordSets");
    if !state.zones.iter().any(|z| z.id == zone) {
        return r53_error(
            StatusCode::NOT_FOUND,
            "NoSuchHostedZone",
            &format!("No hosted zone found with ID: {zone}"),
        );
    }
    let start = reversed(param(query, "name").unwrap_or_default());
    let mut sets: Vec<(&String, &TxtSet)> = state
        .sets
        .iter()
        .filter(|((z, name), _)| z == zone && reversed(name) >= start)
        .map(|((_, name), set)| (name, set))
        .collect();
    sets.sort_by_key(|(name, _)| reversed(name));
    let listed: String = sets
        .iter()
        .map(|(name, set)| {
            let records: String = set
                .values
                .iter()
                .map(|v| {
                    format!(
                        "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                        quick_xml::escape::escape(v.as_str())
                    )
                })
                .collect();
            format!(
                "<ResourceRecordSet><Name>{name}</Name><Type>TXT</Type><TTL>{}</TTL>\
                 <ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>",
                set.ttl
            )
        })
        .collect();
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?>\n<ListResourceRecordSetsResponse xmlns=\"{R53_XMLNS}\">\
             <ResourceRecordSets>{listed}</ResourceRecordSets><IsTruncated>false</IsTruncated>\
             <MaxItems>100</MaxItems></ListResourceRecordSetsResponse>"
        ),
    )
}

#[derive(Deserialize)]
struct ChangeRequest {
    #[serde(rename = "ChangeBatch")]
    batch: ChangeBatchXml,
}

#[derive(Deserialize)]
struct ChangeBatchXml {
    #[serde(rename = "Changes")]
    changes: ChangesXml,
}

#[derive(Deserialize)]
struct ChangesXml {
    #[serde(rename = "Change", default)]
    changes: Vec<ChangeXml>,
}

#[derive(Deserialize)]
struct ChangeXml {
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "ResourceRecordSet")]
    set: SetXml,
}

#[derive(Deserialize)]
struct SetXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "TTL")]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords")]
    records: Option<RecordsXml>,
}

#[derive(Deserialize)]
struct RecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    records: Vec<RecordXml>,
}

#[derive(Deserialize)]
struct RecordXml {
    #[serde(rename = "Value")]
    value: String,
}

/// A TXT value in Route 53's syntax: one or more quoted strings, `"` and `\` escaped.
fn quoted_txt(value: &str) -> bool {
    let mut rest = value;
    loop {
        let Some(inner) = rest.strip_prefix('"') else {
            return false;
        };
        let mut escaped = false;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { return false };
        rest = inner[end + 1..].trim_start();
        if rest.is_empty() {
            return true;
        }
    }
}

fn change_sets(fake: &Fake<R53State>, zone_id: &str, body: &[u8]) -> Response {
    let mut state = fake.state();
    state.calls.push("ChangeResourceRecordSets");
    let Some(zone) = state.zones.iter().find(|z| z.id == zone_id) else {
        return r53_error(StatusCode::NOT_FOUND, "NoSuchHostedZone", zone_id);
    };
    let zone_name = zone.name;
    let text = String::from_utf8_lossy(body);
    let root = format!("<ChangeResourceRecordSetsRequest xmlns=\"{R53_XMLNS}\">");
    if !text.contains(&root) {
        return r53_error(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "not a ChangeBatch document",
        );
    }
    let request: ChangeRequest = match quick_xml::de::from_str(&text) {
        Ok(request) => request,
        Err(e) => return r53_error(StatusCode::BAD_REQUEST, "InvalidInput", &e.to_string()),
    };
    let [change] = &request.batch.changes.changes[..] else {
        return r53_error(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "expected one change",
        );
    };
    let set = &change.set;
    let name = set.name.to_ascii_lowercase();
    let values: Vec<String> = set
        .records
        .iter()
        .flat_map(|r| &r.records)
        .map(|r| r.value.clone())
        .collect();
    let in_zone = name == zone_name || name.ends_with(&format!(".{zone_name}"));
    let problem = if !matches!(change.action.as_str(), "CREATE" | "UPSERT" | "DELETE") {
        Some(format!("unknown action {}", change.action))
    } else if !name.ends_with('.') || !in_zone {
        Some(format!("{name} is not a name of {zone_name}"))
    } else if set.kind != "TXT" {
        Some(format!("type {} where TXT was expected", set.kind))
    } else if set.ttl.is_none() {
        Some("no TTL".to_owned())
    } else if values.is_empty() {
        Some("no values".to_owned())
    } else if let Some(bad) = values.iter().find(|v| !quoted_txt(v)) {
        Some(format!(
            "Invalid Resource Record: TXT value {bad} is not quoted"
        ))
    } else if values.iter().collect::<HashSet<_>>().len() != values.len() {
        Some("Duplicate Resource Record".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        return invalid_change_batch(&problem);
    }
    let key = (zone_id.to_owned(), name.clone());
    let written = TxtSet {
        ttl: set.ttl.unwrap_or_default(),
        values,
    };
    let current = state.sets.get(&key).cloned();
    let described = format!("[name='{name}', type='TXT']");
    match (change.action.as_str(), current) {
        ("CREATE", Some(_)) => {
            return invalid_change_batch(&format!("{described} already exists"));
        }
        ("DELETE", None) => {
            return invalid_change_batch(&format!("{described} to delete was not found"));
        }
        ("DELETE", Some(current)) => {
            let mut given = written.values.clone();
            let mut held = current.values.clone();
            given.sort();
            held.sort();
            if given != held || written.ttl != current.ttl {
                return invalid_change_batch(&format!(
                    "{described}: the values to delete are not the current values"
                ));
            }
            state.sets.remove(&key);
        }
        _ => {
            state.sets.insert(key, written.clone());
        }
    }
    state
        .changes_made
        .push((change.action.clone(), name, written));
    let id = format!("C{:04}", state.changes.len() + 1);
    let pending = state.pending_polls;
    state.changes.insert(id.clone(), pending);
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?>\n<ChangeResourceRecordSetsResponse xmlns=\"{R53_XMLNS}\">\
             <ChangeInfo><Id>/change/{id}</Id><Status>PENDING</Status>\
             <SubmittedAt>2024-05-01T12:00:00.000Z</SubmittedAt></ChangeInfo>\
             </ChangeResourceRecordSetsResponse>"
        ),
    )
}

fn get_change(fake: &Fake<R53State>, id: &str) -> Response {
    let mut state = fake.state();
    state.calls.push("GetChange");
    let Some(pending) = state.changes.get_mut(id) else {
        return r53_error(
            StatusCode::NOT_FOUND,
            "NoSuchChange",
            &format!("A change with the specified change ID does not exist: {id}"),
        );
    };
    let status = if *pending > 0 {
        *pending -= 1;
        "PENDING"
    } else {
        "INSYNC"
    };
    xml(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\"?>\n<GetChangeResponse xmlns=\"{R53_XMLNS}\"><ChangeInfo>\
             <Id>/change/{id}</Id><Status>{status}</Status>\
             <SubmittedAt>2024-05-01T12:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
        ),
    )
}

async fn route53_fake(state: R53State) -> (Arc<Fake<R53State>>, String) {
    let fake = Arc::new(Fake {
        state: Mutex::new(state),
        access_key_id: R53_KEY_ID,
        secret: R53_SECRET,
    });
    let url = serve(Router::new().fallback(route53_api).with_state(fake.clone())).await;
    (fake, url)
}

fn route53(url: &str, secret: &str, token: Option<&str>, zone: Option<&str>) -> Route53 {
    let credentials = Route53Credentials {
        access_key_id: R53_KEY_ID.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: token.map(str::to_owned),
    };
    Route53::new(
        client(),
        Some(url.to_owned()),
        credentials,
        zone.map(str::to_owned),
    )
    .with_change_polling(Duration::from_millis(10), Duration::from_secs(5))
}

const APEX: &str = "_acme-challenge.example.com.";

#[tokio::test]
async fn route53_add_wait_remove_keeps_other_values() {
    let (fake, url) = route53_fake(R53State::standard()).await;
    let r53 = route53(&url, R53_SECRET, None, None);
    let unrelated = fake
        .state()
        .set("ZPUBLIC", "_acme-challenge.www.example.com.");

    // The apex and the wildcard of a certificate share one challenge name.
    r53.add_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("add apex value");
    {
        let state = fake.state();
        assert_eq!(
            state.set("ZPUBLIC", APEX),
            Some(TxtSet {
                ttl: 60,
                values: vec!["\"apex-token\"".into()]
            })
        );
        assert_eq!(state.changes_made[0].0, "UPSERT");
        // PENDING once, then INSYNC: add_txt returned only after the second GetChange.
        assert_eq!(state.count("GetChange"), 2);
        assert!(state.sets.keys().all(|(zone, _)| zone != "ZPRIVATE"));
    }

    r53.add_txt("_acme-challenge.example.com.", "wildcard-token")
        .await
        .expect("add wildcard");
    assert_eq!(
        fake.state().set("ZPUBLIC", APEX).map(|s| s.values),
        Some(vec!["\"apex-token\"".into(), "\"wildcard-token\"".into()])
    );

    r53.remove_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("remove apex");
    {
        let state = fake.state();
        assert_eq!(
            state.set("ZPUBLIC", APEX),
            Some(TxtSet {
                ttl: 60,
                values: vec!["\"wildcard-token\"".into()]
            })
        );
        assert_eq!(
            state.changes_made.last().map(|c| c.0.as_str()),
            Some("UPSERT")
        );
    }

    // Removing a value that is not there changes nothing.
    let changes = fake.state().changes_made.len();
    r53.remove_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("remove again");
    assert_eq!(fake.state().changes_made.len(), changes);

    r53.remove_txt("_acme-challenge.example.com", "wildcard-token")
        .await
        .expect("remove last");
    {
        let state = fake.state();
        assert_eq!(state.set("ZPUBLIC", APEX), None);
        let (action, _, deleted) = state.changes_made.last().expect("a change");
        assert_eq!(action, "DELETE");
        assert_eq!(deleted.values, vec!["\"wildcard-token\"".to_owned()]);
        assert_eq!(
            state.set("ZPUBLIC", "_acme-challenge.www.example.com."),
            unrelated
        );
    }
    r53.remove_txt("_acme-challenge.example.com", "wildcard-token")
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn route53_finds_the_longest_public_zone() {
    let (fake, url) = route53_fake(R53State::standard()).await;
    let r53 = route53(&url, R53_SECRET, None, None);
    assert_eq!(
        r53.zone_for("_acme-challenge.www.sub.example.com")
            .await
            .expect("sub"),
        "ZSUB"
    );
    assert_eq!(
        r53.zone_for("_acme-challenge.Example.COM.")
            .await
            .expect("apex"),
        "ZPUBLIC"
    );
    let missing = r53
        .zone_for("_acme-challenge.example.net")
        .await
        .expect_err("no zone");
    assert!(
        missing.to_string().contains("_acme-challenge.example.net"),
        "{missing}"
    );

    r53.add_txt("_acme-challenge.www.sub.example.com", "sub-token")
        .await
        .expect("add in sub");
    assert_eq!(
        fake.state()
            .set("ZSUB", "_acme-challenge.www.sub.example.com.")
            .map(|s| s.values),
        Some(vec!["\"sub-token\"".into()])
    );

    // A configured zone is used as it is.
    let lookups = fake.state().count("ListHostedZonesByName");
    let configured = route53(&url, R53_SECRET, None, Some("/hostedzone/ZORG"));
    assert_eq!(
        configured
            .zone_for("anything.example.org")
            .await
            .expect("configured"),
        "ZORG"
    );
    configured
        .add_txt("_acme-challenge.example.org", "org-token")
        .await
        .expect("add in org");
    assert_eq!(fake.state().count("ListHostedZonesByName"), lookups);
    assert!(
        fake.state()
            .set("ZORG", "_acme-challenge.example.org.")
            .is_some()
    );
}

#[tokio::test]
async fn route53_wrong_secret_is_refused_without_leaking_it() {
    let (fake, url) = route53_fake(R53State::standard()).await;
    let wrong = "wrong/Secret+Key-123";
    let r53 = route53(&url, wrong, None, None);
    let error = r53
        .add_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("refused");
    let text = format!("{error} {error:?}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(text.contains("403"), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(R53_SECRET),
        "{text}"
    );
    assert!(!format!("{r53:?}").contains(wrong));
    assert_eq!(fake.state().set("ZPUBLIC", APEX), None);
}

#[tokio::test]
async fn route53_signs_the_session_token() {
    let mut state = R53State::standard();
    state.session_token = Some("FwoGZXIvYXdzEXAMPLETOKEN");
    let (fake, url) = route53_fake(state).await;
    let r53 = route53(&url, R53_SECRET, Some("FwoGZXIvYXdzEXAMPLETOKEN"), None);
    r53.add_txt("_acme-challenge.example.com", "token")
        .await
        .expect("with session token");
    assert!(fake.state().set("ZPUBLIC", APEX).is_some());

    let without = route53(&url, R53_SECRET, None, None);
    let error = without
        .remove_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("no token");
    assert!(
        error.to_string().contains("InvalidClientTokenId"),
        "{error}"
    );
}

#[tokio::test]
async fn route53_api_errors_carry_their_code() {
    let (_fake, url) = route53_fake(R53State::standard()).await;
    let r53 = route53(&url, R53_SECRET, None, Some("ZMISSING"));
    let error = r53
        .add_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("no zone");
    let text = error.to_string();
    assert!(
        text.contains("404") && text.contains("NoSuchHostedZone"),
        "{text}"
    );
    assert!(
        text.contains("ListResourceRecordSets"),
        "names the call that failed: {text}"
    );
}

#[tokio::test]
async fn route53_gives_up_when_the_change_stays_pending() {
    let mut state = R53State::standard();
    state.pending_polls = u32::MAX;
    let (fake, url) = route53_fake(state).await;
    let r53 = route53(&url, R53_SECRET, None, None)
        .with_change_polling(Duration::from_millis(10), Duration::from_millis(100));
    let error = r53
        .add_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("timeout");
    assert!(error.to_string().contains("INSYNC"), "{error}");
    assert!(fake.state().count("GetChange") >= 2);
}

// ---------------------------------------------------------------------------------------
// AliDNS.

const ALI_KEY_ID: &str = "LTAIvigiltest";
const ALI_SECRET: &str = "ali-Secret-never-printed";

#[derive(Debug, Clone, PartialEq)]
struct AliRecord {
    id: u64,
    domain: String,
    rr: String,
    kind: String,
    value: String,
    ttl: u32,
}

#[derive(Default)]
struct AliState {
    domains: Vec<&'static str>,
    records: Vec<AliRecord>,
    next_id: u64,
    nonces: HashSet<String>,
    calls: Vec<String>,
    forbid_add: bool,
}

impl AliState {
    fn standard() -> Self {
        let mut state = AliState {
            domains: vec!["example.com", "sub.example.com"],
            next_id: 100,
            ..AliState::default()
        };
        state.insert(
            "example.com",
            "_acme-challenge.www",
            "TXT",
            "unrelated",
            600,
        );
        state.insert(
            "example.com",
            "_acme-challenge",
            "TXT",
            "someone-elses-token",
            600,
        );
        state.insert(
            "example.com",
            "_acme-challenge",
            "CNAME",
            "elsewhere.example.net",
            600,
        );
        state
    }

    fn insert(&mut self, domain: &str, rr: &str, kind: &str, value: &str, ttl: u32) -> u64 {
        self.next_id += 1;
        self.records.push(AliRecord {
            id: self.next_id,
            domain: domain.into(),
            rr: rr.into(),
            kind: kind.into(),
            value: value.into(),
            ttl,
        });
        self.next_id
    }

    fn txt(&self, domain: &str, rr: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .records
            .iter()
            .filter(|r| r.domain == domain && r.rr == rr && r.kind == "TXT")
            .map(|r| r.value.clone())
            .collect();
        values.sort();
        values
    }
}

fn ali_json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    response
}

fn ali_error(status: StatusCode, code: &str, message: &str) -> Response {
    ali_json(
        status,
        json!({
            "RequestId": "6A8E3A5B-0000-4C1D-9B8E-000000000000",
            "HostId": "alidns.aliyuncs.com",
            "Code": code,
            "Message": message,
        }),
    )
}

/// Recomputes the ACS3-HMAC-SHA256 signature of a request.
fn check_acs3(
    fake: &Fake<AliState>,
    parts: &Parts,
    body: &[u8],
) -> Result<(), (StatusCode, &'static str, String)> {
    let refuse =
        |code: &'static str, message: String| Err((StatusCode::BAD_REQUEST, code, message));
    let Some(fields) =
        header_value(parts, "authorization").and_then(|a| a.strip_prefix("ACS3-HMAC-SHA256 "))
    else {
        return refuse(
            "MissingAuthorization",
            "no ACS3-HMAC-SHA256 Authorization".into(),
        );
    };
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for field in fields.split(',') {
        match field.split_once('=') {
            Some(("Credential", v)) => credential = v,
            Some(("SignedHeaders", v)) => signed_headers = v,
            Some(("Signature", v)) => signature = v,
            _ => return refuse("IncompleteSignature", format!("unexpected field {field:?}")),
        }
    }
    if credential != fake.access_key_id {
        return Err((
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.".into(),
        ));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    if signed != sorted {
        return refuse("IncompleteSignature", "SignedHeaders are not sorted".into());
    }
    for required in [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ] {
        if !signed.contains(&required) {
            return refuse("IncompleteSignature", format!("{required} is not signed"));
        }
    }
    for name in parts.headers.keys() {
        let name = name.as_str();
        if (name.starts_with("x-acs-") || name == "content-type") && !signed.contains(&name) {
            return refuse("IncompleteSignature", format!("{name} is not signed"));
        }
    }
    let payload_hash = sha256_hex(body);
    if header_value(parts, "x-acs-content-sha256") != Some(payload_hash.as_str()) {
        return refuse(
            "SignatureDoesNotMatch",
            "x-acs-content-sha256 is not the body's".into(),
        );
    }
    let date = header_value(parts, "x-acs-date").unwrap_or_default();
    if !date.ends_with('Z') || !date.parse::<jiff::Timestamp>().is_ok_and(fresh) {
        return refuse(
            "InvalidTimeStamp.Expired",
            format!("bad or stale x-acs-date {date}"),
        );
    }

    let mut canonical_headers = String::new();
    for name in &signed {
        let Some(value) = header_value(parts, name) else {
            return refuse(
                "IncompleteSignature",
                format!("signed header {name} is missing"),
            );
        };
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical_uri = parts
        .uri
        .path()
        .split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/");
    let canonical_request = format!(
        "{}\n{canonical_uri}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        parts.method,
        canonical_query(&query_pairs(parts)),
    );
    let string_to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    if hex::encode(hmac_sha256(fake.secret.as_bytes(), &string_to_sign)) != signature {
        return refuse(
            "SignatureDoesNotMatch",
            format!("signature differs; the canonical request was:\n{canonical_request}"),
        );
    }
    let nonce = header_value(parts, "x-acs-signature-nonce")
        .unwrap_or_default()
        .to_owned();
    if !fake.state().nonces.insert(nonce) {
        return refuse("SignatureNonceUsed", "the nonce was used before".into());
    }
    Ok(())
}

fn record_json(r: &AliRecord) -> serde_json::Value {
    json!({
        "RR": r.rr,
        "Line": "default",
        "Status": "ENABLE",
        "Locked": false,
        "Type": r.kind,
        "DomainName": r.domain,
        "Value": r.value,
        "RecordId": r.id.to_string(),
        "TTL": r.ttl,
        "Weight": 1,
    })
}

async fn alidns_api(State(fake): State<Arc<Fake<AliState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return ali_error(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "RPC calls POST /",
        );
    }
    if let Err((status, code, message)) = check_acs3(&fake, &parts, &body) {
        return ali_error(status, code, &message);
    }
    if header_value(&parts, "x-acs-version") != Some("2015-01-09") {
        return ali_error(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            "unknown API version",
        );
    }
    let action = header_value(&parts, "x-acs-action")
        .unwrap_or_default()
        .to_owned();
    let params = query_pairs(&parts);
    let mut state = fake.state();
    state.calls.push(action.clone());
    let domain = param(&params, "DomainName").unwrap_or_default().to_owned();
    let known_domain = state.domains.contains(&domain.as_str());
    let no_domain = || {
        ali_error(
            StatusCode::BAD_REQUEST,
            "InvalidDomainName.NoExist",
            "The specified domain name does not exist.",
        )
    };
    match action.as_str() {
        "DescribeDomainRecords" => {
            if !known_domain {
                return no_domain();
            }
            let contains = |hay: &str, key: Option<&str>| {
                key.is_none_or(|k| hay.to_lowercase().contains(&k.to_lowercase()))
            };
            let kind = param(&params, "Type");
            let page: usize = param(&params, "PageNumber")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let size: usize = param(&params, "PageSize")
                .and_then(|p| p.parse().ok())
                .unwrap_or(20);
            if !(1..=500).contains(&size) || page == 0 {
                return ali_error(StatusCode::BAD_REQUEST, "InvalidPageSize", "bad paging");
            }
            let matching: Vec<&AliRecord> = state
                .records
                .iter()
                .filter(|r| r.domain == domain)
                .filter(|r| contains(&r.rr, param(&params, "RRKeyWord")))
                .filter(|r| contains(&r.value, param(&params, "ValueKeyWord")))
                .filter(|r| kind.is_none_or(|k| r.kind.eq_ignore_ascii_case(k)))
                .collect();
            let listed: Vec<serde_json::Value> = matching
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|r| record_json(r))
                .collect();
            ali_json(
                StatusCode::OK,
                json!({
                    "RequestId": "536E9CAD-DB30-4647-AC87-AA5CC38C5382",
                    "TotalCount": matching.len(),
                    "PageNumber": page,
                    "PageSize": size,
                    "DomainRecords": { "Record": listed },
                }),
            )
        }
        "AddDomainRecord" => {
            if state.forbid_add {
                return ali_error(
                    StatusCode::FORBIDDEN,
                    "Forbidden.RAM",
                    "User not authorized to operate on the specified resource.",
                );
            }
            if !known_domain {
                return no_domain();
            }
            let (Some(rr), Some(kind), Some(value)) = (
                param(&params, "RR"),
                param(&params, "Type"),
                param(&params, "Value"),
            ) else {
                return ali_error(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    "RR, Type, Value",
                );
            };
            let ttl: u32 = param(&params, "TTL")
                .and_then(|t| t.parse().ok())
                .unwrap_or(600);
            if kind != "TXT" || rr.is_empty() || rr.ends_with('.') || rr.contains(&domain) {
                return ali_error(StatusCode::BAD_REQUEST, "InvalidParameter", "RR or Type");
            }
            if ttl < 600 {
                return ali_error(StatusCode::BAD_REQUEST, "InvalidParameter", "TTL below 600");
            }
            let duplicate = state.records.iter().any(|r| {
                r.domain == domain
                    && r.rr.eq_ignore_ascii_case(rr)
                    && r.kind == kind
                    && r.value == value
            });
            if duplicate {
                return ali_error(
                    StatusCode::BAD_REQUEST,
                    "DomainRecordDuplicate",
                    "The DNS record already exists.",
                );
            }
            let id = state.insert(&domain, rr, kind, value, ttl);
            ali_json(
                StatusCode::OK,
                json!({
                    "RequestId": "3B9BA57D-0000-4E3B-8A4C-000000000001",
                    "RecordId": id.to_string(),
                }),
            )
        }
        "DeleteDomainRecord" => {
            let id = param(&params, "RecordId").unwrap_or_default().to_owned();
            let Some(at) = state.records.iter().position(|r| r.id.to_string() == id) else {
                return ali_error(
                    StatusCode::BAD_REQUEST,
                    "DomainRecordNotBelongToUser",
                    "The DNS record does not exist or does not belong to you.",
                );
            };
            state.records.remove(at);
            ali_json(
                StatusCode::OK,
                json!({ "RequestId": "3B9BA57D-0000-4E3B-8A4C-000000000002", "RecordId": id }),
            )
        }
        _ => ali_error(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "unknown action",
        ),
    }
}

async fn alidns_fake(state: AliState) -> (Arc<Fake<AliState>>, String) {
    let fake = Arc::new(Fake {
        state: Mutex::new(state),
        access_key_id: ALI_KEY_ID,
        secret: ALI_SECRET,
    });
    let url = serve(Router::new().fallback(alidns_api).with_state(fake.clone())).await;
    (fake, url)
}

fn alidns(url: &str, secret: &str) -> AliDns {
    let credentials = AliDnsCredentials {
        access_key_id: ALI_KEY_ID.to_owned(),
        access_key_secret: secret.to_owned(),
    };
    AliDns::new(client(), Some(url.to_owned()), "cn-hangzhou", credentials)
}

#[tokio::test]
async fn alidns_add_remove_keeps_other_records() {
    let (fake, url) = alidns_fake(AliState::standard()).await;
    let ali = alidns(&url, ALI_SECRET);
    let before: Vec<AliRecord> = fake.state().records.clone();

    ali.add_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("add apex");
    {
        let state = fake.state();
        assert_eq!(
            state.txt("example.com", "_acme-challenge"),
            ["apex-token", "someone-elses-token"]
        );
        let added = state.records.last().expect("a record");
        assert_eq!((added.kind.as_str(), added.ttl), ("TXT", 600));
    }

    // The same value again is already there: success, and no second record.
    ali.add_txt("_acme-challenge.example.com.", "apex-token")
        .await
        .expect("duplicate is fine");
    ali.add_txt("_acme-challenge.example.com", "wildcard-token")
        .await
        .expect("add wildcard");
    assert_eq!(
        fake.state().txt("example.com", "_acme-challenge"),
        ["apex-token", "someone-elses-token", "wildcard-token"]
    );

    ali.remove_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("remove apex");
    assert_eq!(
        fake.state().txt("example.com", "_acme-challenge"),
        ["someone-elses-token", "wildcard-token"]
    );
    ali.remove_txt("_acme-challenge.example.com", "apex-token")
        .await
        .expect("remove again");
    ali.remove_txt("_acme-challenge.example.com", "wildcard-token")
        .await
        .expect("remove last");
    assert_eq!(
        fake.state().records,
        before,
        "only our records came and went"
    );
    assert!(
        fake.state()
            .calls
            .iter()
            .filter(|c| *c == "DeleteDomainRecord")
            .count()
            == 2
    );
}

#[tokio::test]
async fn alidns_finds_the_longest_domain() {
    let (fake, url) = alidns_fake(AliState::standard()).await;
    let ali = alidns(&url, ALI_SECRET);
    assert_eq!(
        ali.zone_for("_acme-challenge.x.sub.example.com")
            .await
            .expect("sub"),
        "sub.example.com"
    );
    assert_eq!(
        ali.zone_for("_acme-challenge.www.example.com")
            .await
            .expect("apex"),
        "example.com"
    );
    let missing = ali
        .zone_for("_acme-challenge.example.net")
        .await
        .expect_err("not held");
    assert!(
        missing.to_string().contains("_acme-challenge.example.net"),
        "{missing}"
    );

    ali.add_txt("_acme-challenge.x.sub.example.com", "sub-token")
        .await
        .expect("add in sub");
    assert_eq!(
        fake.state().txt("sub.example.com", "_acme-challenge.x"),
        ["sub-token"]
    );
    ali.remove_txt("_acme-challenge.x.sub.example.com", "sub-token")
        .await
        .expect("remove");
    assert!(
        fake.state()
            .txt("sub.example.com", "_acme-challenge.x")
            .is_empty()
    );
}

#[tokio::test]
async fn alidns_wrong_secret_is_refused_without_leaking_it() {
    let (fake, url) = alidns_fake(AliState::standard()).await;
    let wrong = "wrong-ali-Secret-456";
    let ali = alidns(&url, wrong);
    let before = fake.state().records.clone();
    let error = ali
        .add_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("refused");
    let text = format!("{error} {error:?}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(ALI_SECRET),
        "{text}"
    );
    assert!(!format!("{ali:?}").contains(wrong));
    assert_eq!(fake.state().records, before);
}

#[tokio::test]
async fn alidns_api_errors_carry_their_code() {
    let mut state = AliState::standard();
    state.forbid_add = true;
    let (_fake, url) = alidns_fake(state).await;
    let ali = alidns(&url, ALI_SECRET);
    let error = ali
        .add_txt("_acme-challenge.example.com", "token")
        .await
        .expect_err("forbidden");
    let text = error.to_string();
    assert!(
        text.contains("403") && text.contains("Forbidden.RAM"),
        "{text}"
    );
    assert!(
        text.contains("AddDomainRecord"),
        "names the call that failed: {text}"
    );
}
