//! The storefront's POST /orders body and its validation. The DTO is strict: unknown fields
//! (status, totals, unit prices, paid flags...) are rejected, never silently ignored (SEC-2).

use super::order::Address;
use super::pricing::RequestedLine;
use serde::Deserialize;

pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 99;
/// Distinct SKUs in one order. A parcel leaves the books in one DynamoDB transaction (at most 100
/// actions): its shipment marker plus two writes per SKU, so 49 SKUs is what any parcel can carry.
/// Enforced here, at the door, so an order that could not ship is refused with a clear answer
/// instead of failing later in the ship step (reservation and routing allow more).
pub const MAX_DISTINCT_SKUS: usize = 49;
pub const MAX_NOTES_CHARS: usize = 1000;

/// Distinct SKUs an order may have in a store with `warehouses` warehouses. Routing moves every
/// (SKU, warehouse) pair it uses in one transaction with the reservation record (at most 100
/// actions, so 99 pairs), and a SKU may be split over every warehouse: with three or more
/// warehouses the limit is 99 / warehouses (#10 item 10), never more than MAX_DISTINCT_SKUS.
pub fn max_distinct_skus(warehouses: usize) -> usize {
    MAX_DISTINCT_SKUS.min(99 / warehouses.max(1))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    pub email: String,
    pub shipping_address: AddressInput,
    pub billing_address: AddressInput,
    pub lines: Vec<LineInput>,
    /// A gateway payment-method token (`pm_...`), created by the storefront with the gateway's JS.
    pub payment_method: String,
    #[serde(default)]
    pub shipping_method: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub name: String,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default)]
    pub region: Option<String>,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    pub sku: String,
    pub quantity: i64,
}

/// A validation failure: stable machine code, the field it concerns, and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid { code, field: Some(field.into()), message: message.into() }
    }
}

/// A request that passed validation: normalised, with no client-chosen money in it.
#[derive(Debug, Clone)]
pub struct ValidOrder {
    pub email: String,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub lines: Vec<RequestedLine>,
    pub payment_method: String,
    pub shipping_method: String,
    pub notes: Option<String>,
}

/// Parse the JSON body into the strict DTO, turning serde's message into a stable code.
pub fn parse_body(body: &[u8]) -> Result<PlaceOrderRequest, Invalid> {
    serde_json::from_slice::<PlaceOrderRequest>(body).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown field") {
            let field = msg.split('`').nth(1).unwrap_or("").to_string();
            Invalid {
                code: "unknown_field",
                field: Some(field.clone()),
                message: format!("field '{field}' is not accepted; prices, totals and status are computed by the server"),
            }
        } else if e.is_syntax() || e.is_eof() {
            Invalid { code: "invalid_json", field: None, message: format!("body is not valid JSON: {msg}") }
        } else {
            Invalid { code: "invalid_request", field: None, message: msg }
        }
    })
}

pub fn validate(req: PlaceOrderRequest) -> Result<ValidOrder, Invalid> {
    let email = parse_email(&req.email).ok_or_else(|| Invalid::new("invalid_email", "email", "email must be an address like name@example.com"))?;
    let shipping_address = validate_address(req.shipping_address, "shipping_address")?;
    let billing_address = validate_address(req.billing_address, "billing_address")?;
    if req.lines.is_empty() {
        return Err(Invalid::new("no_lines", "lines", "an order needs at least one line"));
    }
    if req.lines.len() > MAX_LINES {
        return Err(Invalid::new("too_many_lines", "lines", format!("an order has at most {MAX_LINES} lines, got {}", req.lines.len())));
    }
    let mut lines = Vec::with_capacity(req.lines.len());
    for (i, l) in req.lines.into_iter().enumerate() {
        let sku = l.sku.trim().to_string();
        if sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Invalid::new("invalid_sku", format!("lines[{i}].sku"), "a SKU is 1-64 letters, digits, '-' or '_'"));
        }
        if !(1..=MAX_QUANTITY).contains(&l.quantity) {
            return Err(Invalid::new(
                "invalid_quantity",
                format!("lines[{i}].quantity"),
                format!("quantity must be between 1 and {MAX_QUANTITY}, got {}", l.quantity),
            ));
        }
        lines.push(RequestedLine { sku, quantity: l.quantity });
    }
    let distinct: std::collections::BTreeSet<&str> = lines.iter().map(|l: &RequestedLine| l.sku.as_str()).collect();
    if distinct.len() > MAX_DISTINCT_SKUS {
        return Err(Invalid::new("too_many_skus", "lines", format!("an order has at most {MAX_DISTINCT_SKUS} different SKUs, got {}", distinct.len())));
    }
    let pm = req.payment_method.trim();
    if !(pm.starts_with("pm_") && pm.len() <= 128 && pm.len() > 3 && pm.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
        return Err(Invalid::new(
            "invalid_payment_method",
            "payment_method",
            "payment_method must be a gateway payment-method token (pm_...); card details are never accepted",
        ));
    }
    let shipping_method = req.shipping_method.unwrap_or_else(|| "standard".into()).trim().to_ascii_lowercase();
    if let Some(n) = &req.notes {
        if n.chars().count() > MAX_NOTES_CHARS {
            return Err(Invalid::new("notes_too_long", "notes", format!("notes are at most {MAX_NOTES_CHARS} characters")));
        }
    }
    Ok(ValidOrder {
        email,
        shipping_address,
        billing_address,
        lines,
        payment_method: pm.to_string(),
        shipping_method,
        notes: req.notes.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()),
    })
}

fn validate_address(a: AddressInput, field: &str) -> Result<Address, Invalid> {
    let req = |v: &str, name: &str, max: usize| -> Result<String, Invalid> {
        let t = v.trim();
        if t.is_empty() || t.chars().count() > max {
            Err(Invalid::new("invalid_address", format!("{field}.{name}"), format!("{field}.{name} is required (at most {max} characters)")))
        } else {
            Ok(t.to_string())
        }
    };
    let opt = |v: Option<String>, name: &str| -> Result<Option<String>, Invalid> {
        match v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) {
            Some(s) if s.chars().count() > 200 => {
                Err(Invalid::new("invalid_address", format!("{field}.{name}"), format!("{field}.{name} is at most 200 characters")))
            }
            other => Ok(other),
        }
    };
    let country = a.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Invalid::new("invalid_address", format!("{field}.country"), "country must be an ISO 3166-1 alpha-2 code like US"));
    }
    Ok(Address {
        name: req(&a.name, "name", 200)?,
        line1: req(&a.line1, "line1", 200)?,
        line2: opt(a.line2, "line2")?,
        city: req(&a.city, "city", 100)?,
        region: opt(a.region, "region")?,
        postal_code: req(&a.postal_code, "postal_code", 20)?,
        country,
    })
}

/// An address SES will send to (#10.7: one it refuses would fail every email of the order later).
/// SES does not support SMTPUTF8, so the whole address is ASCII: the local part an RFC 5322
/// dot-atom (letters, digits and ``!#$%&'*+/=?^_`{|}~-``, dots only between them; no quoted
/// strings), at most 64 characters; the domain LDH labels (letters, digits, inner hyphens; an
/// internationalised domain in its `xn--` form), each at most 63, a last label that is not all
/// digits; at most 254 characters in all. The domain is lowercased.
pub fn parse_email(raw: &str) -> Option<String> {
    let e = raw.trim();
    if e.len() > 254 || !e.is_ascii() {
        return None;
    }
    let (local, domain) = e.split_once('@')?;
    let atom = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local.is_empty() || local.len() > 64 || local.split('.').any(|part| part.is_empty() || !part.chars().all(atom)) {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let ldh = |l: &&str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if labels.len() < 2 || !labels.iter().all(ldh) || labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    Some(format!("{}@{}", local, domain.to_ascii_lowercase()))
}

/// SEC-3: find a 13-19 digit Luhn-valid run anywhere in the raw request (digits may be grouped
/// with single spaces or dashes, as people type them). Such a body is refused before it is parsed,
/// logged or stored, so no card number ever reaches our records.
/// A request carries a card number if its bytes do, or its JSON once parsed does: `\u0034\u0032...`
/// holds no digit in its bytes, but is a card number in the string it decodes to (and would be
/// stored as one).
pub fn carries_card_number(body: &[u8]) -> bool {
    contains_card_number(body) || serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| contains_card_number(v.to_string().as_bytes()))
}

pub fn contains_card_number(body: &[u8]) -> bool {
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    let mut i = 0;
    while i <= body.len() {
        let b = body.get(i).copied();
        match b {
            Some(d) if d.is_ascii_digit() => digits.push(d - b'0'),
            Some(b' ') | Some(b'-') if !digits.is_empty() && body.get(i + 1).is_some_and(|n| n.is_ascii_digit()) => {}
            _ => {
                if run_has_card(&digits) {
                    return true;
                }
                digits.clear();
            }
        }
        i += 1;
    }
    false
}

fn run_has_card(digits: &[u8]) -> bool {
    // Only whole runs: sliding windows over longer digit strings would match one in ten by chance.
    (13..=19).contains(&digits.len()) && luhn_valid(digits)
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = *d as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod card_tests {
    use super::*;

    #[test]
    fn json_escaped_card_numbers_are_found() {
        let escaped: String = "4242424242424242".chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let body = format!(r#"{{"notes": "card {escaped}"}}"#);
        assert!(!contains_card_number(body.as_bytes()), "no digits in the bytes");
        assert!(carries_card_number(body.as_bytes()));
        assert!(!carries_card_number(br#"{"notes": "order 12345, gate code 0042"}"#));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body() -> serde_json::Value {
        serde_json::json!({
            "email": "Ada@Example.COM",
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "us"},
            "billing_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
            "lines": [{"sku": "MUG-01", "quantity": 2}],
            "payment_method": "pm_card_visa"
        })
    }

    fn check(v: serde_json::Value) -> Result<ValidOrder, Invalid> {
        validate(parse_body(v.to_string().as_bytes())?)
    }

    #[test]
    fn a_good_order_validates_and_normalises() {
        let v = check(body()).unwrap();
        assert_eq!(v.email, "Ada@example.com");
        assert_eq!(v.shipping_address.country, "US");
        assert_eq!(v.shipping_method, "standard");
    }

    #[test]
    fn client_set_prices_and_status_are_rejected() {
        for field in ["status", "total", "unit_price", "paid"] {
            let mut b = body();
            b[field] = serde_json::json!(1);
            let e = check(b).unwrap_err();
            assert_eq!(e.code, "unknown_field", "{field}");
        }
        let mut b = body();
        b["lines"][0]["unit_price"] = serde_json::json!(1);
        assert_eq!(check(b).unwrap_err().code, "unknown_field");
    }

    #[test]
    fn quantity_bounds_and_line_count() {
        for q in [0, 100, -1] {
            let mut b = body();
            b["lines"][0]["quantity"] = serde_json::json!(q);
            let e = check(b).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), ("invalid_quantity", Some("lines[0].quantity")));
        }
        let mut b = body();
        b["lines"] = serde_json::json!((0..101).map(|_| serde_json::json!({"sku": "A", "quantity": 1})).collect::<Vec<_>>());
        assert_eq!(check(b).unwrap_err().code, "too_many_lines");
        // 100 lines are fine when they name at most 49 SKUs; the 50th SKU is refused at the door.
        let mut b = body();
        b["lines"] = serde_json::json!((0..100).map(|i| serde_json::json!({"sku": format!("S{}", i % 49), "quantity": 1})).collect::<Vec<_>>());
        assert!(check(b).is_ok());
        let mut b = body();
        b["lines"] = serde_json::json!((0..50).map(|i| serde_json::json!({"sku": format!("S{i}"), "quantity": 1})).collect::<Vec<_>>());
        let e = check(b).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), ("too_many_skus", Some("lines")));
    }

    #[test]
    fn bad_json_and_bad_fields_have_codes() {
        assert_eq!(parse_body(b"{").unwrap_err().code, "invalid_json");
        assert_eq!(parse_body(b"[]").unwrap_err().code, "invalid_request");
        let mut b = body();
        b["email"] = serde_json::json!("nope");
        assert_eq!(check(b).unwrap_err().code, "invalid_email");
        let mut b = body();
        b["payment_method"] = serde_json::json!("4242424242424242");
        assert_eq!(check(b).unwrap_err().code, "invalid_payment_method");
    }

    #[test]
    fn card_numbers_are_spotted_in_any_form() {
        assert!(contains_card_number(b"{\"notes\":\"4242424242424242\"}"));
        assert!(contains_card_number(b"4242 4242 4242 4242"));
        assert!(contains_card_number(b"x4000-0000-0000-0002y"));
        assert!(contains_card_number(b"378282246310005")); // Amex, 15 digits
        assert!(!contains_card_number(b"4242424242424241")); // Luhn-invalid
        assert!(!contains_card_number(b"{\"quantity\": 12, \"postal_code\": \"12345\"}"));
        assert!(!contains_card_number(body().to_string().as_bytes()));
    }

    fn with(path: &[&str], value: serde_json::Value) -> Result<ValidOrder, Invalid> {
        let mut b = body();
        let mut target = &mut b;
        for p in &path[..path.len() - 1] {
            target = match p.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => &mut target[*p],
            };
        }
        target[path[path.len() - 1]] = value;
        check(b)
    }

    fn code(r: Result<ValidOrder, Invalid>) -> Option<&'static str> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn the_body_limit_is_the_documented_64_kib() {
        assert_eq!(MAX_BODY_BYTES, 65_536, "infra/openapi.yaml and the README say 64 KiB");
    }

    #[test]
    fn skus_are_1_to_64_letters_digits_dashes_or_underscores() {
        let sku = |s: String| with(&["lines", "0", "sku"], serde_json::json!(s));
        for ok in ["a-b_C9".to_string(), "_".to_string(), "x".repeat(64)] {
            assert!(sku(ok.clone()).is_ok(), "{ok}");
        }
        for bad in ["".to_string(), "   ".to_string(), "x".repeat(65), "A.B".to_string(), "A B".to_string()] {
            assert_eq!(code(sku(bad.clone())), Some("invalid_sku"), "{bad:?}");
        }
    }

    #[test]
    fn payment_method_tokens_need_more_than_the_prefix() {
        let pm = |s: &str| code(with(&["payment_method"], serde_json::json!(s)));
        assert_eq!(pm("pm_"), Some("invalid_payment_method"));
        assert_eq!(pm("pm_1"), None);
        assert_eq!(pm(&format!("pm_{}", "a".repeat(125))), None, "128 characters");
        assert_eq!(pm(&format!("pm_{}", "a".repeat(126))), Some("invalid_payment_method"));
        assert_eq!(pm("pm_card-visa"), Some("invalid_payment_method"));
    }

    #[test]
    fn notes_are_at_most_1000_characters_and_blank_notes_are_none() {
        let notes = |s: String| with(&["notes"], serde_json::json!(s));
        assert!(notes("é".repeat(999)).is_ok());
        assert!(notes("é".repeat(1000)).is_ok(), "characters, not bytes");
        assert_eq!(code(notes("é".repeat(1001))), Some("notes_too_long"));
        assert_eq!(notes("   ".into()).unwrap().notes, None);
        assert_eq!(notes(" leave at the door ".into()).unwrap().notes.as_deref(), Some("leave at the door"));
    }

    #[test]
    fn address_fields_are_required_bounded_and_optional_ones_dropped_when_blank() {
        let field = |name: &str, v: String| with(&["shipping_address", name], serde_json::json!(v));
        assert!(field("name", "n".repeat(200)).is_ok());
        for bad in ["".to_string(), "  ".to_string(), "n".repeat(201)] {
            let e = field("name", bad.clone()).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), ("invalid_address", Some("shipping_address.name")), "{bad:?}");
        }
        assert!(field("line2", "l".repeat(200)).is_ok());
        assert_eq!(code(field("line2", "l".repeat(201))), Some("invalid_address"));
        assert_eq!(field("line2", "  ".into()).unwrap().shipping_address.line2, None);
        assert_eq!(field("line2", " Apt 4 ".into()).unwrap().shipping_address.line2.as_deref(), Some("Apt 4"));
        for bad in ["USA", "U1", "1A", "U"] {
            assert_eq!(code(field("country", bad.into())), Some("invalid_address"), "{bad}");
        }
    }

    #[test]
    fn email_addresses_are_checked_at_their_limits() {
        let local = "l".repeat(64);
        let domain = format!("{}.{}.{}.com", "d".repeat(63), "d".repeat(63), "d".repeat(254 - 65 - 4 - 128));
        assert_eq!(format!("{local}@{domain}").len(), 254);
        assert!(parse_email(&format!("{local}@{domain}")).is_some(), "254 characters");
        assert!(parse_email(&format!("{local}@{}.{}.d{}.com", "d".repeat(63), "d".repeat(63), "d".repeat(254 - 65 - 4 - 128))).is_none(), "255 characters");
        assert!(parse_email(&format!("l{local}@x.com")).is_none(), "a 65-character local part");
        for bad in ["a b@x.com", "a\u{7}b@x.com", "@x.com", "a@b@x.com", "a@localhost", "a@x..com", "a@-x.com", "a@x-.com", "a@.x.com"] {
            assert!(parse_email(bad).is_none(), "{bad:?}");
        }
        assert_eq!(parse_email("Ada@Mail.Example.CO.UK").as_deref(), Some("Ada@mail.example.co.uk"));
    }

    #[test]
    fn addresses_ses_would_refuse_are_refused_at_the_door() {
        for ok in ["o'brien+orders@example.com", "a.b.c@example.com", "x@xn--bcher-kva.example", "!#$%&*/=?^_`{|}~-@example.io"] {
            assert!(parse_email(ok).is_some(), "{ok}");
        }
        for bad in [
            "jöhn@example.com",
            "john@exämple.com",
            "\"john doe\"@example.com",
            "john..doe@example.com",
            ".john@example.com",
            "john.@example.com",
            "jo,hn@example.com",
            "jo<hn>@example.com",
            "john@exa_mple.com",
            "john@123.456",
            "john@example.c%m",
        ] {
            assert!(parse_email(bad).is_none(), "{bad}");
        }
        let long_label = format!("a@{}.com", "d".repeat(64));
        assert!(parse_email(&long_label).is_none(), "a 64-character label");
        assert!(parse_email(&format!("a@{}.com", "d".repeat(63))).is_some());
    }

    #[test]
    fn only_single_spaces_or_dashes_between_digits_join_a_card_number() {
        assert!(contains_card_number(b"4242 4242 4242 4242"));
        assert!(!contains_card_number(b"42424242  42424242"), "two spaces end the run");
        assert!(!contains_card_number(b"42424242 -42424242"), "a space then a dash end the run");
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = contains_card_number(&bytes);
            if let Ok(r) = parse_body(&bytes) { let _ = validate(r); }
        }

        #[test]
        fn every_luhn_valid_16_digit_number_is_caught(prefix in proptest::collection::vec(0u8..10, 15)) {
            // complete the check digit so the number is Luhn-valid
            let mut d = prefix.clone();
            d.push(0);
            let check = (0..10u8).find(|c| { d[15] = *c; luhn_valid(&d) }).unwrap();
            d[15] = check;
            let s: String = d.iter().map(|x| (b'0' + x) as char).collect();
            let body = format!("{{\"notes\":\"card {s} thanks\"}}");
            prop_assert!(contains_card_number(body.as_bytes()));
        }
    }

    #[test]
    fn the_sku_limit_keeps_every_routing_and_ship_transaction_within_100_actions() {
        for wh in 1..=10 {
            let n = super::max_distinct_skus(wh);
            assert!(n * wh < 100, "{wh} warehouses: {n} SKUs could need {} pairs + the marker", n * wh);
            assert!(2 * n < 100, "a parcel of {n} SKUs: marker + 2 writes per SKU");
            assert!(n >= 1);
        }
        assert_eq!(super::max_distinct_skus(2), super::MAX_DISTINCT_SKUS, "two warehouses keep 49");
        assert_eq!(super::max_distinct_skus(3), 33);
    }
}
