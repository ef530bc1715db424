//! Why a certificate is issued now: a chain of named policies over what the controller
//! observed, pure so that each is tested alone and in order. The first that fires wins,
//! and its name is the reason of the `Issuing` condition while the issuance runs (as
//! cert-manager's trigger policies name theirs).

use jiff::Timestamp;

/// What the policies look at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The certificate in the Secret, or why there is none usable.
    pub current: Result<Current<'a>, &'a str>,
    /// The name of the `AcmeIssuer` the spec names.
    pub issuer: &'a str,
    /// When the current certificate is due for renewal, once planned.
    pub renewal: Option<Timestamp>,
    /// Now.
    pub now: Timestamp,
    /// A `vigil renew` request not answered yet (its time).
    pub requested: Option<&'a str>,
}

/// What the policies need of a usable certificate.
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    /// The issuer recorded on the Secret.
    pub issuer: Option<&'a str>,
    /// Whether its key fits `spec.privateKey`.
    pub key_fits: bool,
}

/// The policy that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The Secret has no usable certificate: missing, incomplete, unparsable, or not for
    /// the spec's names and key.
    NoUsableCertificate(String),
    /// Another `AcmeIssuer` issued the certificate.
    IssuerChanged,
    /// The key no longer fits `spec.privateKey`.
    KeyPolicyChanged,
    /// The renewal time has come.
    RenewalDue,
    /// `vigil renew` asked for a new certificate at this time.
    Requested(String),
}

impl Trigger {
    /// Its name: the `Issuing` condition's reason while the issuance runs.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::NoUsableCertificate(_) => "NoUsableCertificate",
            Trigger::IssuerChanged => "IssuerChanged",
            Trigger::KeyPolicyChanged => "KeyPolicyChanged",
            Trigger::RenewalDue => "RenewalDue",
            Trigger::Requested(_) => "RenewalRequested",
        }
    }

    /// Why, in words: `revision 2 issued because <why>`.
    pub fn why(&self) -> String {
        match self {
            Trigger::NoUsableCertificate(why) => why.clone(),
            Trigger::IssuerChanged => "the issuer changed".to_owned(),
            Trigger::KeyPolicyChanged => "the private key policy changed".to_owned(),
            Trigger::RenewalDue => "the renewal time has come".to_owned(),
            Trigger::Requested(at) => format!("renewal requested at {at} (vigil renew)"),
        }
    }
}

type Policy = fn(&Observed) -> Option<Trigger>;

/// The policies, in the order they are asked.
const POLICIES: [Policy; 5] = [
    no_usable_certificate,
    issuer_changed,
    key_policy_changed,
    renewal_due,
    requested,
];

/// The first policy that fires, if any.
pub fn trigger(observed: &Observed) -> Option<Trigger> {
    POLICIES.iter().find_map(|policy| policy(observed))
}

fn no_usable_certificate(observed: &Observed) -> Option<Trigger> {
    observed
        .current
        .err()
        .map(|why| Trigger::NoUsableCertificate(why.to_owned()))
}

fn issuer_changed(observed: &Observed) -> Option<Trigger> {
    let current = observed.current.ok()?;
    (current.issuer != Some(observed.issuer)).then_some(Trigger::IssuerChanged)
}

fn key_policy_changed(observed: &Observed) -> Option<Trigger> {
    (!observed.current.ok()?.key_fits).then_some(Trigger::KeyPolicyChanged)
}

fn renewal_due(observed: &Observed) -> Option<Trigger> {
    observed.current.ok()?;
    (observed.now >= observed.renewal?).then_some(Trigger::RenewalDue)
}

fn requested(observed: &Observed) -> Option<Trigger> {
    observed
        .requested
        .map(|at| Trigger::Requested(at.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
    }

    /// A usable certificate of issuer `pebble`, key fitting, renewal at 100, now 0.
    fn fine() -> Observed<'static> {
        Observed {
            current: Ok(Current {
                issuer: Some("pebble"),
                key_fits: true,
            }),
            issuer: "pebble",
            renewal: Some(at(100)),
            now: at(0),
            requested: None,
        }
    }

    #[test]
    fn each_policy_fires_on_its_own_and_nothing_fires_for_a_fine_certificate() {
        assert_eq!(trigger(&fine()), None);
        let cases: [(&str, Observed<'static>, Trigger); 6] = [
            (
                "no Secret",
                Observed {
                    current: Err("there is no certificate yet"),
                    ..fine()
                },
                Trigger::NoUsableCertificate("there is no certificate yet".to_owned()),
            ),
            (
                "another issuer",
                Observed {
                    issuer: "letsencrypt",
                    ..fine()
                },
                Trigger::IssuerChanged,
            ),
            (
                "no issuer recorded",
                Observed {
                    current: Ok(Current {
                        issuer: None,
                        key_fits: true,
                    }),
                    ..fine()
                },
                Trigger::IssuerChanged,
            ),
            (
                "a key of another policy",
                Observed {
                    current: Ok(Current {
                        issuer: Some("pebble"),
                        key_fits: false,
                    }),
                    ..fine()
                },
                Trigger::KeyPolicyChanged,
            ),
            (
                "renewal time",
                Observed {
                    now: at(100),
                    ..fine()
                },
                Trigger::RenewalDue,
            ),
            (
                "vigil renew",
                Observed {
                    requested: Some("2026-12-07T10:00:00Z"),
                    ..fine()
                },
                Trigger::Requested("2026-12-07T10:00:00Z".to_owned()),
            ),
        ];
        for (case, observed, expected) in cases {
            assert_eq!(trigger(&observed), Some(expected), "{case}");
        }
        // Not planned yet: not due.
        assert_eq!(
            trigger(&Observed {
                renewal: None,
                now: at(1000),
                ..fine()
            }),
            None
        );
    }

    #[test]
    fn the_first_policy_in_order_wins_and_names_itself() {
        // Everything at once: the missing certificate is the reason.
        let everything = Observed {
            current: Err("Secret shop-tls has no tls.crt or tls.key"),
            issuer: "letsencrypt",
            renewal: Some(at(0)),
            now: at(100),
            requested: Some("2026-12-07T10:00:00Z"),
        };
        let first = trigger(&everything).expect("a trigger");
        assert_eq!(first.name(), "NoUsableCertificate");
        assert_eq!(first.why(), "Secret shop-tls has no tls.crt or tls.key");
        // A changed issuer beats a changed key, a due renewal and a request.
        let changed = Observed {
            current: Ok(Current {
                issuer: Some("pebble"),
                key_fits: false,
            }),
            issuer: "letsencrypt",
            now: at(100),
            requested: Some("2026-12-07T10:00:00Z"),
            ..fine()
        };
        assert_eq!(trigger(&changed), Some(Trigger::IssuerChanged));
        // A due renewal beats a request, which a new certificate answers anyway.
        let due = Observed {
            now: at(100),
            requested: Some("2026-12-07T10:00:00Z"),
            ..fine()
        };
        let due = trigger(&due).expect("a trigger");
        assert_eq!(
            (due.name(), due.why()),
            ("RenewalDue", "the renewal time has come".to_owned())
        );
        assert_eq!(
            Trigger::Requested("2026-12-07T10:00:00Z".to_owned()).why(),
            "renewal requested at 2026-12-07T10:00:00Z (vigil renew)"
        );
    }
}
