//! Checkout attempt limits (#10 item 7, card testing): before anything is authorized, count this
//! attempt against the shopper's email and, when the storefront forwards it (`X-Shopper-Ip`), the
//! shopper's IP address, over the last hour (the velocity table, one item per attempt keyed by the
//! pre-generated order id, so a replay of the same request is not a second attempt). Past the limit
//! (`CHECKOUT_ATTEMPTS_PER_HOUR`) the answer is 429 `too_many_attempts` with Retry-After, and no order,
//! no hold. Declines are answered with generic reasons (customer_view), so a card tester learns
//! nothing per attempt either. Per card (fingerprint), authorize_payment declines a card that
//! collected `CARD_DECLINES_PER_HOUR` declines in the last hour before it reaches the gateway.

use super::{error, Deps};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use orderflow_shared::domain::checkout::{parse_body, validate};
use orderflow_shared::domain::order::now_rfc3339;

const WINDOW_SECONDS: i64 = 3_600;

/// The shopper's IP as the storefront forwarded it, normalised; None when absent or not an IP.
pub fn shopper_ip(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("x-shopper-ip")?.to_str().ok()?.trim();
    raw.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

/// Some(429) when this attempt is over a limit. Invalid bodies are not counted (validation answers
/// them). A failing counter lets the attempt through (logged): the limit protects, it must not stop sales.
pub async fn over_limit(deps: &Deps, order_id: &str, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let valid = parse_body(body).and_then(validate).ok()?;
    let now = now_rfc3339();
    let mut subjects = vec![("email", format!("attempt#email#{}", valid.email.to_lowercase()))];
    if let Some(ip) = shopper_ip(headers) {
        subjects.push(("address", format!("attempt#ip#{ip}")));
    }
    for (what, subject) in subjects {
        match deps.velocity.record_and_count_within(&subject, order_id, &now, WINDOW_SECONDS).await {
            Ok(n) if n > deps.checkout_attempts_per_hour => {
                tracing::warn!(%order_id, attempts = n, limit = deps.checkout_attempts_per_hour, by = what, "checkout attempts over the limit");
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    &format!("too many checkout attempts for this {what} in the last hour; try again later"),
                    None,
                );
                r.headers_mut().insert("retry-after", HeaderValue::from_static("3600"));
                return Some(r);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(%order_id, error = %e, "attempt counter unavailable; attempt let through"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_ip_addresses_are_counted() {
        let mut h = HeaderMap::new();
        assert_eq!(shopper_ip(&h), None);
        h.insert("x-shopper-ip", HeaderValue::from_static(" 203.0.113.7 "));
        assert_eq!(shopper_ip(&h).as_deref(), Some("203.0.113.7"));
        h.insert("x-shopper-ip", HeaderValue::from_static("2001:DB8::1"));
        assert_eq!(shopper_ip(&h).as_deref(), Some("2001:db8::1"), "one spelling per address");
        h.insert("x-shopper-ip", HeaderValue::from_static("attempt#email#x"));
        assert_eq!(shopper_ip(&h), None);
    }
}
