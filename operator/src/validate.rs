//! Validation of Vigil objects, pure and shared by the controllers and the offline commands.
//!
//! Three layers, in the order the API server would apply them:
//! 1. [`SchemaValidator`]: the CRD's OpenAPI schema (unknown fields, types, enums) and its CEL
//!    rules, evaluated offline with the same rule text the API server enforces. The
//!    controllers skip this layer: objects in the cluster passed it at admission.
//! 2. Decoding into the typed API with the failing field's path.
//! 3. [`Validate`]: what no schema can say, such as references between objects and
//!    durations that must parse.
//!
//! Every problem is a [`FieldError`] that names the field path and what is wrong.

use std::collections::BTreeMap;
use std::fmt;

use kube::ResourceExt;
use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

use crate::api::cross_cloud_dns::DnsTargetMode;
use crate::api::{
    self, AcmeCertificate, AcmeIssuer, CrossCloudDNS, MemberCluster, ServiceLevelObjective,
    SupervisedWorkload, TelemetryPipeline,
};
use crate::inventory::{Inventory, Object};

/// One problem with one field of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.sli.ratio.errors`; empty for the whole object.
    pub path: String,
    /// What is wrong, for a person to act on.
    pub message: String,
    /// The field names an object that does not exist (yet): GitOps applies files in any
    /// order, so this may resolve by itself, unlike a spec that is wrong.
    pub missing: bool,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            missing: false,
        }
    }

    /// `path` names an object that does not exist.
    pub fn missing(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            missing: true,
            ..Self::new(path, message)
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Joins field errors into one sentence for a condition message.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

const UNKNOWN_FIELD: &str = "unknown field";

struct KindSchema {
    namespaced: bool,
    schema: Value,
    compiled: CompiledSchema,
}

/// Checks raw manifests against the CRD schemas and CEL rules of every kind, offline.
pub struct SchemaValidator {
    kinds: BTreeMap<String, KindSchema>,
    cel: Validator,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("kinds", &self.kinds.keys())
            .finish()
    }
}

impl Default for SchemaValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl SchemaValidator {
    /// Compiles the schema and CEL rules of every CRD once.
    pub fn new() -> Self {
        let kinds = api::crds()
            .into_iter()
            .map(|crd| {
                let schema = crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).unwrap_or_default())
                    .unwrap_or_default();
                let compiled = compile_schema(&schema);
                let kind = KindSchema {
                    namespaced: crd.spec.scope == "Namespaced",
                    schema,
                    compiled,
                };
                (crd.spec.names.kind, kind)
            })
            .collect();
        Self {
            kinds,
            cel: Validator::new(),
        }
    }

    /// True when `kind` is a Vigil kind.
    pub fn knows(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// Checks one manifest of a Vigil kind and decodes it. Namespaced objects without a
    /// namespace get `default_namespace`, as `kubectl apply` would.
    pub fn check(
        &self,
        manifest: &Value,
        default_namespace: &str,
    ) -> Result<Object, Vec<FieldError>> {
        let api_version = manifest
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = manifest
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(schema) = self.kinds.get(kind) else {
            return Err(vec![FieldError::new(
                "kind",
                format!("{kind:?} is not a kind of {}", api::GROUP),
            )]);
        };
        if api_version != api::API_VERSION {
            return Err(vec![FieldError::new(
                "apiVersion",
                format!("{api_version:?} is not served; use {}", api::API_VERSION),
            )]);
        }
        let mut manifest = manifest.clone();
        let mut errors = check_metadata(&mut manifest, kind, schema.namespaced, default_namespace);
        check_structure(&schema.schema, &manifest, "", &mut errors);
        // CEL rules assume a well-typed object, as on the API server; unknown fields are
        // reported but do not stop them.
        let ill_typed = errors.iter().any(|e| e.message != UNKNOWN_FIELD);
        if ill_typed {
            return Err(errors);
        }
        if let Err(failures) = self
            .cel
            .validate_compiled(&schema.compiled, &manifest, None)
        {
            errors.extend(
                failures.iter().map(|f| {
                    FieldError::new(f.field_path.trim_start_matches('.'), f.message.clone())
                }),
            );
        }
        if !errors.is_empty() {
            errors.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.message.cmp(&b.message)));
            return Err(errors);
        }
        decode(kind, manifest).map_err(|e| vec![e])
    }
}

fn check_metadata(
    manifest: &mut Value,
    kind: &str,
    namespaced: bool,
    default_ns: &str,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(meta) = manifest.get_mut("metadata").and_then(Value::as_object_mut) else {
        return vec![FieldError::new(
            "metadata",
            "metadata with a name is required",
        )];
    };
    match meta.get("name").and_then(Value::as_str) {
        None => errors.push(FieldError::new("metadata.name", "a name is required")),
        Some(name) if !is_dns_subdomain(name) => errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} must be a lowercase DNS subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"),
        )),
        Some(_) => {}
    }
    match (namespaced, meta.get("namespace").and_then(Value::as_str)) {
        (true, None) => {
            meta.insert("namespace".into(), Value::String(default_ns.to_owned()));
        }
        (false, Some(_)) => errors.push(FieldError::new(
            "metadata.namespace",
            format!("must not be set: {kind} is cluster-scoped"),
        )),
        _ => {}
    }
    errors
}

/// True for a Kubernetes DNS subdomain name (RFC 1123).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label)
}

/// True for a Kubernetes DNS label (RFC 1123).
pub fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Checks a value against the structural part of the CRD's OpenAPI schema, as the API
/// server does before CEL: types, enums, required properties, and no unknown fields
/// (strict field validation).
fn check_structure(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let at = |path: &str| {
        if path.is_empty() {
            "spec".to_owned()
        } else {
            path.to_owned()
        }
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !path.is_empty() {
            errors.push(FieldError::new(at(path), "must not be null"));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let fits = match expected {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !fits {
            errors.push(FieldError::new(
                at(path),
                format!("must be of type {expected}, not {}", json_type(value)),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned))
            .collect();
        errors.push(FieldError::new(
            at(path),
            format!("{value} is not one of {}", names.join(", ")),
        ));
        return;
    }
    let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
    let format = schema.get("format").and_then(Value::as_str);
    match value {
        Value::String(text)
            if limit("minLength").is_some_and(|min| (text.chars().count() as u64) < min) =>
        {
            let message = match limit("minLength").unwrap_or_default() {
                1 => "must not be empty".to_owned(),
                min => format!("must be at least {min} characters"),
            };
            errors.push(FieldError::new(at(path), message));
            return;
        }
        Value::String(text)
            if format == Some("date-time") && text.parse::<jiff::Timestamp>().is_err() =>
        {
            errors.push(FieldError::new(
                at(path),
                format!("{text:?} is not an RFC 3339 date-time"),
            ));
            return;
        }
        Value::Number(number)
            if format == Some("int32")
                && number.as_i64().is_none_or(|n| i32::try_from(n).is_err()) =>
        {
            errors.push(FieldError::new(
                at(path),
                format!("{number} does not fit in a 32-bit integer"),
            ));
            return;
        }
        Value::Number(number) if format == Some("int64") && number.as_i64().is_none() => {
            errors.push(FieldError::new(
                at(path),
                format!("{number} does not fit in a 64-bit integer"),
            ));
            return;
        }
        Value::String(text)
            if limit("maxLength").is_some_and(|max| text.chars().count() as u64 > max) =>
        {
            let max = limit("maxLength").unwrap_or_default();
            errors.push(FieldError::new(
                at(path),
                format!("must be at most {max} characters"),
            ));
            return;
        }
        Value::Array(items) if limit("maxItems").is_some_and(|max| items.len() as u64 > max) => {
            let max = limit("maxItems").unwrap_or_default();
            errors.push(FieldError::new(
                at(path),
                format!("must have at most {max} items"),
            ));
            return;
        }
        _ => {}
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for key in required.iter().filter_map(Value::as_str) {
                    let metadata = path.is_empty() && key == "metadata";
                    if !metadata && !map.contains_key(key) {
                        let field = if path.is_empty() {
                            key.to_owned()
                        } else {
                            format!("{path}.{key}")
                        };
                        errors.push(FieldError::new(field, "required field is missing"));
                    }
                }
            }
            for (key, child) in map {
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) | (None, Some(s)) => {
                        check_structure(s, child, &child_path, errors)
                    }
                    (None, None) if preserve => {}
                    (None, None) => errors.push(FieldError::new(child_path, UNKNOWN_FIELD)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_structure(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
            // A list-map holds one entry per key, as the API server enforces.
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen = std::collections::HashSet::new();
                for (i, item) in items.iter().enumerate() {
                    let key: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
                    if !seen.insert(key.clone()) {
                        errors.push(FieldError::new(
                            format!("{path}[{i}]"),
                            format!(
                                "duplicate entry with {}",
                                keys.iter()
                                    .zip(&key)
                                    .map(|(k, v)| format!("{k} {v}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode(kind: &str, manifest: Value) -> Result<Object, FieldError> {
    fn typed<K: serde::de::DeserializeOwned>(manifest: Value) -> Result<K, FieldError> {
        serde_path_to_error::deserialize(manifest).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            FieldError::new(path, e.into_inner().to_string())
        })
    }
    Ok(match kind {
        "AcmeCertificate" => Object::AcmeCertificate(typed(manifest)?),
        "AcmeIssuer" => Object::AcmeIssuer(typed(manifest)?),
        "CrossCloudDNS" => Object::CrossCloudDNS(typed(manifest)?),
        "MemberCluster" => Object::MemberCluster(typed(manifest)?),
        "ServiceLevelObjective" => Object::ServiceLevelObjective(typed(manifest)?),
        "SupervisedWorkload" => Object::SupervisedWorkload(typed(manifest)?),
        "TelemetryPipeline" => Object::TelemetryPipeline(typed(manifest)?),
        other => {
            return Err(FieldError::new(
                "kind",
                format!("{other:?} is not a Vigil kind"),
            ));
        }
    })
}

/// Parses a Go duration (`90s`, `1h30m`) as the API server's CEL `duration()` does.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    // kube's parser panics on a number too large for a Duration (found by the `manifest`
    // fuzz target with `133333333333333333330m`): refuse long numbers first. Fifteen
    // digits of hours still fit.
    let longest = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest > 15 {
        return Err(format!("{text:?} is too large for a duration"));
    }
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 1h30m"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} must not be negative"));
    }
    Ok(parsed.into())
}

/// Semantic validation that no schema can express: references between objects,
/// values that must parse, and limits that depend on other fields.
pub trait Validate {
    /// Every problem found, with its field path; empty when the object is valid.
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError>;
}

impl Validate for Object {
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError> {
        match self {
            Object::AcmeCertificate(o) => o.validate(inventory),
            Object::AcmeIssuer(o) => o.validate(inventory),
            Object::CrossCloudDNS(o) => o.validate(inventory),
            Object::MemberCluster(o) => o.validate(inventory),
            Object::ServiceLevelObjective(o) => o.validate(inventory),
            Object::SupervisedWorkload(o) => o.validate(inventory),
            Object::TelemetryPipeline(o) => o.validate(inventory),
        }
    }
}

fn duration_field(
    errors: &mut Vec<FieldError>,
    path: &str,
    value: Option<&str>,
) -> Option<std::time::Duration> {
    let value = value?;
    match parse_duration(value) {
        Ok(d) => Some(d),
        Err(message) => {
            errors.push(FieldError::new(path, message));
            None
        }
    }
}

fn member_refs<'a>(
    errors: &mut Vec<FieldError>,
    inventory: &'a Inventory,
    path: &str,
    names: &[String],
) -> Vec<&'a MemberCluster> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let found = inventory.member_cluster(name);
            if found.is_none() {
                errors.push(FieldError::missing(
                    format!("{path}[{i}]"),
                    format!("MemberCluster {name:?} does not exist"),
                ));
            }
            found
        })
        .collect()
}

impl Validate for MemberCluster {
    fn validate(&self, _: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        duration_field(
            &mut errors,
            "spec.probeInterval",
            Some(&self.spec.probe_interval),
        );
        for (i, endpoint) in self.spec.dns.endpoints.iter().enumerate() {
            if let Err(message) = parse_host_port(endpoint) {
                errors.push(FieldError::new(format!("spec.dns.endpoints[{i}]"), message));
            }
        }
        errors
    }
}

/// Splits `host:port` (IPv6 as `[addr]:port`), checking the port.
pub fn parse_host_port(endpoint: &str) -> Result<(String, u16), String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("{endpoint:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{endpoint:?} has no valid port (1 to 65535)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok((host.to_owned(), port))
}

impl Validate for ServiceLevelObjective {
    fn validate(&self, _: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &self.spec;
        if spec.alerting.page.disabled
            && spec.alerting.ticket.disabled
            && spec.alerting.absent_for.is_none()
        {
            errors.push(FieldError::new(
                "spec.alerting",
                "both page and ticket are disabled: the SLO would never alert; enable one tier",
            ));
        }
        duration_field(
            &mut errors,
            "spec.alerting.absentFor",
            spec.alerting.absent_for.as_deref(),
        );
        // The generator parses every PromQL field and checks what each SLI type needs.
        if let Err(error) = crate::render::slo::render_rules(self) {
            errors.push(FieldError::new(error.field(), error.message()));
        }
        if let Some(latency) = &spec.sli.latency
            && latency.metric.contains("_bucket")
        {
            errors.push(FieldError::new(
                "spec.sli.latency.metric",
                "name the histogram without the _bucket suffix; Vigil adds it",
            ));
        }
        errors
    }
}

impl Validate for AcmeIssuer {
    fn validate(&self, _: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, solver) in self.spec.solvers.iter().enumerate() {
            for (j, zone) in solver.selector.dns_zones.iter().enumerate() {
                if !is_dns_subdomain(zone) {
                    errors.push(FieldError::new(
                        format!("spec.solvers[{i}].selector.dnsZones[{j}]"),
                        format!("{zone:?} is not a lowercase DNS name"),
                    ));
                }
            }
            if let Some(rfc2136) = solver.dns01.as_ref().and_then(|d| d.rfc2136.as_ref())
                && let Err(message) = parse_host_port(&rfc2136.nameserver)
            {
                errors.push(FieldError::new(
                    format!("spec.solvers[{i}].dns01.rfc2136.nameserver"),
                    message,
                ));
            }
        }
        let wildcard_only_http = self.spec.solvers.iter().all(|s| s.dns01.is_none());
        if wildcard_only_http
            && self
                .spec
                .solvers
                .iter()
                .any(|s| s.selector.dns_names.iter().any(|n| n.starts_with("*.")))
        {
            errors.push(FieldError::new(
                "spec.solvers",
                "a wildcard name can only be validated with a dns01 solver",
            ));
        }
        errors
    }
}

impl Validate for AcmeCertificate {
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &self.spec;
        match inventory.acme_issuer(&spec.issuer_ref.name) {
            None => errors.push(FieldError::missing(
                "spec.issuerRef.name",
                format!("AcmeIssuer {:?} does not exist", spec.issuer_ref.name),
            )),
            Some(issuer) => {
                let has_dns01 = issuer.spec.solvers.iter().any(|s| s.dns01.is_some());
                for (i, name) in spec.dns_names.iter().enumerate() {
                    if crate::acme::solver::select(&issuer.spec.solvers, name).is_some() {
                        continue;
                    }
                    let message = if name.starts_with("*.") && !has_dns01 {
                        format!(
                            "{name:?} is a wildcard but AcmeIssuer {:?} has no dns01 solver",
                            issuer.name_any()
                        )
                    } else {
                        format!(
                            "no solver of AcmeIssuer {:?} serves {name:?}: no selector matches it",
                            issuer.name_any()
                        )
                    };
                    errors.push(FieldError::new(format!("spec.dnsNames[{i}]"), message));
                }
            }
        }
        for (i, name) in spec.dns_names.iter().enumerate() {
            if spec.dns_names[..i].contains(name) {
                errors.push(FieldError::new(
                    format!("spec.dnsNames[{i}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        duration_field(
            &mut errors,
            "spec.renewBefore",
            spec.renew_before.as_deref(),
        );
        if let Some(distribute) = &spec.distribute {
            member_refs(
                &mut errors,
                inventory,
                "spec.distribute.clusters",
                &distribute.clusters,
            );
        }
        errors
    }
}

/// The MemberClusters of `inventory` named in `names`.
/// The MemberClusters of `names` that exist, in the order of `names`: messages built from
/// them read the same whatever order the inventory was filled in.
fn members_of<'a>(
    inventory: &'a Inventory,
    names: &'a [String],
) -> impl Iterator<Item = &'a api::MemberCluster> {
    names.iter().filter_map(|name| {
        inventory
            .member_clusters
            .iter()
            .find(|m| m.name_any() == *name)
    })
}

impl Validate for CrossCloudDNS {
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let members = member_refs(&mut errors, inventory, "spec.clusters", &self.spec.clusters);
        for member in members {
            if member.spec.dns.endpoints.is_empty() {
                let i = self
                    .spec
                    .clusters
                    .iter()
                    .position(|c| *c == member.name_any())
                    .unwrap_or_default();
                errors.push(FieldError::new(
                    format!("spec.clusters[{i}]"),
                    format!(
                        "MemberCluster {:?} has no spec.dns.endpoints, so the other clusters cannot reach its services",
                        member.name_any()
                    ),
                ));
            }
        }
        for (i, name) in self.spec.failover.iter().enumerate() {
            if self.spec.failover[..i].contains(name) {
                errors.push(FieldError::new(
                    format!("spec.failover[{i}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        for (i, name) in self.spec.clusters.iter().enumerate() {
            if !is_dns_label(name) {
                errors.push(FieldError::new(
                    format!("spec.clusters[{i}]"),
                    format!(
                        "{name:?} must be a DNS label (no dots): it names <svc>.<ns>.svc.{name}.{}",
                        self.spec.zone
                    ),
                ));
            }
        }
        let locals: Vec<String> = members_of(inventory, &self.spec.clusters)
            .filter(|m| m.spec.local)
            .map(|m| m.name_any())
            .collect();
        if locals.len() > 1 {
            errors.push(FieldError::new(
                "spec.clusters",
                format!(
                    "{} are all the local cluster: each cluster may be listed once",
                    locals.join(" and ")
                ),
            ));
        }
        if self.spec.target.mode == DnsTargetMode::Dedicated {
            let name = crate::render::dns::dedicated_name(self);
            if name.len() > 63 {
                errors.push(FieldError::new(
                    "metadata.name",
                    format!(
                        "must be at most 53 characters with target.mode Dedicated: the Service {name:?} needs a DNS label"
                    ),
                ));
            }
        }
        if let Some(namespace) = &self.spec.target.namespace
            && !is_dns_label(namespace)
        {
            errors.push(FieldError::new(
                "spec.target.namespace",
                format!("{namespace:?} is not a valid namespace name (a DNS label)"),
            ));
        }
        let zone = self.spec.zone.trim_end_matches('.');
        // One zone, one owner: the first by name keeps it.
        if let Some(owner) = inventory
            .cross_cloud_dns
            .iter()
            .filter(|other| other.name_any() < self.name_any())
            .find(|other| other.spec.zone.trim_end_matches('.') == zone)
        {
            errors.push(FieldError::new(
                "spec.zone",
                format!(
                    "zone {zone:?} is already served by CrossCloudDNS {:?}",
                    owner.name_any()
                ),
            ));
        }
        for member in members_of(inventory, &self.spec.clusters) {
            let domain = member.spec.dns.cluster_domain.trim_end_matches('.');
            if domain == zone
                || domain.ends_with(&format!(".{zone}"))
                || zone.ends_with(&format!(".{domain}"))
            {
                errors.push(FieldError::new(
                    "spec.zone",
                    format!(
                        "zone {zone:?} overlaps the cluster domain {domain:?} of MemberCluster {:?}",
                        member.name_any()
                    ),
                ));
            }
        }
        errors
    }
}

impl Validate for TelemetryPipeline {
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = &self.spec;
        let namespace = self.namespace().unwrap_or_default();
        let name = self.name_any();
        if name.len() > crate::render::otel::MAX_NAME_LEN {
            errors.push(FieldError::new(
                "metadata.name",
                format!(
                    "{} characters is too long: Vigil names the Collector objects vigil-otel-<name>-<hash>, which must fit in 63 (at most {})",
                    name.len(),
                    crate::render::otel::MAX_NAME_LEN
                ),
            ));
        }
        for member in member_refs(&mut errors, inventory, "spec.clusters", &spec.clusters) {
            let provider = member.spec.provider;
            let configured = match provider {
                api::Provider::Aws => spec.backends.aws.is_some(),
                api::Provider::Aliyun => spec.backends.aliyun.is_some(),
                api::Provider::Vmware => spec.backends.vmware.is_some(),
            };
            if !configured {
                errors.push(FieldError::new(
                    format!("spec.backends.{}", provider.as_str()),
                    format!(
                        "MemberCluster {:?} runs on {} but no {} backends are given",
                        member.name_any(),
                        provider.as_str(),
                        provider.as_str()
                    ),
                ));
            }
        }
        for (i, boost) in spec.sampling.slo_boost.iter().enumerate() {
            if inventory
                .service_level_objective(&namespace, &boost.slo_ref.name)
                .is_none()
            {
                errors.push(FieldError::missing(
                    format!("spec.sampling.sloBoost[{i}].sloRef.name"),
                    format!(
                        "ServiceLevelObjective {namespace}/{} does not exist",
                        boost.slo_ref.name
                    ),
                ));
            }
            duration_field(
                &mut errors,
                &format!("spec.sampling.sloBoost[{i}].holdFor"),
                boost.hold_for.as_deref(),
            );
            if boost.percentage <= spec.sampling.percentage {
                errors.push(FieldError::new(
                    format!("spec.sampling.sloBoost[{i}].percentage"),
                    format!(
                        "{} does not raise sampling above spec.sampling.percentage ({})",
                        boost.percentage, spec.sampling.percentage
                    ),
                ));
            }
        }
        errors
    }
}

/// The requests made by hand on a SupervisedWorkload (`vigil breaker`, `vigil config
/// rollback`): well-formed, and for a part of the spec that is there.
fn requests(object: &SupervisedWorkload, errors: &mut Vec<FieldError>) {
    use api::supervised_workload::{
        BREAKER_OVERRIDE_ANNOTATION, BreakerOverride, CONFIG_ROLLBACK_ANNOTATION, ConfigRollback,
    };
    let field = |key: &str| format!("metadata.annotations[{key}]");
    let mut check = |key: &str,
                     read: Result<Option<(String, String)>, String>,
                     needs: Option<&str>| match read {
        Err(message) => errors.push(FieldError::new(field(key), message)),
        Ok(Some((at, reason))) => {
            if at.parse::<jiff::Timestamp>().is_err() {
                errors.push(FieldError::new(
                    field(key),
                    format!("requestedAt {at:?} is not an RFC 3339 time"),
                ));
            }
            if reason.trim().is_empty() {
                errors.push(FieldError::new(field(key), "reason must not be empty"));
            }
            if let Some(needs) = needs {
                errors.push(FieldError::new(field(key), needs));
            }
        }
        Ok(None) => {}
    };
    check(
        BREAKER_OVERRIDE_ANNOTATION,
        BreakerOverride::requested(object).map(|r| r.map(|r| (r.requested_at, r.reason))),
        object
            .spec
            .circuit_breaker
            .is_none()
            .then_some("overrides a breaker, but spec.circuitBreaker is not set"),
    );
    check(
        CONFIG_ROLLBACK_ANNOTATION,
        ConfigRollback::requested(object).map(|r| r.map(|r| (r.requested_at, r.reason))),
        object
            .spec
            .config
            .is_none()
            .then_some("asks for a config rollback, but spec.config is not set"),
    );
}

impl Validate for SupervisedWorkload {
    fn validate(&self, inventory: &Inventory) -> Vec<FieldError> {
        use api::supervised_workload::{BreakerAction, WorkloadKind};
        let mut errors = Vec::new();
        let spec = &self.spec;
        if let Some(breaker) = &spec.circuit_breaker {
            duration_field(
                &mut errors,
                "spec.circuitBreaker.window",
                Some(&breaker.window),
            );
            let cooldown = duration_field(
                &mut errors,
                "spec.circuitBreaker.cooldown",
                Some(&breaker.cooldown),
            );
            let max = duration_field(
                &mut errors,
                "spec.circuitBreaker.maxCooldown",
                breaker.max_cooldown.as_deref(),
            );
            if let (Some(cooldown), Some(max)) = (cooldown, max)
                && max < cooldown
            {
                errors.push(FieldError::new(
                    "spec.circuitBreaker.maxCooldown",
                    "must not be shorter than cooldown",
                ));
            }
            let fits = match (breaker.action, spec.target.kind) {
                (BreakerAction::AlertOnly, _) => true,
                (BreakerAction::Suspend, kind) => kind == WorkloadKind::CronJob,
                (BreakerAction::ScaleToZero, kind) => {
                    matches!(kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet)
                }
            };
            if !fits {
                errors.push(FieldError::new(
                    "spec.circuitBreaker.action",
                    format!(
                        "{:?} cannot act on a {:?}: use ScaleToZero for Deployments and StatefulSets, Suspend for CronJobs, AlertOnly for DaemonSets",
                        breaker.action, spec.target.kind
                    ),
                ));
            }
        }
        if let Some(config) = &spec.config {
            duration_field(
                &mut errors,
                "spec.config.rollbackWithin",
                Some(&config.rollback_within),
            );
            if let Some(schema) = &config.schema
                && let Err(message) = check_json_schema(schema)
                    .and_then(|()| crate::workload_config::compile(schema).map(|_| ()))
            {
                errors.push(FieldError::new("spec.config.schema", message));
            }
        }
        requests(self, &mut errors);
        if let Some(telemetry) = &spec.telemetry {
            let namespace = self.namespace().unwrap_or_default();
            if inventory
                .telemetry_pipeline(&namespace, &telemetry.pipeline_ref.name)
                .is_none()
            {
                errors.push(FieldError::missing(
                    "spec.telemetry.pipelineRef.name",
                    format!(
                        "TelemetryPipeline {namespace}/{} does not exist",
                        telemetry.pipeline_ref.name
                    ),
                ));
            }
        }
        if spec.isolation.read_only_root_filesystem
            && spec.isolation.profile != api::supervised_workload::IsolationProfile::Restricted
        {
            errors.push(FieldError::new(
                "spec.isolation.readOnlyRootFilesystem",
                "only applies to the restricted profile",
            ));
        }
        errors
    }
}

/// Checks the shape of a JSON Schema: an object whose `type` keywords name JSON types.
fn check_json_schema(schema: &Value) -> Result<(), String> {
    const TYPES: [&str; 7] = [
        "object", "array", "string", "number", "integer", "boolean", "null",
    ];
    fn walk(schema: &Value, path: &str) -> Result<(), String> {
        let Some(map) = schema.as_object() else {
            return if schema.is_boolean() {
                Ok(())
            } else {
                Err(format!("{path} must be a schema object"))
            };
        };
        if let Some(t) = map.get("type") {
            let names: Vec<&Value> = match t {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for name in names {
                if !name.as_str().is_some_and(|n| TYPES.contains(&n)) {
                    return Err(format!("{path}.type: {name} is not a JSON Schema type"));
                }
            }
        }
        if let Some(props) = map.get("properties") {
            let props = props
                .as_object()
                .ok_or_else(|| format!("{path}.properties must be an object"))?;
            for (key, child) in props {
                walk(child, &format!("{path}.properties.{key}"))?;
            }
        }
        if let Some(items) = map.get("items") {
            walk(items, &format!("{path}.items"))?;
        }
        if let Some(required) = map.get("required")
            && !required
                .as_array()
                .is_some_and(|r| r.iter().all(Value::is_string))
        {
            return Err(format!("{path}.required must be a list of property names"));
        }
        Ok(())
    }
    walk(schema, "schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema keywords the CRDs use that `check_structure` enforces, and those it leaves
    /// alone because they constrain nothing a manifest can get wrong (`default`, the docs, the
    /// list-map keys read with `x-kubernetes-list-type`) or are checked elsewhere (CEL rules).
    /// A test fails when a CRD uses a keyword in neither list.
    const SCHEMA_KEYWORDS: (&[&str], &[&str]) = (
        &[
            "type",
            "nullable",
            "enum",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "minLength",
            "maxLength",
            "maxItems",
            "format",
            "x-kubernetes-list-type",
            "x-kubernetes-preserve-unknown-fields",
        ],
        &[
            "description",
            "title",
            "default",
            "x-kubernetes-list-map-keys",
            "x-kubernetes-validations",
        ],
    );

    /// The `format`s `check_structure` enforces, and those that constrain nothing beyond the
    /// type (`double`).
    const SCHEMA_FORMATS: (&[&str], &[&str]) = (&["date-time", "int32", "int64"], &["double"]);

    /// Every keyword and format in the CRDs' schemas is either enforced offline or known
    /// to constrain nothing: a new one fails here until `check_structure` handles it.
    #[test]
    fn every_schema_keyword_the_crds_use_is_checked_offline() {
        fn walk(schema: &Value, at: &str, found: &mut Vec<(String, String)>) {
            let Some(map) = schema.as_object() else {
                return;
            };
            for (key, child) in map {
                found.push((key.clone(), at.to_owned()));
                match key.as_str() {
                    "properties" => {
                        for (name, property) in child.as_object().into_iter().flatten() {
                            walk(property, &format!("{at}.{name}"), found);
                        }
                    }
                    "items" | "additionalProperties" => walk(child, &format!("{at}[]"), found),
                    "format" => found.push((
                        format!("format {}", child.as_str().unwrap_or_default()),
                        at.to_owned(),
                    )),
                    _ => {}
                }
            }
        }
        let mut found = Vec::new();
        for crd in api::crds() {
            let schema = serde_json::to_value(
                crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref()),
            )
            .expect("a schema");
            walk(&schema, &crd.spec.names.kind, &mut found);
        }
        let (checked, harmless) = SCHEMA_KEYWORDS;
        let (formats, plain) = SCHEMA_FORMATS;
        let unknown: Vec<&(String, String)> = found
            .iter()
            .filter(|(key, _)| match key.strip_prefix("format ") {
                Some(format) => !formats.contains(&format) && !plain.contains(&format),
                None => !checked.contains(&key.as_str()) && !harmless.contains(&key.as_str()),
            })
            .collect();
        assert!(
            unknown.is_empty(),
            "not checked by vigil validate: {unknown:?}"
        );
    }

    #[test]
    fn lengths_formats_and_list_map_keys_are_checked_as_the_api_server_does() {
        let schema = serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1},
            "count": {"type": "integer", "format": "int32"},
            "total": {"type": "integer", "format": "int64"},
            "at": {"type": "string", "format": "date-time"},
            "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
        }});
        let check = |value: Value| {
            let mut errors = Vec::new();
            check_structure(&schema, &value, "spec", &mut errors);
            errors
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check(
                serde_json::json!({"name": "a", "count": 2147483647, "total": 9223372036854775807_i64,
                "at": "2026-12-07T10:00:00Z", "conditions": [{"type": "Ready"}, {"type": "Issuing"}]})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check(
                serde_json::json!({"name": "", "count": 2147483648_i64, "total": 18446744073709551615_u64,
                "at": "yesterday", "conditions": [{"type": "Ready"}, {"type": "Ready"}]})
            ),
            [
                "spec.at: \"yesterday\" is not an RFC 3339 date-time",
                "spec.conditions[1]: duplicate entry with type \"Ready\"",
                "spec.count: 2147483648 does not fit in a 32-bit integer",
                "spec.name: must not be empty",
                "spec.total: 18446744073709551615 does not fit in a 64-bit integer",
            ]
        );
    }

    /// Found by the `manifest` fuzz target: kube's parser panicked on these.
    #[test]
    fn durations_too_large_are_refused_not_a_panic() {
        assert!(parse_duration("133333333333333333330m").is_err_and(|e| e.contains("too large")));
        assert_eq!(
            parse_duration("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        // The largest accepted still converts (kube parses through f64).
        assert!(parse_duration("999999999999999h").is_ok());
    }
}
