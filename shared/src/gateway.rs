//! The production payment-gateway client: a Stripe-compatible PaymentIntents subset over HTTPS.
//! The local stack points it at its sandbox gateway; on AWS it talks to the real one.
//! Every POST carries an order-derived Idempotency-Key, so a replayed step never holds twice (PAY-2).

use crate::money::Money;
use crate::ports::{Authorization, Capture, GatewayError, GatewayRefund, PaymentGateway};
use crate::secrets::SecretSource;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The Stripe API version every request is made with. Pinned so an account's default version (the
/// one current when the account was made, changed from the Dashboard) never changes what our
/// requests mean; the webhook endpoint is registered with the same version (README). Since
/// 2023-08-16 PaymentIntents have automatic payment methods on by default, and confirming one needs
/// a `return_url` unless payment method types are given: we give `card`, the only kind we take.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// The HTTP client for a partner's API (gateway, carrier): bounded request and connect times.
pub(crate) fn partner_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(3)).build().expect("reqwest client builds with static settings")
}

pub struct HttpGateway {
    http: reqwest::Client,
    base_url: String,
    api_key: Arc<SecretSource>,
}

impl HttpGateway {
    pub fn new(base_url: &str, api_key: Arc<SecretSource>) -> HttpGateway {
        let http = partner_client(Duration::from_secs(10));
        HttpGateway { http, base_url: base_url.trim_end_matches('/').to_string(), api_key }
    }

    async fn post(&self, path: &str, form: &[(&str, String)], idempotency_key: &str) -> Result<Value, GatewayError> {
        let req = self.http.post(format!("{}{}", self.base_url, path)).header("Idempotency-Key", idempotency_key).form(form);
        self.send(req).await
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, GatewayError> {
        self.send(self.http.get(format!("{}{}", self.base_url, path)).query(query)).await
    }

    /// Authenticate, pin the version, send, and map Stripe's answer to ours.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, GatewayError> {
        let api_key = self.api_key.get().await.map_err(|e| GatewayError::Retryable(e.to_string()))?;
        let resp = req
            .bearer_auth(api_key.expose())
            .header("Stripe-Version", STRIPE_VERSION)
            .send()
            .await
            .map_err(|e| GatewayError::Retryable(format!("gateway unreachable: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| GatewayError::Retryable(format!("gateway sent a non-JSON body ({status}): {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let err = &body["error"];
        let code = err["code"].as_str().or(err["type"].as_str()).unwrap_or("unknown").to_string();
        let message = err["message"].as_str().unwrap_or("").to_string();
        Err(match status.as_u16() {
            402 => GatewayError::Declined {
                decline_code: err["decline_code"].as_str().unwrap_or(&code).to_string(),
                code,
                message,
                intent_id: err["payment_intent"]["id"].as_str().map(String::from),
            },
            409 | 429 | 500..=599 => GatewayError::Retryable(format!("{code}: {message}")),
            _ => {
                // Carry the intent's status for callers that treat some states as "already done".
                let st = err["payment_intent"]["status"].as_str().unwrap_or("");
                GatewayError::Rejected { code: if st.is_empty() { code } else { format!("{code}:{st}") }, message }
            }
        })
    }
}

/// Voiding a hold found by the List API that the order never recorded (one key per intent).
pub fn orphan_void_key(order_id: &str, intent_id: &str) -> String {
    format!("{order_id}:void-orphan:{intent_id}")
}

pub fn authorize_key(order_id: &str) -> String {
    format!("{order_id}:authorize")
}
pub fn void_key(order_id: &str) -> String {
    format!("{order_id}:void")
}
pub fn capture_key(order_id: &str, shipment_id: &str) -> String {
    format!("{order_id}:capture:{shipment_id}")
}
/// The one final capture of everything shipped, on a hold without multicapture.
pub fn capture_shipped_key(order_id: &str) -> String {
    format!("{order_id}:capture-shipped")
}
/// Releasing what is left of a hold after captures (the last shipment, or the hold guard).
pub fn release_key(order_id: &str) -> String {
    format!("{order_id}:release-remainder")
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn holds_for_order(&self, order_id: &str, created_from: i64, created_to: i64) -> Result<Vec<String>, GatewayError> {
        let mut holds = Vec::new();
        let mut after: Option<String> = None;
        // Newest first, 100 a page; a store's checkouts in a few minutes fit in a few pages.
        for _ in 0..20 {
            let mut q = vec![("created[gte]", created_from.to_string()), ("created[lte]", created_to.to_string()), ("limit", "100".to_string())];
            if let Some(a) = &after {
                q.push(("starting_after", a.clone()));
            }
            let page = self.get("/v1/payment_intents", &q).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            holds.extend(
                data.iter()
                    .filter(|pi| pi["metadata"]["order_id"].as_str() == Some(order_id) && pi["status"] == "requires_capture")
                    .filter_map(|pi| pi["id"].as_str().map(String::from)),
            );
            match (page["has_more"].as_bool(), data.last().and_then(|pi| pi["id"].as_str())) {
                (Some(true), Some(last)) => after = Some(last.to_string()),
                _ => return Ok(holds),
            }
        }
        Err(GatewayError::Retryable(format!("more than 2,000 intents created in the window of {order_id}; narrow it")))
    }

    async fn card_fingerprint(&self, payment_method: &str) -> Result<Option<String>, GatewayError> {
        // The token was validated at the door (`pm_` + letters, digits, '_'): safe as a path segment.
        let pm = self.get(&format!("/v1/payment_methods/{payment_method}"), &[]).await?;
        Ok(pm["card"]["fingerprint"].as_str().map(String::from))
    }

    async fn authorize(&self, order_id: &str, amount: Money, payment_method: &str, idempotency_key: &str) -> Result<Authorization, GatewayError> {
        let form = [
            ("amount", amount.minor.to_string()),
            ("currency", amount.currency.lower()),
            ("payment_method", payment_method.to_string()),
            ("confirm", "true".into()),
            ("capture_method", "manual".into()),
            // A server-side confirm with no customer present to follow a redirect: cards only.
            ("payment_method_types[]", "card".into()),
            // Several captures of one hold (one per parcel) need multicapture, which Stripe grants
            // only when asked at creation and only where the charge supports it (read back below).
            ("payment_method_options[card][request_multicapture]", "if_available".into()),
            ("metadata[order_id]", order_id.to_string()),
            ("expand[]", "latest_charge".into()),
        ];
        let pi = self.post("/v1/payment_intents", &form, idempotency_key).await?;
        let id = pi["id"].as_str().unwrap_or_default().to_string();
        match pi["status"].as_str() {
            Some("requires_capture") => {
                let charge = &pi["latest_charge"];
                Ok(Authorization {
                    intent_id: id,
                    status: "requires_capture".into(),
                    amount: Money::new(pi["amount_capturable"].as_i64().unwrap_or(amount.minor), amount.currency),
                    capture_before: charge["payment_method_details"]["card"]["capture_before"].as_i64(),
                    risk_level: charge["outcome"]["risk_level"].as_str().map(String::from),
                    card_fingerprint: charge["payment_method_details"]["card"]["fingerprint"].as_str().map(String::from),
                    multicapture: charge["payment_method_details"]["card"]["multicapture"]["status"].as_str() == Some("available"),
                })
            }
            // 3-D Secure: this backend has no customer present to authenticate, so it is a decline
            // the storefront can act on (re-collect with authentication).
            Some("requires_action") => Err(GatewayError::Declined {
                code: "authentication_required".into(),
                decline_code: "authentication_required".into(),
                message: "the card requires 3-D Secure authentication".into(),
                intent_id: Some(id),
            }),
            other => Err(GatewayError::Rejected { code: "unexpected_status".into(), message: format!("payment intent {id} is {other:?}") }),
        }
    }

    async fn void(&self, intent_id: &str, idempotency_key: &str) -> Result<String, GatewayError> {
        match self.post(&format!("/v1/payment_intents/{intent_id}/cancel"), &[], idempotency_key).await {
            Ok(pi) => Ok(pi["status"].as_str().unwrap_or("canceled").to_string()),
            Err(GatewayError::Rejected { code, .. }) if code.ends_with(":canceled") => Ok("canceled".into()),
            Err(e) => Err(e),
        }
    }

    async fn capture(&self, intent_id: &str, amount: Money, final_capture: bool, idempotency_key: &str) -> Result<Capture, GatewayError> {
        // Multicapture: every capture but the last keeps the rest of the hold (Stripe `final_capture`).
        let form = [("amount_to_capture", amount.minor.to_string()), ("final_capture", final_capture.to_string())];
        let pi = self.post(&format!("/v1/payment_intents/{intent_id}/capture"), &form, idempotency_key).await?;
        Ok(Capture {
            status: pi["status"].as_str().unwrap_or_default().to_string(),
            amount_received: pi["amount_received"].as_i64().unwrap_or(0),
            amount_capturable: pi["amount_capturable"].as_i64().unwrap_or(0),
        })
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        reason: &str,
        metadata: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<GatewayRefund, GatewayError> {
        let mut form =
            vec![("payment_intent".to_string(), intent_id.to_string()), ("amount".into(), amount.minor.to_string()), ("reason".into(), reason.to_string())];
        for (k, v) in metadata {
            form.push((format!("metadata[{k}]"), v.to_string()));
        }
        let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let re = self.post("/v1/refunds", &form, idempotency_key).await?;
        Ok(GatewayRefund { id: re["id"].as_str().unwrap_or_default().to_string(), status: re["status"].as_str().unwrap_or("pending").to_string() })
    }
}

/// The refund of `refund_id` on an order: one key per refund, so a replay is one refund (RET-4).
pub fn refund_key(order_id: &str, refund_id: &str) -> String {
    format!("{order_id}:refund:{refund_id}")
}
