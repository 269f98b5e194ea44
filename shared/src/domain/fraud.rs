//! Explainable fraud rules: each rule that fires adds points and a reason; the total picks
//! approve / review / reject. The score and reasons are stored on the order for the reviewer.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Review,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: String,
    pub points: u32,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FraudAssessment {
    pub score: u32,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
}

/// What the rules look at, gathered by the score_fraud step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signals {
    pub billing_country: String,
    pub shipping_country: String,
    pub total_minor: i64,
    /// Orders placed with this email in the last 24 h, this one included.
    pub orders_by_email_24h: u32,
    /// Orders placed with this card fingerprint in the last 24 h, this one included.
    pub orders_by_card_24h: u32,
    pub email_domain: String,
    /// The gateway's risk level: normal, elevated, highest (or unknown).
    pub gateway_risk: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub review_at: u32,
    pub reject_at: u32,
    pub high_value_minor: i64,
    pub very_high_value_minor: i64,
    pub max_orders_per_email_24h: u32,
    pub max_orders_per_card_24h: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            review_at: 40,
            reject_at: 80,
            high_value_minor: 100_000,      // 1,000.00
            very_high_value_minor: 500_000, // 5,000.00
            max_orders_per_email_24h: 3,
            max_orders_per_card_24h: 3,
        }
    }
}

const DISPOSABLE_DOMAINS: &str = include_str!("../../data/disposable_email_domains.txt");

pub fn is_disposable_domain(domain: &str) -> bool {
    let d = domain.trim().to_ascii_lowercase();
    DISPOSABLE_DOMAINS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).any(|l| l == d)
}

pub fn assess(s: &Signals, p: &Policy) -> FraudAssessment {
    let mut reasons = Vec::new();
    let mut add = |rule: &str, points: u32, detail: String| reasons.push(Reason { rule: rule.into(), points, detail });

    if s.billing_country != s.shipping_country {
        add("country_mismatch", 25, format!("billing country {} differs from shipping country {}", s.billing_country, s.shipping_country));
    }
    if s.total_minor >= p.very_high_value_minor {
        add("very_high_value", 40, format!("order total {} minor units is at or above {}", s.total_minor, p.very_high_value_minor));
    } else if s.total_minor >= p.high_value_minor {
        add("high_value", 20, format!("order total {} minor units is at or above {}", s.total_minor, p.high_value_minor));
    }
    if s.orders_by_email_24h > p.max_orders_per_email_24h {
        add("email_velocity", 30, format!("{} orders from this email in 24 h (limit {})", s.orders_by_email_24h, p.max_orders_per_email_24h));
    }
    if s.orders_by_card_24h > p.max_orders_per_card_24h {
        add("card_velocity", 30, format!("{} orders with this card in 24 h (limit {})", s.orders_by_card_24h, p.max_orders_per_card_24h));
    }
    if is_disposable_domain(&s.email_domain) {
        add("disposable_email", 30, format!("{} is a disposable email domain", s.email_domain));
    }
    match s.gateway_risk.as_str() {
        "elevated" => add("gateway_risk_elevated", 40, "the gateway rates this payment's risk elevated".into()),
        "highest" => add("gateway_risk_highest", 80, "the gateway rates this payment's risk highest".into()),
        _ => {}
    }
    let score: u32 = reasons.iter().map(|r| r.points).sum();
    let decision = if score >= p.reject_at {
        Decision::Reject
    } else if score >= p.review_at {
        Decision::Review
    } else {
        Decision::Approve
    };
    FraudAssessment { score, decision, reasons }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clean() -> Signals {
        Signals {
            billing_country: "US".into(),
            shipping_country: "US".into(),
            total_minor: 5_000,
            orders_by_email_24h: 1,
            orders_by_card_24h: 1,
            email_domain: "example.com".into(),
            gateway_risk: "normal".into(),
        }
    }

    /// Killed mutants (cargo-mutants): the velocity limit is "more than", and comment lines of the
    /// disposable-domain list are not domains.
    #[test]
    fn velocity_at_the_limit_is_not_a_signal_and_list_comments_are_not_domains() {
        let p = Policy::default();
        let at = assess(&Signals { orders_by_email_24h: p.max_orders_per_email_24h, ..clean() }, &p);
        assert!(at.reasons.iter().all(|r| r.rule != "email_velocity"), "{at:?}");
        let over = assess(&Signals { orders_by_email_24h: p.max_orders_per_email_24h + 1, ..clean() }, &p);
        assert!(over.reasons.iter().any(|r| r.rule == "email_velocity"));
        let comment = DISPOSABLE_DOMAINS.lines().find(|l| l.starts_with('#')).expect("the list has a comment line");
        assert!(!is_disposable_domain(comment));
    }

    #[test]
    fn a_clean_order_is_approved_with_no_reasons() {
        let a = assess(&clean(), &Policy::default());
        assert_eq!((a.score, a.decision), (0, Decision::Approve));
        assert!(a.reasons.is_empty());
    }

    #[test]
    fn elevated_gateway_risk_goes_to_review() {
        let a = assess(&Signals { gateway_risk: "elevated".into(), ..clean() }, &Policy::default());
        assert_eq!(a.decision, Decision::Review);
        assert_eq!(a.reasons[0].rule, "gateway_risk_elevated");
    }

    #[test]
    fn highest_risk_or_stacked_signals_reject() {
        assert_eq!(assess(&Signals { gateway_risk: "highest".into(), ..clean() }, &Policy::default()).decision, Decision::Reject);
        let stacked = Signals { billing_country: "NG".into(), email_domain: "mailinator.com".into(), orders_by_email_24h: 9, ..clean() };
        let a = assess(&stacked, &Policy::default());
        assert_eq!(a.decision, Decision::Reject);
        let rules: Vec<_> = a.reasons.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["country_mismatch", "email_velocity", "disposable_email"]);
    }

    #[test]
    fn velocity_counts_the_current_order() {
        let p = Policy::default();
        assert_eq!(assess(&Signals { orders_by_card_24h: 3, ..clean() }, &p).score, 0);
        assert_eq!(assess(&Signals { orders_by_card_24h: 4, ..clean() }, &p).score, 30);
    }

    #[test]
    fn disposable_list_is_loaded() {
        assert!(is_disposable_domain("MAILINATOR.com"));
        assert!(!is_disposable_domain("example.com"));
    }

    proptest! {
        #[test]
        fn score_is_sum_of_reasons_and_decision_is_monotone(total in 0i64..10_000_000, e in 0u32..10, c in 0u32..10, mismatch: bool) {
            let s = Signals { total_minor: total, orders_by_email_24h: e, orders_by_card_24h: c,
                billing_country: if mismatch { "CA".into() } else { "US".into() }, ..clean() };
            let a = assess(&s, &Policy::default());
            prop_assert_eq!(a.score, a.reasons.iter().map(|r| r.points).sum::<u32>());
            let more = assess(&Signals { gateway_risk: "elevated".into(), ..s }, &Policy::default());
            prop_assert!(more.score > a.score);
            let rank = |d: Decision| match d { Decision::Approve => 0, Decision::Review => 1, Decision::Reject => 2 };
            prop_assert!(rank(more.decision) >= rank(a.decision));
        }
    }
}
