//! How operators find the orders that need them (`GET /ops/orders`), without a scan.
//!
//! Two sparse, keys-only global secondary indexes on the orders table:
//! - `OrdersByAttention`: only orders in a status someone may have to act on (PENDING, which a
//!   checkout leaves within seconds, so one still there is stuck; UNDER_REVIEW; FAILED) carry
//!   `attention_pk` = `<STATUS>#<shard>` and `attention_key` = `<since>#<order id>`. The shard (one of
//!   [`SHARDS`], from the order id's digest) spreads a busy status over several partitions: at a
//!   thousand checkouts a second every order passes PENDING, which one partition key could not absorb
//!   (1,000 writes per second per partition). A listing queries every shard and merges.
//! - `OrdersByEmail`: `customer_email` with `created_key` = `<created at>#<order id>`.
//!
//! Keys-only: an update that does not change an index key writes nothing to the index, so an order
//! costs 1 index write when created (by email), and 1 more for each move into, out of or between
//! attention statuses (PENDING -> CONFIRMED: 2 more). Sort keys start with an RFC 3339 instant
//! in one format, so a date range is a key range, and the order id makes each key unique, so the
//! last key shown is the cursor of the next page.

use super::checkout::Invalid;
use super::order::OrderStatus;

pub const SHARDS: u8 = 8;
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 25;

/// The statuses the attention index holds.
pub const ATTENTION: [OrderStatus; 3] = [OrderStatus::Pending, OrderStatus::UnderReview, OrderStatus::Failed];

pub fn shard(order_id: &str) -> u8 {
    use sha2::Digest;
    sha2::Sha256::digest(order_id.as_bytes())[0] % SHARDS
}

/// `(attention_pk, attention_key)` for an order entering `status` at `since`; None when the status
/// needs nobody (the order leaves the index).
pub fn attention_keys(order_id: &str, status: OrderStatus, since: &str) -> Option<(String, String)> {
    ATTENTION.contains(&status).then(|| (format!("{}#{}", status.as_str(), shard(order_id)), sort_key(since, order_id)))
}

pub fn sort_key(at: &str, order_id: &str) -> String {
    format!("{at}#{order_id}")
}

/// The order id at the end of a sort key.
pub fn order_of(key: &str) -> &str {
    key.rsplit('#').next().unwrap_or(key)
}

/// What a listing asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Status(OrderStatus),
    Email(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: Filter,
    /// Sort keys from `lo` to `hi` inclusive (the date range, after the cursor).
    pub lo: String,
    pub hi: String,
    pub limit: usize,
}

/// Past every key of an instant (`#` < `~` and order ids are letters, digits and `_`).
const KEY_END: &str = "#~";

/// Parse `GET /ops/orders` parameters: exactly one of `status` (one the index holds) or `email`,
/// optional `from` / `to` (RFC 3339 instants), `limit` (1-100), `cursor` (the last key shown).
pub fn parse(params: &[(String, String)]) -> Result<ListQuery, Invalid> {
    let mut status = None;
    let mut email = None;
    let mut from = None;
    let mut to = None;
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (k, v) in params {
        match k.as_str() {
            "status" => {
                let s = OrderStatus::parse(v).filter(|s| ATTENTION.contains(s)).ok_or_else(|| {
                    let held: Vec<&str> = ATTENTION.iter().map(|s| s.as_str()).collect();
                    Invalid::new("invalid_query", "status", format!("status must be one of {} (the statuses that need someone)", held.join(", ")))
                })?;
                status = Some(s);
            }
            "email" => email = Some(super::checkout::parse_email(v).ok_or_else(|| Invalid::new("invalid_query", "email", "email must be an address"))?),
            "from" => from = Some(instant(v, "from")?),
            "to" => to = Some(instant(v, "to")?),
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| Invalid::new("invalid_query", "limit", format!("limit must be 1-{MAX_LIMIT}")))?
            }
            "cursor" => {
                let ok = v.len() <= 120 && v.contains('#') && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"#:.-_".contains(&b));
                if !ok {
                    return Err(Invalid::new("invalid_query", "cursor", "cursor must be the next_cursor of a previous page"));
                }
                cursor = Some(v.clone());
            }
            other => return Err(Invalid::new("invalid_query", other, format!("unknown parameter '{other}'"))),
        }
    }
    let filter = match (status, email) {
        (Some(s), None) => Filter::Status(s),
        (None, Some(e)) => Filter::Email(e),
        _ => return Err(Invalid::new("invalid_query", "status", "give exactly one of status or email")),
    };
    // "0" sorts before every instant (a key condition's value may not be empty).
    let mut lo = from.unwrap_or_else(|| "0".into());
    if let Some(c) = cursor {
        // Strictly after the cursor's key: the smallest string greater than it.
        lo = lo.max(format!("{c}\u{1}"));
    }
    let hi = format!("{}{KEY_END}", to.unwrap_or_else(|| "9999".into()));
    Ok(ListQuery { filter, lo, hi, limit })
}

/// An instant in the one format the keys use (UTC, milliseconds, `Z`), as the timeline writes it.
fn instant(v: &str, field: &str) -> Result<String, Invalid> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .map_err(|_| Invalid::new("invalid_query", field, format!("{field} must be an RFC 3339 instant like 2026-11-26T00:00:00Z")))
}

/// Merge the shards' pages (each sorted, each at most `limit + 1` long): the first `limit` keys in
/// order, and the cursor of the next page when there is one.
pub fn merge(mut pages: Vec<Vec<String>>, limit: usize) -> (Vec<String>, Option<String>) {
    let mut all: Vec<String> = pages.drain(..).flatten().collect();
    all.sort();
    let more = all.len() > limit;
    all.truncate(limit);
    let cursor = if more { all.last().cloned() } else { None };
    (all, cursor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, Invalid> {
        parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn only_statuses_that_need_someone_are_indexed_and_shards_spread_them() {
        let (pk, sk) = attention_keys("ord_1", OrderStatus::UnderReview, "2026-11-26T10:00:00.000Z").unwrap();
        assert_eq!(pk, format!("UNDER_REVIEW#{}", shard("ord_1")));
        assert_eq!((sk.as_str(), order_of(&sk)), ("2026-11-26T10:00:00.000Z#ord_1", "ord_1"));
        for s in [OrderStatus::Confirmed, OrderStatus::Delivered, OrderStatus::Cancelled, OrderStatus::Declined] {
            assert!(attention_keys("ord_1", s, "t").is_none(), "{s:?}");
        }
        let used: std::collections::BTreeSet<u8> = (0..200).map(|i| shard(&format!("ord_{i}"))).collect();
        assert_eq!(used.len(), SHARDS as usize, "every shard takes orders");
        assert!(used.iter().all(|s| *s < SHARDS));
    }

    #[test]
    fn parameters_are_checked_and_a_range_is_a_key_range() {
        let ok = q(&[("status", "UNDER_REVIEW"), ("from", "2026-11-26T00:00:00+01:00"), ("to", "2026-11-27T00:00:00Z"), ("limit", "100")]).unwrap();
        assert_eq!(ok.filter, Filter::Status(OrderStatus::UnderReview));
        assert_eq!((ok.lo.as_str(), ok.hi.as_str(), ok.limit), ("2026-11-25T23:00:00.000Z", "2026-11-27T00:00:00.000Z#~", 100));
        assert_eq!(q(&[("email", "Ada@Example.com")]).unwrap().filter, Filter::Email("Ada@example.com".into()));
        assert_eq!(q(&[("email", "a@x.com")]).unwrap().limit, DEFAULT_LIMIT);
        let after = q(&[("status", "FAILED"), ("cursor", "2026-11-26T10:00:00.000Z#ord_9")]).unwrap();
        assert!(after.lo.as_str() > "2026-11-26T10:00:00.000Z#ord_9" && "2026-11-26T10:00:00.000Z#ord_90" > after.lo.as_str());
        for bad in [
            vec![],
            vec![("status", "DELIVERED")],
            vec![("status", "nope")],
            vec![("status", "FAILED"), ("email", "a@x.com")],
            vec![("email", "not-an-email")],
            vec![("status", "FAILED"), ("limit", "0")],
            vec![("status", "FAILED"), ("limit", "101")],
            vec![("status", "FAILED"), ("from", "yesterday")],
            vec![("status", "FAILED"), ("cursor", "x y")],
            vec![("status", "FAILED"), ("sort", "asc")],
        ] {
            assert_eq!(q(&bad).unwrap_err().code, "invalid_query", "{bad:?}");
        }
    }

    proptest! {
        /// Walking the pages with the cursor yields every key once, in order, whatever the shards.
        #[test]
        fn paging_through_merged_shards_sees_every_key_once(keys in proptest::collection::btree_set(0u32..100_000, 0..60), limit in 1usize..10) {
            let keys: Vec<String> = keys.iter().map(|k| sort_key(&format!("2026-11-26T00:00:{k:06}Z"), &format!("ord_{k}"))).collect();
            let mut seen = Vec::new();
            let mut lo = String::new();
            for _ in 0..100 {
                let pages: Vec<Vec<String>> = (0..SHARDS)
                    .map(|s| keys.iter().filter(|k| shard(order_of(k)) == s && k.as_str() >= lo.as_str()).take(limit + 1).cloned().collect())
                    .collect();
                let (page, cursor) = merge(pages, limit);
                prop_assert!(page.len() <= limit);
                seen.extend(page);
                match cursor {
                    Some(c) => lo = format!("{c}\u{1}"),
                    None => break,
                }
            }
            prop_assert_eq!(seen, keys);
        }
    }
}
