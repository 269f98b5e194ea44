//! The data a store loads and keeps through the operator API (`PUT /ops/catalog/{sku}`,
//! `POST /ops/stock/{sku}/adjustments`, `PUT /ops/stock/{sku}/warehouses/{id}/reorder`,
//! `PUT /ops/rates/{country}`, `PUT /ops/warehouses/{id}`): the request bodies and their
//! validation. Every refusal names the field, with a stable code (the same `Invalid` checkout uses).

use super::checkout::Invalid;
use super::fulfillment::Warehouse;
use super::order::Address;
use super::pricing::{CatalogItem, CountryRates, ShippingRate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most a single price, rate or adjustment may be: far above any real one, far below where
/// sums of them could overflow.
pub const MAX_MINOR: i64 = 10_000_000_000;
pub const MAX_ADJUSTMENT: i64 = 1_000_000;
pub const MAX_WEIGHT_GRAMS: i64 = 1_000_000;

/// SKUs and warehouse ids: 1-64 letters, digits, '-' or '_' (what checkout accepts in an order).
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Invalid::new("invalid_field", field, format!("{field} is 1-{max} printable characters")));
    }
    Ok(v.to_string())
}

fn bounded(field: &str, v: i64, min: i64, max: i64) -> Result<i64, Invalid> {
    if v < min || v > max {
        return Err(Invalid::new("invalid_field", field, format!("{field} must be between {min} and {max}")));
    }
    Ok(v)
}

/// `PUT /ops/catalog/{sku}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPut {
    pub name: String,
    pub unit_price_minor: i64,
    pub weight_grams: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

pub fn catalog_item(sku: &str, put: CatalogPut) -> Result<CatalogItem, Invalid> {
    if !is_identifier(sku) {
        return Err(Invalid::new("invalid_sku", "sku", "a SKU is 1-64 letters, digits, '-' or '_'"));
    }
    Ok(CatalogItem {
        sku: sku.to_string(),
        name: text("name", &put.name, 200)?,
        unit_price_minor: bounded("unit_price_minor", put.unit_price_minor, 0, MAX_MINOR)?,
        weight_grams: bounded("weight_grams", put.weight_grams, 1, MAX_WEIGHT_GRAMS)?,
        active: put.active,
    })
}

/// `POST /ops/stock/{sku}/adjustments`: units found (positive) or written off (negative) in one
/// warehouse, with the reason an auditor will read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub warehouse: String,
    pub delta: i64,
    pub reason: String,
}

/// One stock adjustment as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub sku: String,
    pub warehouse: String,
    pub delta: i64,
    pub reason: String,
    /// Who made it (the `X-Operator` header, else "ops-api").
    pub by: String,
    pub at: String,
    /// The client's Idempotency-Key and a digest of the request it came with.
    pub idempotency_key: String,
    pub request_hash: String,
}

pub fn adjustment(sku: &str, req: AdjustmentRequest) -> Result<(String, i64, String), Invalid> {
    if !is_identifier(sku) {
        return Err(Invalid::new("invalid_sku", "sku", "a SKU is 1-64 letters, digits, '-' or '_'"));
    }
    if !is_identifier(&req.warehouse) {
        return Err(Invalid::new("invalid_warehouse", "warehouse", "a warehouse id is 1-64 letters, digits, '-' or '_'"));
    }
    if req.delta == 0 {
        return Err(Invalid::new("invalid_field", "delta", "delta is a non-zero number of units"));
    }
    let delta = bounded("delta", req.delta, -MAX_ADJUSTMENT, MAX_ADJUSTMENT)?;
    Ok((req.warehouse, delta, text("reason", &req.reason, 500)?))
}

/// `PUT /ops/stock/{sku}/warehouses/{id}/reorder`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderPut {
    pub point: i64,
    pub quantity: i64,
}

pub fn reorder(put: ReorderPut) -> Result<(i64, i64), Invalid> {
    let point = bounded("point", put.point, 0, MAX_ADJUSTMENT)?;
    let quantity = bounded("quantity", put.quantity, 0, MAX_ADJUSTMENT)?;
    if point > 0 && quantity == 0 {
        return Err(Invalid::new("invalid_field", "quantity", "a reorder point needs a reorder quantity"));
    }
    Ok((point, quantity))
}

/// `PUT /ops/rates/{country}`: shipping methods and tax for one destination. The store has one
/// currency; `currency` states it so a rate is never read in the wrong one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesPut {
    pub currency: String,
    pub shipping: BTreeMap<String, ShippingRate>,
    pub tax_rate: Decimal,
    #[serde(default)]
    pub tax_shipping: bool,
}

pub fn is_country(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

pub fn country_rates(country: &str, put: RatesPut) -> Result<(String, CountryRates), Invalid> {
    if !is_country(country) {
        return Err(Invalid::new("invalid_country", "country", "an ISO 3166-1 alpha-2 code in capitals, e.g. US"));
    }
    let Some(currency) = crate::money::Currency::parse(&put.currency) else {
        return Err(Invalid::new("invalid_currency", "currency", "an ISO 4217 currency code, e.g. USD"));
    };
    if put.shipping.is_empty() {
        return Err(Invalid::new("invalid_field", "shipping", "at least one shipping method"));
    }
    for (method, r) in &put.shipping {
        let f = |name: &str| format!("shipping.{method}.{name}");
        if !is_identifier(method) {
            return Err(Invalid::new("invalid_field", "shipping", "shipping method names are 1-64 letters, digits, '-' or '_'"));
        }
        bounded(&f("base_minor"), r.base_minor, 0, MAX_MINOR)?;
        bounded(&f("per_item_minor"), r.per_item_minor, 0, MAX_MINOR)?;
        if let Some(v) = r.free_over_minor {
            bounded(&f("free_over_minor"), v, 0, MAX_MINOR)?;
        }
        if r.transit_days > 60 {
            return Err(Invalid::new("invalid_field", f("transit_days"), "transit_days must be between 0 and 60"));
        }
    }
    if put.tax_rate < Decimal::ZERO || put.tax_rate >= Decimal::ONE {
        return Err(Invalid::new("invalid_field", "tax_rate", "tax_rate is a fraction from 0 up to (not including) 1, e.g. \"0.0825\""));
    }
    Ok((currency.as_str().to_string(), CountryRates { shipping: put.shipping, tax_rate: put.tax_rate, tax_shipping: put.tax_shipping }))
}

/// `PUT /ops/warehouses/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehousePut {
    pub name: String,
    pub address: Address,
    pub zones: BTreeMap<String, BTreeMap<String, u32>>,
}

pub fn warehouse(id: &str, put: WarehousePut) -> Result<Warehouse, Invalid> {
    if !is_identifier(id) {
        return Err(Invalid::new("invalid_warehouse", "id", "a warehouse id is 1-64 letters, digits, '-' or '_'"));
    }
    let a = &put.address;
    text("address.name", &a.name, 100)?;
    text("address.line1", &a.line1, 200)?;
    text("address.city", &a.city, 100)?;
    text("address.postal_code", &a.postal_code, 20)?;
    if !is_country(&a.country) {
        return Err(Invalid::new("invalid_country", "address.country", "an ISO 3166-1 alpha-2 code in capitals, e.g. US"));
    }
    if put.zones.is_empty() {
        return Err(Invalid::new("invalid_field", "zones", "zones by destination country (\"*\" for any), then first postal character (\"*\" for any)"));
    }
    for (country, by_postal) in &put.zones {
        if country != "*" && !is_country(country) {
            return Err(Invalid::new("invalid_country", format!("zones.{country}"), "zone keys are ISO country codes or \"*\""));
        }
        if by_postal.is_empty() || by_postal.values().any(|z| *z == 0 || *z > 99) {
            return Err(Invalid::new("invalid_field", format!("zones.{country}"), "zones are 1 (nearest) to 99, at least one per country"));
        }
    }
    Ok(Warehouse { id: id.to_string(), name: text("name", &put.name, 200)?, address: put.address, zones: put.zones })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rates(v: serde_json::Value) -> Result<(String, CountryRates), Invalid> {
        country_rates("US", serde_json::from_value(v).unwrap())
    }

    #[test]
    fn catalog_items_are_checked_field_by_field() {
        let ok = |v: serde_json::Value| catalog_item("MUG-1", serde_json::from_value(v).unwrap());
        let item = ok(json!({"name": " Mug ", "unit_price_minor": 1200, "weight_grams": 350})).unwrap();
        assert_eq!((item.name.as_str(), item.active), ("Mug", true));
        assert_eq!(ok(json!({"name": "", "unit_price_minor": 1, "weight_grams": 1})).unwrap_err().field.as_deref(), Some("name"));
        assert_eq!(ok(json!({"name": "m", "unit_price_minor": -1, "weight_grams": 1})).unwrap_err().field.as_deref(), Some("unit_price_minor"));
        assert_eq!(ok(json!({"name": "m", "unit_price_minor": 1, "weight_grams": 0})).unwrap_err().field.as_deref(), Some("weight_grams"));
        assert_eq!(
            catalog_item("bad sku", serde_json::from_value(json!({"name": "m", "unit_price_minor": 1, "weight_grams": 1})).unwrap()).unwrap_err().code,
            "invalid_sku"
        );
        assert!(serde_json::from_value::<CatalogPut>(json!({"name": "m", "unit_price_minor": 1, "weight_grams": 1, "price": 3})).is_err());
    }

    #[test]
    fn adjustments_need_a_warehouse_a_nonzero_bounded_delta_and_a_reason() {
        let adj = |v: serde_json::Value| adjustment("MUG-1", serde_json::from_value(v).unwrap());
        assert_eq!(adj(json!({"warehouse": "wh-east", "delta": -3, "reason": "damaged"})).unwrap(), ("wh-east".into(), -3, "damaged".into()));
        assert_eq!(adj(json!({"warehouse": "wh-east", "delta": 0, "reason": "x"})).unwrap_err().field.as_deref(), Some("delta"));
        assert_eq!(adj(json!({"warehouse": "wh-east", "delta": 2_000_000, "reason": "x"})).unwrap_err().field.as_deref(), Some("delta"));
        assert_eq!(adj(json!({"warehouse": "wh east", "delta": 1, "reason": "x"})).unwrap_err().code, "invalid_warehouse");
        assert_eq!(adj(json!({"warehouse": "wh-east", "delta": 1, "reason": "  "})).unwrap_err().field.as_deref(), Some("reason"));
    }

    #[test]
    fn rates_refuse_bad_currency_tax_and_methods() {
        let ship = json!({"standard": {"base_minor": 500, "per_item_minor": 100, "transit_days": 4}});
        assert!(rates(json!({"currency": "USD", "shipping": ship, "tax_rate": "0.0825"})).is_ok());
        assert_eq!(rates(json!({"currency": "US", "shipping": ship, "tax_rate": "0.1"})).unwrap_err().code, "invalid_currency");
        assert_eq!(rates(json!({"currency": "USD", "shipping": ship, "tax_rate": "1.5"})).unwrap_err().field.as_deref(), Some("tax_rate"));
        assert_eq!(rates(json!({"currency": "USD", "shipping": {}, "tax_rate": "0.1"})).unwrap_err().field.as_deref(), Some("shipping"));
        let neg = json!({"standard": {"base_minor": -5, "per_item_minor": 100, "transit_days": 4}});
        assert_eq!(rates(json!({"currency": "USD", "shipping": neg, "tax_rate": "0.1"})).unwrap_err().field.as_deref(), Some("shipping.standard.base_minor"));
        assert_eq!(
            country_rates("usa", serde_json::from_value(json!({"currency": "USD", "shipping": ship, "tax_rate": "0"})).unwrap()).unwrap_err().code,
            "invalid_country"
        );
    }

    #[test]
    fn warehouses_need_an_address_and_zones() {
        let body = json!({"name": "North", "address": {"name": "N DC", "line1": "1 Road", "city": "Troy", "postal_code": "12180", "country": "US"}, "zones": {"US": {"*": 3}}});
        let w = warehouse("wh-north", serde_json::from_value(body.clone()).unwrap()).unwrap();
        assert_eq!(w.zones["US"]["*"], 3);
        let mut bad = body.clone();
        bad["zones"] = json!({"US": {"*": 0}});
        assert_eq!(warehouse("wh-north", serde_json::from_value(bad).unwrap()).unwrap_err().field.as_deref(), Some("zones.US"));
        let mut bad = body;
        bad["address"]["country"] = json!("us");
        assert_eq!(warehouse("wh-north", serde_json::from_value(bad).unwrap()).unwrap_err().field.as_deref(), Some("address.country"));
    }
}
