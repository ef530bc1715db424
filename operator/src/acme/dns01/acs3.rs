//! Alibaba Cloud's V3 request signature, `ACS3-HMAC-SHA256`, written from the published
//! algorithm:
//! <https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature>.
//!
//! The caller describes the request exactly as it will be sent; [`sign`] returns the
//! `x-acs-*` headers and the `Authorization` header to add. The time and the nonce are
//! arguments, so tests are deterministic.

use jiff::Timestamp;
use ring::hmac;

use super::sigv4::{canonical_request, sha256_hex};

/// The algorithm name, first line of the string to sign and first word of `Authorization`.
const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The request as it will be sent.
pub(crate) struct Request<'a> {
    /// The HTTP method in upper case.
    pub(crate) method: &'a str,
    /// The `Host` header value, with `:port` when the port is not the scheme's default.
    pub(crate) host: &'a str,
    /// The path as sent; `/` for RPC-style APIs.
    pub(crate) path: &'a str,
    /// The query parameters, decoded; they are encoded and sorted here.
    pub(crate) query: &'a [(&'a str, &'a str)],
    /// The API name, sent as `x-acs-action`.
    pub(crate) action: &'a str,
    /// The API version, sent as `x-acs-version`.
    pub(crate) version: &'a str,
    /// Other headers that are sent; `content-type` and `x-acs-*` ones are signed.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    /// The body (empty for none).
    pub(crate) payload: &'a [u8],
}

/// What [`sign`] computed: the headers to send and, for tests, the canonical request.
pub(crate) struct Signed {
    /// The headers to add, lower-case names: the five `x-acs-*` ones and `authorization`.
    pub(crate) headers: Vec<(&'static str, String)>,
    #[cfg_attr(not(test), allow(dead_code))]
    canonical_request: String,
}

/// Signs `req` with the AccessKey pair at time `now`, with `nonce` as
/// `x-acs-signature-nonce` (unique per request).
pub(crate) fn sign(
    req: &Request<'_>,
    access_key_id: &str,
    access_key_secret: &str,
    now: Timestamp,
    nonce: &str,
) -> Signed {
    let payload_hash = sha256_hex(req.payload);
    let added: Vec<(&'static str, String)> = vec![
        ("x-acs-action", req.action.to_owned()),
        ("x-acs-version", req.version.to_owned()),
        ("x-acs-date", now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ("x-acs-signature-nonce", nonce.to_owned()),
        ("x-acs-content-sha256", payload_hash.clone()),
    ];

    // Signed: host, content-type and every x-acs-* header; names lower-cased, values trimmed.
    let mut signed: Vec<(String, String)> = std::iter::once(("host", req.host))
        .chain(req.headers.iter().copied())
        .chain(added.iter().map(|(n, v)| (*n, v.as_str())))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .filter(|(name, _)| name == "host" || name == "content-type" || name.starts_with("x-acs-"))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let (canonical_request, signed_headers) =
        canonical_request(req.method, req.path, req.query, &signed, &payload_hash);
    let string_to_sign = format!("{ALGORITHM}\n{}", sha256_hex(canonical_request.as_bytes()));
    let key = hmac::Key::new(hmac::HMAC_SHA256, access_key_secret.as_bytes());
    let signature = hex::encode(hmac::sign(&key, string_to_sign.as_bytes()));

    let mut headers = added;
    headers.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},\
             Signature={signature}"
        ),
    ));
    Signed {
        headers,
        canonical_request,
    }
}

#[cfg(test)]
mod tests {
    //! The example with fixed values of the V3 signature documentation linked at the top of
    //! this file, also published in Chinese at
    //! <https://help.aliyun.com/zh/sdk/product-overview/v3-request-structure-and-signature>.

    use super::*;

    /// The documented example: an RPC-style `RunInstances` POST with its parameters in the
    /// query string and no body.
    #[test]
    fn alibaba_published_example() {
        let req = Request {
            method: "POST",
            host: "ecs.cn-shanghai.aliyuncs.com",
            path: "/",
            query: &[
                ("RegionId", "cn-shanghai"),
                (
                    "ImageId",
                    "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd",
                ),
            ],
            action: "RunInstances",
            version: "2014-05-26",
            headers: &[],
            payload: b"",
        };
        let at: Timestamp = "2023-10-26T10:22:32Z".parse().expect("timestamp");
        let signed = sign(
            &req,
            "YourAccessKeyId",
            "YourAccessKeySecret",
            at,
            "3156853299f313e23d1673dc12e1703d",
        );
        assert_eq!(
            signed.canonical_request,
            "POST\n/\n\
             ImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\n\
             x-acs-content-sha256:\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\n\
             x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;\
             x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(signed.canonical_request.as_bytes()),
            "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        let authorization = signed
            .headers
            .iter()
            .find(|(name, _)| *name == "authorization")
            .map(|(_, value)| value.as_str());
        assert_eq!(
            authorization,
            Some(
                "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;\
                 x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,\
                 Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
            )
        );
        assert!(
            signed
                .headers
                .iter()
                .all(|(_, v)| !v.contains("YourAccessKeySecret"))
        );
    }

    #[test]
    fn content_type_is_signed_and_other_headers_are_not() {
        let req = Request {
            method: "POST",
            host: "alidns.aliyuncs.com",
            path: "/",
            query: &[("Value", "a b"), ("DomainName", "example.com")],
            action: "AddDomainRecord",
            version: "2015-01-09",
            headers: &[
                ("Content-Type", " application/json "),
                ("User-Agent", "vigil"),
            ],
            payload: b"{}",
        };
        let at: Timestamp = "2024-01-02T03:04:05Z".parse().expect("timestamp");
        let signed = sign(&req, "id", "secret", at, "n");
        assert!(
            signed
                .canonical_request
                .contains("\nDomainName=example.com&Value=a%20b\n")
        );
        assert!(
            signed
                .canonical_request
                .contains("content-type:application/json\nhost:")
        );
        assert!(!signed.canonical_request.contains("user-agent"));
        assert!(signed.canonical_request.contains(
            "\ncontent-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;\
             x-acs-signature-nonce;x-acs-version\n"
        ));
    }
}
