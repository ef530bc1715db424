//! AWS Signature Version 4 for request headers, written from the published algorithm:
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>.
//!
//! The caller describes the request exactly as it will be sent (method, `Host`, the path as
//! it goes on the wire, the decoded query pairs, the other headers to sign and the body);
//! [`sign`] returns the headers to add. The time is an argument, so tests are deterministic.

use jiff::Timestamp;
use ring::hmac;

pub(crate) use crate::hash::sha256_hex;

/// The algorithm name that starts the string to sign and the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who signs: an access key pair and, for temporary credentials, the session token.
pub(crate) struct Credentials<'a> {
    /// The access key id, sent in the clear in the credential scope.
    pub(crate) access_key_id: &'a str,
    /// The secret access key; it only seeds the key derivation.
    pub(crate) secret_access_key: &'a str,
    /// The STS session token, sent (and signed) as `X-Amz-Security-Token`.
    pub(crate) session_token: Option<&'a str>,
}

/// The request as it will be sent.
pub(crate) struct Request<'a> {
    /// The HTTP method in upper case.
    pub(crate) method: &'a str,
    /// The `Host` header value, with `:port` when the port is not the scheme's default.
    pub(crate) host: &'a str,
    /// The path as it is sent (already percent-encoded where needed), starting with `/`.
    pub(crate) path: &'a str,
    /// The query parameters, decoded; they are encoded and sorted here.
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// Other headers that are sent and must be signed, e.g. `Content-Type`.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// The body (empty for none).
    pub(crate) payload: &'a [u8],
}

/// Where the signature is valid: a region and a service name, e.g. `us-east-1`/`route53`.
pub(crate) struct Scope<'a> {
    /// The signing region.
    pub(crate) region: &'a str,
    /// The signing service name.
    pub(crate) service: &'a str,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Percent-encodes everything but the RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`),
/// with upper-case hex, as SigV4 requires; `/` is kept when `keep_slash` is set.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else if b == b'/' && keep_slash {
            out.push('/');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query string both as sent and as canonicalised: each name and value encoded, the pairs
/// sorted by name, then value.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical URI: every segment of the path as sent is URI-encoded once more (the rule
/// for every service but S3). Paths made only of unreserved characters are unchanged.
pub(crate) fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|segment| uri_encode(segment, false))
        .collect::<Vec<_>>()
        .join("/")
}

/// A header value for the canonical form: trimmed, inner runs of spaces folded to one.
fn canonical_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The signed parts of a request, in the canonical forms.
struct Canonical {
    request: String,
    signed_headers: String,
}

fn canonical(req: &Request<'_>, extra: &[(&str, &str)], payload_hash: &str) -> Canonical {
    let mut headers: Vec<(String, String)> = std::iter::once(("host", req.host))
        .chain(req.headers.iter().copied())
        .chain(extra.iter().copied())
        .map(|(name, value)| (name.to_ascii_lowercase(), canonical_header_value(value)))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated names are joined with commas, in the order given.
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match merged.last_mut() {
            Some((last, values)) if *last == name => {
                values.push(',');
                values.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let (request, signed_headers) =
        canonical_request(req.method, req.path, req.query, &merged, payload_hash);
    Canonical {
        request,
        signed_headers,
    }
}

/// The canonical request shared by SigV4 and ACS3 (which follows SigV4's layout): method,
/// URI, query, `name:value` lines of the signed headers (sorted, lower-case names), the
/// `;`-joined names, and the payload hash. Returns the request and the signed header names.
pub(crate) fn canonical_request(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    sorted_headers: &[(String, String)],
    payload_hash: &str,
) -> (String, String) {
    let canonical_headers: String = sorted_headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = sorted_headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        canonical_uri(path),
        canonical_query(query),
    );
    (request, signed_headers)
}

/// The derived key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
/// "aws4_request")`.
fn signing_key(secret: &str, date: &str, scope: &Scope<'_>) -> hmac::Tag {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    hmac_sha256(k_service.as_ref(), b"aws4_request")
}

/// What [`sign`] computed: the headers to send and, for tests, the intermediate strings.
pub(crate) struct Signed {
    /// The headers to add to the request, lower-case names: `x-amz-date`, then
    /// `x-amz-content-sha256` and `x-amz-security-token` when used, then `authorization`.
    pub(crate) headers: Vec<(&'static str, String)>,
    #[cfg_attr(not(test), allow(dead_code))]
    canonical_request: String,
    #[cfg_attr(not(test), allow(dead_code))]
    string_to_sign: String,
}

/// Signs `req` at time `now`. With `content_sha256_header` the body hash is also sent (and
/// signed) as `X-Amz-Content-Sha256`.
pub(crate) fn sign(
    req: &Request<'_>,
    credentials: &Credentials<'_>,
    scope: &Scope<'_>,
    now: Timestamp,
    content_sha256_header: bool,
) -> Signed {
    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = now.strftime("%Y%m%d").to_string();
    let payload_hash = sha256_hex(req.payload);

    let mut added: Vec<(&'static str, String)> = vec![("x-amz-date", amz_date.clone())];
    if content_sha256_header {
        added.push(("x-amz-content-sha256", payload_hash.clone()));
    }
    if let Some(token) = credentials.session_token {
        added.push(("x-amz-security-token", token.to_owned()));
    }
    let extra: Vec<(&str, &str)> = added.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let canonical = canonical(req, &extra, &payload_hash);

    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        sha256_hex(canonical.request.as_bytes())
    );
    let key = signing_key(credentials.secret_access_key, &date, scope);
    let signature = hex::encode(hmac_sha256(key.as_ref(), string_to_sign.as_bytes()));
    added.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{credential_scope}, SignedHeaders={}, Signature={signature}",
            credentials.access_key_id, canonical.signed_headers
        ),
    ));
    Signed {
        headers: added,
        canonical_request: canonical.request,
        string_to_sign,
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from the AWS SigV4 test suite. The original suite ("aws-sig-v4-test-suite",
    //! linked from <https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html>)
    //! and its successor in <https://github.com/awslabs/aws-c-auth> under
    //! `tests/aws-signing-test-suite/v4/` share the credentials, date, region and service below.

    use super::*;

    const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const HOST: &str = "example.amazonaws.com";
    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    fn at() -> Timestamp {
        "2015-08-30T12:36:00Z".parse().expect("timestamp")
    }

    fn creds(session_token: Option<&'static str>) -> Credentials<'static> {
        Credentials {
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET,
            session_token,
        }
    }

    fn header<'a>(signed: &'a Signed, name: &str) -> Option<&'a str> {
        signed
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn authorization(signed: &Signed) -> &str {
        header(signed, "authorization").expect("authorization header")
    }

    fn expected(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    fn get(query: &[(&str, &str)]) -> Signed {
        let req = Request {
            method: "GET",
            host: HOST,
            path: "/",
            query,
            headers: &[],
            payload: b"",
        };
        sign(&req, &creds(None), &SCOPE, at(), false)
    }

    #[test]
    fn get_vanilla() {
        let signed = get(&[]);
        assert_eq!(
            signed.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(header(&signed, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            authorization(&signed),
            expected(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let signed = get(&[("Param2", "value2"), ("Param1", "value1")]);
        assert!(
            signed
                .canonical_request
                .contains("\n/\nParam1=value1&Param2=value2\n")
        );
        assert_eq!(
            authorization(&signed),
            expected(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_vanilla() {
        let req = Request {
            method: "POST",
            host: HOST,
            path: "/",
            query: &[],
            headers: &[],
            payload: b"",
        };
        let signed = sign(&req, &creds(None), &SCOPE, at(), false);
        assert_eq!(
            authorization(&signed),
            expected(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let req = Request {
            method: "POST",
            host: HOST,
            path: "/",
            query: &[],
            headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            payload: b"Param1=value1",
        };
        let signed = sign(&req, &creds(None), &SCOPE, at(), false);
        assert_eq!(
            signed.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n\
             host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            authorization(&signed),
            expected(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    /// aws-c-auth: `v4/post-x-www-form-urlencoded/header-signed-request.txt`, which also sends
    /// `Content-Length` and the body hash as `X-Amz-Content-Sha256`.
    #[test]
    fn post_x_www_form_urlencoded_with_content_sha256() {
        let req = Request {
            method: "POST",
            host: HOST,
            path: "/",
            query: &[],
            headers: &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", "13"),
            ],
            payload: b"Param1=value1",
        };
        let signed = sign(&req, &creds(None), &SCOPE, at(), true);
        assert_eq!(
            header(&signed, "x-amz-content-sha256"),
            Some("9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
        );
        assert_eq!(
            authorization(&signed),
            expected(
                "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
                "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
            )
        );
    }

    /// aws-c-auth: `v4/get-vanilla-with-session-token/header-signed-request.txt`.
    #[test]
    fn get_vanilla_with_session_token() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let req = Request {
            method: "GET",
            host: HOST,
            path: "/",
            query: &[],
            headers: &[],
            payload: b"",
        };
        let signed = sign(&req, &creds(Some(token)), &SCOPE, at(), false);
        assert_eq!(header(&signed, "x-amz-security-token"), Some(token));
        assert_eq!(
            authorization(&signed),
            expected(
                "host;x-amz-date;x-amz-security-token",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("AZaz09-_.~", false), "AZaz09-_.~");
        assert_eq!(uri_encode("a b/c*d+é", false), "a%20b%2Fc%2Ad%2B%C3%A9");
        assert_eq!(uri_encode("/a b/c", true), "/a%20b/c");
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "x y"), ("A", "0")]),
            "A=0&a=x%20y&b=2"
        );
        assert_eq!(
            canonical_uri("/2013-04-01/hostedzone/Z1/rrset/"),
            "/2013-04-01/hostedzone/Z1/rrset/"
        );
    }

    #[test]
    fn the_secret_never_appears_in_the_headers() {
        let signed = get(&[]);
        for (_, value) in &signed.headers {
            assert!(!value.contains(SECRET));
        }
    }
}
