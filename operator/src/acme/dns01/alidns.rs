//! Alibaba Cloud DNS (AliDNS, API version 2015-01-09), RPC style: every call is a `POST /`
//! with its parameters in the query string and no body, signed with [`super::acs3`].
//!
//! Each TXT value is its own record (with a `RecordId`), so values of one name never
//! overwrite each other: [`AliDns::add_txt`] adds a record, [`AliDns::remove_txt`] deletes
//! the records whose host record, type and value are exactly ours.
//!
//! The domain of a name is found by probing: `DescribeDomainRecords` is asked about each
//! suffix of the name, longest first (at least two labels), and the first one the account
//! holds is the domain. A suffix the account does not hold answers
//! `InvalidDomainName.NoExist` (or `IncorrectDomainUser` when another account holds it).
//!
//! API reference:
//! <https://www.alibabacloud.com/help/en/dns/api-alidns-2015-01-09-dir-parsing-records>.

use jiff::Timestamp;
use ring::rand::SecureRandom;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ProviderError;
use super::acs3;
use super::route53::{endpoint, excerpt, transport};
use super::sigv4::canonical_query;

const PROVIDER: &str = "alidns";
const API_VERSION: &str = "2015-01-09";
/// The endpoint when no region is given.
const GLOBAL_ENDPOINT: &str = "https://alidns.aliyuncs.com";
/// `DescribeDomainRecords` returns at most this many records a page.
const PAGE_SIZE: u32 = 500;
/// Pages read at most when listing records (500 × 20 records).
const MAX_PAGES: u32 = 20;
/// Error codes that mean "this account holds no such domain".
const NOT_A_DOMAIN: &[&str] = &[
    "InvalidDomainName.NoExist",
    "IncorrectDomainUser",
    "InvalidDomainName.Format",
];

/// TTL, in seconds, of the records [`AliDns::add_txt`] adds (the smallest every AliDNS
/// edition accepts).
pub const TXT_TTL: u32 = 600;

/// An Alibaba Cloud AccessKey pair. `Debug` shows the AccessKey id only.
#[derive(Clone)]
pub struct AliDnsCredentials {
    /// The AccessKey id.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: String,
}

impl std::fmt::Debug for AliDnsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AliDnsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

/// An AliDNS client that publishes and removes `_acme-challenge` TXT values.
pub struct AliDns {
    http: reqwest::Client,
    endpoint: String,
    credentials: AliDnsCredentials,
}

impl std::fmt::Debug for AliDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AliDns")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AliDns {
    /// A client for `endpoint`, by default `https://alidns.<region_id>.aliyuncs.com`, or
    /// `https://alidns.aliyuncs.com` when `region_id` is empty.
    pub fn new(
        http: reqwest::Client,
        endpoint: Option<String>,
        region_id: &str,
        credentials: AliDnsCredentials,
    ) -> Self {
        let region_id = region_id.trim();
        let endpoint = endpoint.unwrap_or_else(|| {
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '-';
            if region_id.is_empty() || !region_id.chars().all(plain) {
                GLOBAL_ENDPOINT.to_owned()
            } else {
                format!("https://alidns.{region_id}.aliyuncs.com")
            }
        });
        AliDns {
            http,
            endpoint,
            credentials,
        }
    }

    /// The domain of the account that holds `fqdn`: the longest suffix of `fqdn` (on label
    /// boundaries, at least two labels) that the account holds.
    pub async fn zone_for(&self, fqdn: &str) -> Result<String, ProviderError> {
        let name = normalize_name(fqdn);
        let labels: Vec<&str> = name.split('.').collect();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let probe: Result<DescribeDomainRecordsResponse, _> = self
                .call(
                    "DescribeDomainRecords",
                    &[
                        ("DomainName", &candidate),
                        ("PageNumber", "1"),
                        ("PageSize", "1"),
                    ],
                )
                .await;
            match probe {
                Ok(_) => return Ok(candidate),
                Err(ProviderError::Api { code, .. }) if NOT_A_DOMAIN.contains(&code.as_str()) => {}
                Err(e) => return Err(e),
            }
        }
        Err(ProviderError::Other {
            provider: PROVIDER,
            message: format!("no domain of this account contains {fqdn}"),
        })
    }

    /// Adds a TXT record `value` at `fqdn`. A record with the same value that is already
    /// there (`DomainRecordDuplicate`) counts as added.
    pub async fn add_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let domain = self.zone_for(fqdn).await?;
        let rr = host_record(&normalize_name(fqdn), &domain);
        let ttl = TXT_TTL.to_string();
        let added: Result<RecordIdResponse, _> = self
            .call(
                "AddDomainRecord",
                &[
                    ("DomainName", &domain),
                    ("RR", &rr),
                    ("Type", "TXT"),
                    ("Value", value),
                    ("TTL", &ttl),
                ],
            )
            .await;
        match added {
            Ok(added) => {
                let record = record_id(&added.record_id);
                tracing::debug!(provider = PROVIDER, domain, rr, record, "TXT record added");
                Ok(())
            }
            Err(ProviderError::Api { code, .. }) if code == "DomainRecordDuplicate" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the TXT records at `fqdn` whose value is `value`; other records are left
    /// alone. No such record is not an error.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        let domain = self.zone_for(fqdn).await?;
        let rr = host_record(&normalize_name(fqdn), &domain);
        for record in self.txt_records(&domain, &rr, value).await? {
            let ours = record.rr.eq_ignore_ascii_case(&rr)
                && record.kind.eq_ignore_ascii_case("TXT")
                && record.value == value;
            if !ours {
                continue;
            }
            let id = record_id(&record.record_id);
            let _: RecordIdResponse = self
                .call("DeleteDomainRecord", &[("RecordId", &id)])
                .await?;
            tracing::debug!(provider = PROVIDER, domain, rr, record = %id, "TXT record deleted");
        }
        Ok(())
    }

    /// The TXT records of `domain` whose host record and value contain `rr` and `value`
    /// (AliDNS matches both as substrings, so the caller compares exactly).
    async fn txt_records(
        &self,
        domain: &str,
        rr: &str,
        value: &str,
    ) -> Result<Vec<Record>, ProviderError> {
        let mut records = Vec::new();
        let page_size = PAGE_SIZE.to_string();
        for page in 1..=MAX_PAGES {
            let page_number = page.to_string();
            let response: DescribeDomainRecordsResponse = self
                .call(
                    "DescribeDomainRecords",
                    &[
                        ("DomainName", domain),
                        ("RRKeyWord", rr),
                        ("Type", "TXT"),
                        ("ValueKeyWord", value),
                        ("PageNumber", &page_number),
                        ("PageSize", &page_size),
                    ],
                )
                .await?;
            let got = response.domain_records.records.len();
            records.extend(response.domain_records.records);
            let total = usize::try_from(response.total_count).unwrap_or(usize::MAX);
            if got < PAGE_SIZE as usize || records.len() >= total {
                break;
            }
        }
        Ok(records)
    }

    /// One signed RPC call; `action` names it in errors.
    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let endpoint = endpoint(PROVIDER, &self.endpoint)?;
        let url = format!("{}/?{}", endpoint.base, canonical_query(params));
        let request = acs3::Request {
            method: "POST",
            host: &endpoint.host,
            path: "/",
            query: params,
            action,
            version: API_VERSION,
            headers: &[],
            payload: b"",
        };
        let signed = acs3::sign(
            &request,
            &self.credentials.access_key_id,
            &self.credentials.access_key_secret,
            Timestamp::now(),
            &nonce()?,
        );
        let mut builder = self
            .http
            .post(url)
            .header(reqwest::header::HOST, &endpoint.host);
        for (name, value) in &signed.headers {
            builder = builder.header(*name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport(PROVIDER, action, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport(PROVIDER, action, &e))?;
        if !status.is_success() {
            let error: ErrorResponse = serde_json::from_str(&text).unwrap_or_default();
            return Err(ProviderError::Api {
                provider: PROVIDER,
                status: status.as_u16().to_string(),
                code: error.code.unwrap_or_else(|| "UnknownError".to_owned()),
                message: format!("{action}: {}", excerpt(&error.message.unwrap_or(text))),
            });
        }
        serde_json::from_str(&text).map_err(|e| ProviderError::Other {
            provider: PROVIDER,
            message: format!("{action}: unreadable response: {e}"),
        })
    }
}

/// A fresh `x-acs-signature-nonce`: 16 random bytes in hex.
fn nonce() -> Result<String, ProviderError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ProviderError::Other {
            provider: PROVIDER,
            message: "no randomness for the signature nonce".to_owned(),
        })?;
    Ok(hex::encode(bytes))
}

/// A name for comparisons: lower case, no final dot.
fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The host record (`RR`) of `fqdn` in `domain`: the labels before the domain, `@` for the
/// domain itself.
fn host_record(fqdn: &str, domain: &str) -> String {
    fqdn.strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or("@")
        .to_owned()
}

/// A record id, which AliDNS documents as a string but some answers give as a number.
fn record_id(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorResponse {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RecordIdResponse {
    #[serde(rename = "RecordId", default)]
    record_id: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct DescribeDomainRecordsResponse {
    #[serde(rename = "TotalCount", default)]
    total_count: u64,
    #[serde(rename = "DomainRecords", default)]
    domain_records: DomainRecords,
}

#[derive(Debug, Default, Deserialize)]
struct DomainRecords {
    #[serde(rename = "Record", default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    #[serde(rename = "RR")]
    rr: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Value")]
    value: String,
    #[serde(rename = "RecordId")]
    record_id: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_records_are_relative_to_the_domain() {
        assert_eq!(
            host_record("_acme-challenge.example.com", "example.com"),
            "_acme-challenge"
        );
        assert_eq!(
            host_record("_acme-challenge.www.example.com", "example.com"),
            "_acme-challenge.www"
        );
        assert_eq!(host_record("example.com", "example.com"), "@");
        assert_eq!(
            normalize_name("_ACME-challenge.Example.COM."),
            "_acme-challenge.example.com"
        );
    }

    #[test]
    fn endpoints_follow_the_region() {
        let http =
            crate::tls::http_client(None, std::time::Duration::from_secs(1)).expect("client");
        let credentials = AliDnsCredentials {
            access_key_id: "id".to_owned(),
            access_key_secret: "hidden-secret".to_owned(),
        };
        let regional = AliDns::new(http.clone(), None, "cn-hangzhou", credentials.clone());
        assert_eq!(regional.endpoint, "https://alidns.cn-hangzhou.aliyuncs.com");
        let global = AliDns::new(http.clone(), None, "", credentials.clone());
        assert_eq!(global.endpoint, GLOBAL_ENDPOINT);
        let custom = AliDns::new(
            http,
            Some("http://127.0.0.1:1".to_owned()),
            "cn-hangzhou",
            credentials,
        );
        assert_eq!(custom.endpoint, "http://127.0.0.1:1");
        assert!(!format!("{custom:?}").contains("hidden-secret"));
    }

    #[test]
    fn record_ids_may_be_numbers() {
        assert_eq!(record_id(&serde_json::json!("123")), "123");
        assert_eq!(record_id(&serde_json::json!(123)), "123");
    }
}
