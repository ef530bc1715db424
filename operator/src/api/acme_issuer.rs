//! `AcmeIssuer`: an ACME account and the challenge solvers it may use.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{SecretRef, conditions_schema, impl_has_conditions};

/// An ACME account on one directory, and the solvers that answer its challenges.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "AcmeIssuer",
    status = "AcmeIssuerStatus",
    shortname = "acmeiss",
    category = "vigil",
    doc = "An ACME account (Let's Encrypt, ZeroSSL, a private ACME server) and the challenge solvers used to prove control of names.",
    printcolumn(name = "Server", type_ = "string", json_path = ".spec.server"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerSpec {
    /// ACME directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && self.startsWith('https://')").message("server must be an https URL of an ACME directory"))]
    pub server: String,
    /// Contact email registered with the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$')").message("email must be an email address"))]
    pub email: Option<String>,
    /// Secret holding the account's private key (key `tls.key`); created when absent. Its
    /// namespace defaults to the operator's.
    pub private_key_secret_ref: SecretRef,
    /// External Account Binding, for CAs that require it (ZeroSSL, Google Trust Services, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// PEM bundle of CAs to trust for the directory's TLS certificate, for private ACME servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("caBundle must hold PEM certificates"))]
    pub ca_bundle: Option<String>,
    /// Challenge solvers; for each name the most specific matching selector wins.
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("solvers must name at least one solver"))]
    pub solvers: Vec<AcmeSolver>,
}

/// External Account Binding credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    /// Key identifier given by the CA.
    #[serde(rename = "keyID")]
    pub key_id: String,
    /// Secret key holding the base64url HMAC key given by the CA.
    pub key_secret_ref: SecretRef,
}

/// One way of answering challenges, for the names its selector matches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.http01) != has(self.dns01)").message("a solver must set exactly one of http01 or dns01"))]
#[serde(rename_all = "camelCase")]
pub struct AcmeSolver {
    /// Names this solver is used for; matches every name when empty.
    #[serde(default)]
    pub selector: SolverSelector,
    /// Answer HTTP-01 challenges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http01: Option<Http01Solver>,
    /// Answer DNS-01 challenges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns01: Option<Dns01Solver>,
}

/// Which names a solver applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SolverSelector {
    /// DNS zones: the solver applies to names in these zones (and their subdomains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 253)))]
    pub dns_zones: Vec<String>,
    /// Exact names the solver applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 253)))]
    pub dns_names: Vec<String>,
}

/// HTTP-01 solver: the operator answers challenges itself on its challenge port
/// (`/.well-known/acme-challenge/`); port 80 of every name must reach it, e.g. through the
/// chart's `acme-http01` Service behind a load balancer or an Ingress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Http01Solver {}

/// DNS-01 solver: exactly one DNS provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.rfc2136), has(self.route53), has(self.alidns)].filter(x, x).size() == 1").message("dns01 must set exactly one of rfc2136, route53 or alidns"))]
#[serde(rename_all = "camelCase")]
pub struct Dns01Solver {
    /// Dynamic DNS updates (RFC 2136) signed with TSIG, e.g. to bind9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136Provider>,
    /// Amazon Route 53.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Provider>,
    /// Alibaba Cloud DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alidns: Option<AliDnsProvider>,
}

/// RFC 2136 dynamic update provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rfc2136Provider {
    /// Authoritative server as `host:port`.
    #[schemars(length(max = 261))]
    #[x_kube(validation = Rule::new("self.matches('^([A-Za-z0-9.-]+|\\\\[[0-9A-Fa-f:.]+\\\\]):[0-9]{1,5}$')").message("nameserver must be host:port"))]
    pub nameserver: String,
    /// Name of the TSIG key.
    pub tsig_key_name: String,
    /// TSIG algorithm.
    #[serde(default)]
    pub tsig_algorithm: TsigAlgorithm,
    /// Secret key holding the base64 TSIG secret.
    pub tsig_secret_ref: SecretRef,
}

/// TSIG HMAC algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TsigAlgorithm {
    /// HMAC-SHA256.
    #[default]
    #[serde(rename = "HMACSHA256")]
    HmacSha256,
    /// HMAC-SHA384.
    #[serde(rename = "HMACSHA384")]
    HmacSha384,
    /// HMAC-SHA512.
    #[serde(rename = "HMACSHA512")]
    HmacSha512,
}

/// Amazon Route 53 provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Provider {
    /// AWS region of the API endpoint.
    pub region: String,
    /// Hosted zone to write to; looked up from the name when unset.
    #[serde(
        default,
        rename = "hostedZoneID",
        skip_serializing_if = "Option::is_none"
    )]
    pub hosted_zone_id: Option<String>,
    /// Secret with `access-key-id` and `secret-access-key` (and optionally `session-token`).
    pub credentials_secret_ref: SecretRef,
    /// API endpoint; `https://route53.amazonaws.com` when unset (set it for the China
    /// partition or a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("endpoint must be a URL"))]
    pub endpoint: Option<String>,
}

/// Alibaba Cloud DNS provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AliDnsProvider {
    /// Region of the API endpoint, e.g. `cn-hangzhou`.
    #[serde(rename = "regionID")]
    pub region_id: String,
    /// Secret with `access-key-id` and `access-key-secret`.
    pub credentials_secret_ref: SecretRef,
    /// API endpoint; `https://alidns.<regionID>.aliyuncs.com` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self)").message("endpoint must be a URL"))]
    pub endpoint: Option<String>,
}

/// Observed state of an issuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` when the account is registered.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// URI of the registered ACME account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_uri: Option<String>,
}

impl_has_conditions!(AcmeIssuerStatus);
