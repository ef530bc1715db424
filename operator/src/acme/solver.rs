//! Challenge solvers: which solver serves a name, the HTTP-01 token store served on the
//! challenge port, and the DNS-01 providers behind one interface with a propagation check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use hickory_proto::rr::{Name, RData, RecordType};

use super::dns01::ProviderError;
use super::dns01::alidns::AliDns;
use super::dns01::rfc2136::Rfc2136;
use super::dns01::route53::Route53;
use crate::api::acme_issuer::AcmeSolver;

/// The solver of `solvers` that serves `name`: an exact `dnsNames` match first, then the
/// longest matching `dnsZones` entry, then a solver without selector. Wildcard names can
/// only be proven with DNS-01. `None` when no solver fits.
pub fn select<'a>(solvers: &'a [AcmeSolver], name: &str) -> Option<&'a AcmeSolver> {
    let wildcard = name.starts_with("*.");
    let base = name.trim_start_matches("*.");
    let mut best: Option<(usize, &AcmeSolver)> = None;
    for solver in solvers {
        if wildcard && solver.dns01.is_none() {
            continue;
        }
        let selector = &solver.selector;
        let score = if selector.dns_names.iter().any(|n| n == name) {
            Some(usize::MAX)
        } else if let Some(zone) = selector
            .dns_zones
            .iter()
            .filter(|z| base == z.as_str() || base.ends_with(&format!(".{z}")))
            .map(String::len)
            .max()
        {
            Some(1 + zone)
        } else if selector.dns_names.is_empty() && selector.dns_zones.is_empty() {
            Some(0)
        } else {
            None
        };
        if let Some(score) = score
            && best.is_none_or(|(b, _)| score > b)
        {
            best = Some((score, solver));
        }
    }
    best.map(|(_, s)| s)
}

/// HTTP-01 key authorizations by token, served at `/.well-known/acme-challenge/<token>`.
#[derive(Clone, Debug, Default)]
pub struct Http01Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Http01Tokens {
    /// Serves `key_authorization` for `token` until [`Http01Tokens::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    /// Stops serving `token`.
    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// The key authorization of `token`.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// The challenge server's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/acme-challenge/{token}", get(serve_token))
            .with_state(self.clone())
    }
}

async fn serve_token(
    State(tokens): State<Http01Tokens>,
    Path(token): Path<String>,
) -> Result<String, StatusCode> {
    tokens.get(&token).ok_or(StatusCode::NOT_FOUND)
}

/// A DNS-01 provider with its credentials loaded.
pub enum Dns01 {
    /// RFC 2136 + TSIG.
    Rfc2136(Rfc2136),
    /// Amazon Route 53.
    Route53(Route53),
    /// Alibaba Cloud DNS.
    AliDns(AliDns),
}

impl std::fmt::Debug for Dns01 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dns01::Rfc2136(_) => "Dns01::Rfc2136",
            Dns01::Route53(_) => "Dns01::Route53",
            Dns01::AliDns(_) => "Dns01::AliDns",
        })
    }
}

/// How long a challenge record may take to become visible.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
const PROPAGATION_POLL: Duration = Duration::from_secs(1);

impl Dns01 {
    /// Publishes `value` at `fqdn`, keeping other values.
    pub async fn add_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        match self {
            Dns01::Rfc2136(p) => p.add_txt(fqdn, value).await,
            Dns01::Route53(p) => p.add_txt(fqdn, value).await,
            Dns01::AliDns(p) => p.add_txt(fqdn, value).await,
        }
    }

    /// Removes `value` from `fqdn`, keeping other values.
    pub async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), ProviderError> {
        match self {
            Dns01::Rfc2136(p) => p.remove_txt(fqdn, value).await,
            Dns01::Route53(p) => p.remove_txt(fqdn, value).await,
            Dns01::AliDns(p) => p.remove_txt(fqdn, value).await,
        }
    }

    /// Waits until the zone's authoritative servers answer `value` at `fqdn`:
    /// - RFC 2136: the primary the update went to;
    /// - Route 53: `add_txt` already waited for the change to be INSYNC on every Route 53
    ///   server, which is what a propagation check would prove;
    /// - Alibaba Cloud DNS: the zone's NS servers, found through the system resolver.
    pub async fn wait_visible(&self, fqdn: &str, value: &str) -> Result<(), String> {
        let servers = match self {
            Dns01::Route53(_) => return Ok(()),
            Dns01::Rfc2136(p) => vec![p.address().await.map_err(|e| e.to_string())?],
            Dns01::AliDns(_) => authoritative_servers(fqdn).await?,
        };
        let name = Name::from_ascii(format!("{}.", fqdn.trim_end_matches('.')))
            .map_err(|e| format!("bad record name {fqdn:?}: {e}"))?;
        let deadline = tokio::time::Instant::now() + PROPAGATION_TIMEOUT;
        let mut waiting: Vec<SocketAddr> = servers;
        loop {
            let mut still = Vec::new();
            let mut last = String::new();
            for server in waiting {
                match crate::dns::txt_values(server, &name).await {
                    Ok(values) if values.iter().any(|v| v == value) => {}
                    Ok(_) => still.push(server),
                    Err(e) => {
                        last = format!("{server}: {e}");
                        still.push(server);
                    }
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let list: Vec<String> = still.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "the TXT record {fqdn} was not visible on {} within {}s {last}",
                    list.join(", "),
                    PROPAGATION_TIMEOUT.as_secs()
                ));
            }
            waiting = still;
            tokio::time::sleep(PROPAGATION_POLL).await;
        }
    }
}

/// The addresses (port 53) of the NS servers of the zone holding `fqdn`, found by asking
/// the first resolver of `/etc/resolv.conf` for NS records from `fqdn` up.
async fn authoritative_servers(fqdn: &str) -> Result<Vec<SocketAddr>, String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
    let resolver = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or("no nameserver in /etc/resolv.conf")?;
    let mut labels: Vec<&str> = fqdn.trim_end_matches('.').split('.').collect();
    while labels.len() > 1 {
        let name = Name::from_ascii(format!("{}.", labels.join(".")))
            .map_err(|e| format!("bad name: {e}"))?;
        let reply =
            crate::dns::exchange(resolver, &crate::dns::query(&name, RecordType::NS, true)).await?;
        let hosts: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.to_ascii()),
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            let mut servers = Vec::new();
            for host in hosts {
                if let Ok(found) = tokio::net::lookup_host((host.trim_end_matches('.'), 53)).await {
                    servers.extend(found.take(1));
                }
            }
            if servers.is_empty() {
                return Err(format!("no address for the NS servers of {name}"));
            }
            return Ok(servers);
        }
        labels.remove(0);
    }
    Err(format!("no NS records found above {fqdn}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::acme_issuer::{Dns01Solver, Http01Solver, SolverSelector};

    fn solver(names: &[&str], zones: &[&str], dns: bool) -> AcmeSolver {
        AcmeSolver {
            selector: SolverSelector {
                dns_names: names.iter().map(|s| s.to_string()).collect(),
                dns_zones: zones.iter().map(|s| s.to_string()).collect(),
            },
            http01: (!dns).then_some(Http01Solver {}),
            dns01: dns.then_some(Dns01Solver {
                rfc2136: None,
                route53: None,
                alidns: None,
            }),
        }
    }

    #[test]
    fn the_most_specific_solver_wins() {
        let solvers = vec![
            solver(&[], &[], false),
            solver(&[], &["example.com"], true),
            solver(&[], &["shop.example.com"], false),
            solver(&["www.example.com"], &[], false),
        ];
        let pick = |name| select(&solvers, name).map(|s| solvers.iter().position(|x| x == s));
        assert_eq!(pick("other.org"), Some(Some(0)));
        assert_eq!(pick("api.example.com"), Some(Some(1)));
        assert_eq!(pick("example.com"), Some(Some(1)));
        assert_eq!(pick("a.shop.example.com"), Some(Some(2)));
        assert_eq!(pick("www.example.com"), Some(Some(3)));
        // Wildcards need DNS-01.
        assert_eq!(pick("*.shop.example.com"), Some(Some(1)));
        assert_eq!(pick("*.other.org"), None);
        // "notexample.com" is not in the zone "example.com".
        assert_eq!(pick("notexample.com"), Some(Some(0)));
    }

    #[test]
    fn tokens_are_served_until_removed() {
        let tokens = Http01Tokens::default();
        tokens.insert("t1", "t1.thumb");
        assert_eq!(tokens.get("t1").as_deref(), Some("t1.thumb"));
        tokens.remove("t1");
        assert_eq!(tokens.get("t1"), None);
    }
}
