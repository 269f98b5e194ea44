//! The production carrier client: an EasyPost-shaped shipments API over HTTPS (create a shipment with
//! addresses and parcel, buy its rate for the service level, get a tracking code and label). The
//! local stack points it at its sandbox carrier; on AWS it talks to the real one.

use crate::domain::order::Address;
use crate::ports::{Carrier, GatewayError, Label, LabelRequest};
use crate::secrets::SecretSource;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct HttpCarrier {
    http: reqwest::Client,
    base_url: String,
    api_key: Arc<SecretSource>,
}

impl HttpCarrier {
    pub fn new(base_url: &str, api_key: Arc<SecretSource>) -> HttpCarrier {
        let http = crate::gateway::partner_client(Duration::from_secs(15));
        HttpCarrier { http, base_url: base_url.trim_end_matches('/').to_string(), api_key }
    }

    async fn post(&self, path: &str, body: &Value, idempotency_key: &str) -> Result<Value, GatewayError> {
        let api_key = self.api_key.get().await.map_err(|e| GatewayError::Retryable(e.to_string()))?;
        let resp = self
            .http
            .post(format!("{}{}", self.base_url, path))
            // EasyPost authenticates with the API key as the basic-auth user name.
            .basic_auth(api_key.expose(), Some(""))
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(|e| GatewayError::Retryable(format!("carrier unreachable: {e}")))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| GatewayError::Retryable(format!("carrier sent a non-JSON body ({status}): {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("unknown").to_string();
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        Err(match status.as_u16() {
            409 | 429 | 500..=599 => GatewayError::Retryable(format!("{code}: {message}")),
            _ => GatewayError::Rejected { code, message },
        })
    }
}

fn address(a: &Address) -> Value {
    json!({"name": a.name, "street1": a.line1, "street2": a.line2, "city": a.city, "state": a.region, "zip": a.postal_code, "country": a.country})
}

/// Our service levels onto the carrier's (USPS-like names in the sandbox).
pub fn carrier_service(level: &str) -> &'static str {
    match level {
        "express" => "Express",
        _ => "Ground",
    }
}

#[async_trait]
impl Carrier for HttpCarrier {
    async fn buy_label(&self, req: &LabelRequest, idempotency_key: &str) -> Result<Label, GatewayError> {
        let grams_to_oz = |g: u32| ((g as f64) / 28.349_523_125 * 10.0).ceil() / 10.0; // carrier wants ounces; not money
        let cm_to_in = |c: u32| ((c as f64) / 2.54 * 10.0).ceil() / 10.0;
        let mut body = json!({"shipment": {
            "reference": req.reference,
            "to_address": address(&req.to),
            "from_address": address(&req.from),
            "parcel": {"length": cm_to_in(req.parcel.length_cm), "width": cm_to_in(req.parcel.width_cm), "height": cm_to_in(req.parcel.height_cm), "weight": grams_to_oz(req.weight_grams)},
        }});
        if req.is_return {
            // EasyPost: the outbound parcel's addresses as they were, and `is_return`; the carrier
            // swaps them (the label goes from the customer to the warehouse).
            body["shipment"]["is_return"] = json!(true);
        }
        let shipment = self.post("/v2/shipments", &body, &format!("{idempotency_key}:create")).await?;
        let id = shipment["id"].as_str().unwrap_or_default().to_string();
        let want = carrier_service(&req.service_level);
        // Only the service the customer paid for: never an arbitrary (slower, or dearer) rate.
        let rates = shipment["rates"].as_array().cloned().unwrap_or_default();
        let rate = rates.iter().find(|r| r["service"] == want).cloned().ok_or_else(|| {
            let offered: Vec<&str> = rates.iter().filter_map(|r| r["service"].as_str()).collect();
            GatewayError::Rejected {
                code: "no_rate_for_service".into(),
                message: format!("carrier offered no {want} rate for shipment {id} (offered: {offered:?})"),
            }
        })?;
        let bought = self.post(&format!("/v2/shipments/{id}/buy"), &json!({"rate": {"id": rate["id"]}}), &format!("{idempotency_key}:buy")).await?;
        let tracking_code = bought["tracking_code"].as_str().unwrap_or_default().to_string();
        if tracking_code.is_empty() {
            return Err(GatewayError::Retryable(format!("carrier bought shipment {id} without a tracking code yet")));
        }
        Ok(Label {
            carrier_shipment_id: id,
            carrier: bought["selected_rate"]["carrier"].as_str().or(rate["carrier"].as_str()).unwrap_or_default().to_string(),
            service: bought["selected_rate"]["service"].as_str().or(rate["service"].as_str()).unwrap_or_default().to_string(),
            tracking_code,
            label_url: bought["postage_label"]["label_url"].as_str().unwrap_or_default().to_string(),
            tracking_url: bought["tracker"]["public_url"].as_str().unwrap_or_default().to_string(),
        })
    }

    async fn refund_label(&self, carrier_shipment_id: &str, idempotency_key: &str) -> Result<String, GatewayError> {
        let shipment = self.post(&format!("/v2/shipments/{carrier_shipment_id}/refund"), &json!({}), idempotency_key).await?;
        Ok(shipment["refund_status"].as_str().unwrap_or("submitted").to_string())
    }
}
