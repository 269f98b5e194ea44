//! Server-side pricing: unit prices from the catalog, shipping and tax from the rate tables.
//! Whatever prices a client sends are never read (the request type has no field for them).

use super::order::{PricedLine, Totals};
use crate::money::{Currency, Money, MoneyError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub sku: String,
    pub name: String,
    /// Unit price in minor units of the store currency.
    pub unit_price_minor: i64,
    pub weight_grams: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShippingRate {
    pub base_minor: i64,
    pub per_item_minor: i64,
    /// Shipping is free when the subtotal reaches this amount.
    #[serde(default)]
    pub free_over_minor: Option<i64>,
    /// Business days from order to delivery.
    pub transit_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountryRates {
    /// Shipping methods offered to this country ("standard", "express").
    pub shipping: BTreeMap<String, ShippingRate>,
    /// Tax rate, e.g. "0.0825". Applied to goods, and to shipping where `tax_shipping` is set.
    pub tax_rate: Decimal,
    #[serde(default)]
    pub tax_shipping: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateTable {
    pub currency: String,
    pub countries: BTreeMap<String, CountryRates>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedLine {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    /// Estimated delivery date (YYYY-MM-DD).
    pub estimated_delivery: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("lines[{index}].sku: unknown SKU '{sku}'")]
    UnknownSku { index: usize, sku: String },
    #[error("shipping_address.country: we do not ship to '{0}'")]
    UnsupportedDestination(String),
    #[error("shipping_method: '{method}' is not offered to {country}")]
    UnsupportedShippingMethod { method: String, country: String },
    #[error("order total is too large")]
    Overflow,
    #[error("rate table currency '{0}' is not an ISO 4217 code")]
    BadCurrency(String),
}

impl From<MoneyError> for PricingError {
    fn from(_: MoneyError) -> Self {
        PricingError::Overflow
    }
}

/// Add `days` business days (Mon-Fri) to `from`.
pub fn add_business_days(from: chrono::NaiveDate, days: u32) -> chrono::NaiveDate {
    use chrono::Datelike;
    let mut d = from;
    let mut left = days;
    while left > 0 {
        d = d.succ_opt().unwrap_or(d);
        if d.weekday().num_days_from_monday() < 5 {
            left -= 1;
        }
    }
    d
}

pub fn quote(
    requested: &[RequestedLine],
    catalog: &HashMap<String, CatalogItem>,
    rates: &RateTable,
    country: &str,
    method: &str,
    today: chrono::NaiveDate,
) -> Result<Quote, PricingError> {
    let currency = Currency::parse(&rates.currency).ok_or_else(|| PricingError::BadCurrency(rates.currency.clone()))?;
    let country_rates = rates.countries.get(country).ok_or_else(|| PricingError::UnsupportedDestination(country.to_string()))?;
    let ship = country_rates
        .shipping
        .get(method)
        .ok_or_else(|| PricingError::UnsupportedShippingMethod { method: method.to_string(), country: country.to_string() })?;

    let mut lines = Vec::with_capacity(requested.len());
    let mut subtotal = Money::zero(currency);
    let mut units: i64 = 0;
    for (index, line) in requested.iter().enumerate() {
        let item = catalog.get(&line.sku).filter(|i| i.active).ok_or_else(|| PricingError::UnknownSku { index, sku: line.sku.clone() })?;
        let unit_price = Money::new(item.unit_price_minor, currency);
        let line_total = unit_price.checked_mul(line.quantity)?;
        subtotal = subtotal.checked_add(line_total)?;
        units = units.checked_add(line.quantity).ok_or(PricingError::Overflow)?;
        lines.push(PricedLine { sku: item.sku.clone(), name: item.name.clone(), quantity: line.quantity, unit_price, line_total });
    }

    let free = ship.free_over_minor.is_some_and(|limit| subtotal.minor >= limit);
    let shipping = if free {
        Money::zero(currency)
    } else {
        Money::new(ship.base_minor, currency).checked_add(Money::new(ship.per_item_minor, currency).checked_mul(units)?)?
    };
    let taxable = if country_rates.tax_shipping { subtotal.checked_add(shipping)? } else { subtotal };
    let tax = taxable.apply_rate(country_rates.tax_rate)?;
    let total = subtotal.checked_add(shipping)?.checked_add(tax)?;
    Ok(Quote {
        lines,
        totals: Totals { subtotal, shipping, tax, total },
        estimated_delivery: add_business_days(today, ship.transit_days).format("%Y-%m-%d").to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_catalog_item_without_an_active_flag_is_active() {
        let item: super::CatalogItem =
            serde_json::from_value(serde_json::json!({"sku": "A", "name": "A", "unit_price_minor": 100, "weight_grams": 10})).unwrap();
        assert!(item.active);
    }

    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn catalog() -> HashMap<String, CatalogItem> {
        let mut c = HashMap::new();
        for (sku, price) in [("MUG", 1250), ("TEE", 2000), ("LAMP", 8999)] {
            c.insert(sku.into(), CatalogItem { sku: sku.into(), name: sku.into(), unit_price_minor: price, weight_grams: 300, active: true });
        }
        c.insert("OLD".into(), CatalogItem { sku: "OLD".into(), name: "old".into(), unit_price_minor: 1, weight_grams: 1, active: false });
        c
    }

    fn rates() -> RateTable {
        let mut shipping = BTreeMap::new();
        shipping.insert("standard".into(), ShippingRate { base_minor: 500, per_item_minor: 100, free_over_minor: Some(10000), transit_days: 3 });
        let mut countries = BTreeMap::new();
        countries.insert("US".into(), CountryRates { shipping, tax_rate: dec!(0.0825), tax_shipping: true });
        RateTable { currency: "USD".into(), countries }
    }

    fn day() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap() // a Friday
    }

    #[test]
    fn prices_come_from_the_catalog_and_rates() {
        let q = quote(&[RequestedLine { sku: "MUG".into(), quantity: 2 }], &catalog(), &rates(), "US", "standard", day()).unwrap();
        assert_eq!(q.totals.subtotal.minor, 2500);
        assert_eq!(q.totals.shipping.minor, 700); // 500 + 2 x 100
        assert_eq!(q.totals.tax.minor, 264); // 3200 x 0.0825 = 264.0
        assert_eq!(q.totals.total.minor, 3464);
        assert_eq!(q.estimated_delivery, "2026-11-25"); // Fri + 3 business days = Wed
    }

    #[test]
    fn free_shipping_over_threshold() {
        let q = quote(&[RequestedLine { sku: "LAMP".into(), quantity: 2 }], &catalog(), &rates(), "US", "standard", day()).unwrap();
        assert_eq!(q.totals.shipping.minor, 0);
    }

    #[test]
    fn unknown_or_inactive_sku_names_the_line() {
        let lines = [RequestedLine { sku: "MUG".into(), quantity: 1 }, RequestedLine { sku: "OLD".into(), quantity: 1 }];
        let err = quote(&lines, &catalog(), &rates(), "US", "standard", day()).unwrap_err();
        assert_eq!(err, PricingError::UnknownSku { index: 1, sku: "OLD".into() });
        assert!(err.to_string().starts_with("lines[1].sku"));
    }

    #[test]
    fn unsupported_destination_and_method() {
        let l = [RequestedLine { sku: "MUG".into(), quantity: 1 }];
        assert!(matches!(quote(&l, &catalog(), &rates(), "ZZ", "standard", day()), Err(PricingError::UnsupportedDestination(_))));
        assert!(matches!(quote(&l, &catalog(), &rates(), "US", "drone", day()), Err(PricingError::UnsupportedShippingMethod { .. })));
    }

    proptest! {
        #[test]
        fn totals_add_up(qs in proptest::collection::vec((0usize..3, 1i64..=99), 1..100)) {
            let skus = ["MUG", "TEE", "LAMP"];
            let lines: Vec<_> = qs.iter().map(|(i, q)| RequestedLine { sku: skus[*i].into(), quantity: *q }).collect();
            let q = quote(&lines, &catalog(), &rates(), "US", "standard", day()).unwrap();
            let t = &q.totals;
            prop_assert_eq!(t.total.minor, t.subtotal.minor + t.shipping.minor + t.tax.minor);
            prop_assert_eq!(t.subtotal.minor, q.lines.iter().map(|l| l.line_total.minor).sum::<i64>());
            prop_assert!(t.tax.minor >= 0 && t.shipping.minor >= 0);
            for l in &q.lines { prop_assert_eq!(l.line_total.minor, l.unit_price.minor * l.quantity); }
        }
    }
}
