//! `orderflow-local load --api URL --ops-token T FILE`: load a store's data through the operator
//! API (the same endpoints an operator uses one by one), in dependency order: warehouses, rates,
//! catalog, reorder rules, stock. The local stack seeds itself with this on every start.
//!
//! FILE is JSON (`infra/local/fixtures/store.json` is an example: `network.warehouses`,
//! `rates.{currency, countries}`, `catalog`, `reorder`, `stock` as sku -> warehouse -> units to add)
//! or CSV with a header row: `sku,name,unit_price_minor,weight_grams[,active]` loads products,
//! `sku,warehouse,delta,reason` adjusts stock. Stock lines are adjustments keyed by the file's
//! digest, SKU and warehouse: loading the same file twice adds its stock once.

use serde_json::{json, Value};
use sha2::Digest;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Loaded {
    pub requests: usize,
    pub replayed: usize,
}

struct Api<'a> {
    http: reqwest::Client,
    base: &'a str,
    token: &'a str,
    loaded: Loaded,
}

impl Api<'_> {
    async fn send(&mut self, method: reqwest::Method, path: &str, body: Value, key: Option<&str>) -> Result<(), String> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base.trim_end_matches('/'))).bearer_auth(self.token).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k).header("X-Operator", "orderflow-local load");
        }
        let resp = req.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let replayed = resp.headers().contains_key("idempotent-replayed");
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        self.loaded.requests += 1;
        self.loaded.replayed += usize::from(replayed);
        Ok(())
    }
}

/// Load `file` (JSON or CSV) into the store behind `api`.
pub async fn load(api: &str, ops_token: &str, file: &std::path::Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()))[..12].to_string();
    let mut api = Api { http: reqwest::Client::new(), base: api, token: ops_token, loaded: Loaded::default() };
    if text.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        load_json(&mut api, &v, &digest).await?;
    } else {
        load_csv(&mut api, &text, &digest).await?;
    }
    Ok(api.loaded)
}

fn stock_key(digest: &str, sku: &str, warehouse: &str) -> String {
    format!("load:{digest}:{sku}:{warehouse}")
}

async fn load_json(api: &mut Api<'_>, v: &Value, digest: &str) -> Result<(), String> {
    use reqwest::Method;
    for w in v["network"]["warehouses"].as_array().into_iter().flatten() {
        let id = w["id"].as_str().ok_or("network.warehouses[].id missing")?;
        api.send(Method::PUT, &format!("/ops/warehouses/{id}"), json!({"name": w["name"], "address": w["address"], "zones": w["zones"]}), None).await?;
    }
    if let Some(countries) = v["rates"]["countries"].as_object() {
        let currency = &v["rates"]["currency"];
        for (country, r) in countries {
            let mut body = r.clone();
            body["currency"] = currency.clone();
            api.send(Method::PUT, &format!("/ops/rates/{country}"), body, None).await?;
        }
    }
    for item in v["catalog"].as_array().into_iter().flatten() {
        let sku = item["sku"].as_str().ok_or("catalog[].sku missing")?;
        let mut body = item.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("sku");
        }
        api.send(Method::PUT, &format!("/ops/catalog/{sku}"), body, None).await?;
    }
    let per_sku = |section: &str| -> BTreeMap<String, BTreeMap<String, Value>> { serde_json::from_value(v[section].clone()).unwrap_or_default() };
    for (sku, by_wh) in per_sku("reorder") {
        for (wh, rule) in by_wh {
            api.send(Method::PUT, &format!("/ops/stock/{sku}/warehouses/{wh}/reorder"), json!({"point": rule[0], "quantity": rule[1]}), None).await?;
        }
    }
    for (sku, by_wh) in per_sku("stock") {
        for (wh, units) in by_wh {
            if units.as_i64() == Some(0) {
                continue;
            }
            let body = json!({"warehouse": wh, "delta": units, "reason": "initial stock (orderflow-local load)"});
            api.send(Method::POST, &format!("/ops/stock/{sku}/adjustments"), body, Some(&stock_key(digest, &sku, &wh))).await?;
        }
    }
    Ok(())
}

async fn load_csv(api: &mut Api<'_>, text: &str, digest: &str) -> Result<(), String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines.next().ok_or("empty CSV")?.split(',').map(|h| h.trim().to_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let at = |name: &str| col(name).and_then(|i| cells.get(i)).copied().ok_or_else(|| format!("row {}: no {name}", n + 2));
        let int = |name: &str| at(name)?.parse::<i64>().map_err(|e| format!("row {}: {name}: {e}", n + 2));
        let sku = at("sku")?;
        if col("unit_price_minor").is_some() {
            let active = col("active").and_then(|i| cells.get(i)).map(|a| !matches!(a.to_lowercase().as_str(), "false" | "no" | "0")).unwrap_or(true);
            let body = json!({"name": at("name")?, "unit_price_minor": int("unit_price_minor")?, "weight_grams": int("weight_grams")?, "active": active});
            api.send(reqwest::Method::PUT, &format!("/ops/catalog/{sku}"), body, None).await?;
        } else if col("delta").is_some() {
            let wh = at("warehouse")?;
            let body = json!({"warehouse": wh, "delta": int("delta")?, "reason": at("reason")?});
            let key = format!("{}:{}", stock_key(digest, sku, wh), n + 2);
            api.send(reqwest::Method::POST, &format!("/ops/stock/{sku}/adjustments"), body, Some(&key)).await?;
        } else {
            return Err("CSV header must be sku,name,unit_price_minor,weight_grams[,active] or sku,warehouse,delta,reason".into());
        }
    }
    Ok(())
}
