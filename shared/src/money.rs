//! Money as integer minor units with an ISO 4217 currency. Never f64.

use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Option<Currency> {
        let b = code.as_bytes();
        if b.len() == 3 && b.iter().all(|c| c.is_ascii_alphabetic()) {
            Some(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
        } else {
            None
        }
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
    /// Lowercase code, as the gateway wants it.
    pub fn lower(&self) -> String {
        self.as_str().to_ascii_lowercase()
    }
    /// Number of minor-unit digits. The stores we serve price in two-decimal currencies or zero-decimal JPY/KRW.
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" => 0,
            _ => 2,
        }
    }
}

/// An amount in minor units (cents) of one currency. Arithmetic is checked: overflow is an error, not a wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("currency mismatch: {0} vs {1}")]
    CurrencyMismatch(String, String),
    #[error("amount overflow")]
    Overflow,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }
    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency.as_str().into(), other.currency.as_str().into()));
        }
        self.minor.checked_add(other.minor).map(|m| Money::new(m, self.currency)).ok_or(MoneyError::Overflow)
    }
    pub fn checked_mul(self, qty: i64) -> Result<Money, MoneyError> {
        self.minor.checked_mul(qty).map(|m| Money::new(m, self.currency)).ok_or(MoneyError::Overflow)
    }
    /// Multiply by a rate (tax) and round half away from zero to the minor unit, as tax authorities expect.
    pub fn apply_rate(self, rate: Decimal) -> Result<Money, MoneyError> {
        let exact = Decimal::from(self.minor).checked_mul(rate).ok_or(MoneyError::Overflow)?;
        let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        rounded.to_i64().map(|m| Money::new(m, self.currency)).ok_or(MoneyError::Overflow)
    }
    /// Human form, for emails: "USD 12.34".
    pub fn display(&self) -> String {
        let exp = self.currency.exponent();
        let d = Decimal::new(self.minor, exp);
        format!("{} {}", self.currency.as_str(), d)
    }
    /// Decimal major units as a string ("12.34"), for API responses that show amounts.
    pub fn major_string(&self) -> String {
        Decimal::new(self.minor, self.currency.exponent()).to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_codes_and_major_strings_are_what_the_gateway_and_the_api_show() {
        let usd = super::Currency::parse("usd").unwrap();
        assert_eq!(usd.lower(), "usd");
        assert_eq!(super::Money::new(1234, usd).major_string(), "12.34");
        assert_eq!(super::Money::new(5, usd).major_string(), "0.05");
    }

    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    #[test]
    fn currency_is_normalised_and_validated() {
        assert_eq!(usd().as_str(), "USD");
        assert!(Currency::parse("US").is_none());
        assert!(Currency::parse("U1D").is_none());
    }

    #[test]
    fn tax_rounds_half_away_from_zero() {
        // 1005 cents at 10% = 100.5 -> 101
        assert_eq!(Money::new(1005, usd()).apply_rate(dec!(0.10)).unwrap().minor, 101);
        assert_eq!(Money::new(1004, usd()).apply_rate(dec!(0.10)).unwrap().minor, 100);
    }

    #[test]
    fn mixing_currencies_is_an_error() {
        let eur = Currency::parse("EUR").unwrap();
        assert!(Money::new(1, usd()).checked_add(Money::new(1, eur)).is_err());
    }

    #[test]
    fn display_uses_minor_exponent() {
        assert_eq!(Money::new(123456, usd()).display(), "USD 1234.56");
        assert_eq!(Money::new(500, Currency::parse("JPY").unwrap()).display(), "JPY 500");
    }

    proptest! {
        #[test]
        fn add_is_exact_or_overflow(a in any::<i64>(), b in any::<i64>()) {
            let r = Money::new(a, usd()).checked_add(Money::new(b, usd()));
            match a.checked_add(b) {
                Some(s) => prop_assert_eq!(r.unwrap().minor, s),
                None => prop_assert_eq!(r, Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn rate_result_is_within_half_a_cent(minor in 0i64..1_000_000_000_000, bp in 0u32..10_000) {
            let rate = Decimal::new(bp as i64, 4);
            let got = Money::new(minor, usd()).apply_rate(rate).unwrap().minor;
            let exact = Decimal::from(minor) * rate;
            prop_assert!((Decimal::from(got) - exact).abs() <= dec!(0.5));
        }
    }
}
