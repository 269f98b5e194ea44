//! The catalog table: products, the rate table and the warehouse network.

use super::*;
use crate::domain::fulfillment::{Network, Warehouse};
use crate::domain::pricing::{CatalogItem, CountryRates, RateTable};
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};
use std::collections::HashMap;

pub struct DynamoCatalog {
    pub client: Client,
    pub table: String,
}

impl DynamoCatalog {
    /// `client` is the function's one DynamoDB client (`Wiring::dynamodb`), shared by its adapters.
    pub fn new(client: Client, table: String) -> DynamoCatalog {
        DynamoCatalog { client, table }
    }
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn items(&self, skus: &[String]) -> Result<HashMap<String, CatalogItem>> {
        let mut unique: Vec<&String> = skus.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::new();
        for chunk in unique.chunks(100) {
            let mut keys = KeysAndAttributes::builder();
            for sku in chunk {
                keys = keys.keys(HashMap::from([("pk".to_string(), s(format!("PRODUCT#{sku}")))]));
            }
            let mut pending = Some(HashMap::from([(self.table.clone(), keys.build().map_err(|e| StepError::Internal(e.to_string()))?)]));
            let mut attempts = 0;
            while let Some(req) = pending.take().filter(|r| !r.is_empty()) {
                attempts += 1;
                let out = self.client.batch_get_item().set_request_items(Some(req)).send().await.map_err(|e| StepError::from_sdk("catalog.items", e))?;
                for item in out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let ci: CatalogItem = from_item(item)?;
                    found.insert(ci.sku.clone(), ci);
                }
                pending = out.unprocessed_keys;
                if attempts > 5 && pending.as_ref().is_some_and(|p| !p.is_empty()) {
                    return Err(StepError::Retryable("catalog read throttled".into()));
                }
            }
        }
        Ok(found)
    }

    async fn rates(&self) -> Result<RateTable> {
        self.get_document("RATES", "table").await
    }

    async fn put_item(&self, item: &CatalogItem) -> Result<()> {
        let mut record = to_item(item)?;
        record.insert("pk".into(), s(format!("PRODUCT#{}", item.sku)));
        self.client.put_item().table_name(&self.table).set_item(Some(record)).send().await.map_err(|e| StepError::from_sdk("catalog.put_item", e))?;
        Ok(())
    }

    async fn network(&self) -> Result<Network> {
        self.get_document("WAREHOUSES", "network").await
    }

    async fn put_network(&self, network: &Network) -> Result<()> {
        self.put_document("WAREHOUSES", "network", network).await
    }

    async fn put_rates(&self, rates: &RateTable) -> Result<()> {
        self.put_document("RATES", "table", rates).await
    }

    async fn put_country_rates(&self, country: &str, currency: &str, rates: &CountryRates) -> Result<std::result::Result<(), String>> {
        self.update_document("RATES", "table", |table: Option<RateTable>| {
            let mut table = table.unwrap_or_else(|| RateTable { currency: currency.to_string(), countries: Default::default() });
            if table.currency != currency {
                return Err(table.currency);
            }
            table.countries.insert(country.to_string(), rates.clone());
            Ok(table)
        })
        .await
    }

    async fn put_warehouse(&self, warehouse: &Warehouse) -> Result<()> {
        self.update_document("WAREHOUSES", "network", |network: Option<Network>| {
            let mut network = network.unwrap_or(Network { warehouses: vec![] });
            match network.warehouses.iter_mut().find(|w| w.id == warehouse.id) {
                Some(w) => *w = warehouse.clone(),
                None => network.warehouses.push(warehouse.clone()),
            }
            Ok::<_, std::convert::Infallible>(network)
        })
        .await
        .map(|r| r.unwrap_or_else(|never| match never {}))
    }
}

impl DynamoCatalog {
    /// Store-wide settings live as one JSON document in one item (`RATES`, `WAREHOUSES`).
    async fn get_document<T: serde::de::DeserializeOwned>(&self, pk: &str, attr: &str) -> Result<T> {
        let out = self.client.get_item().table_name(&self.table).key("pk", s(pk)).send().await.map_err(|e| StepError::from_sdk("catalog.get_document", e))?;
        let json = out
            .item
            .and_then(|i| i.get(attr).and_then(|v| v.as_s().ok()).cloned())
            .ok_or_else(|| StepError::Internal(format!("{pk} missing from the catalog table")))?;
        serde_json::from_str(&json).map_err(|e| StepError::Internal(format!("{pk}: {e}")))
    }

    /// Read-modify-write of one document, guarded by its `version` so two operators' concurrent
    /// changes (two countries' rates, two warehouses) both land. `change` may refuse with `E`.
    async fn update_document<T, E, F>(&self, pk: &str, attr: &str, change: F) -> Result<std::result::Result<(), E>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: Fn(Option<T>) -> std::result::Result<T, E>,
    {
        let change = &change;
        with_conflict_retries(&format!("catalog.update {pk}"), move || async move {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| StepError::from_sdk("catalog.update_document", e))?;
            let item = out.item.unwrap_or_default();
            let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
            let current: Option<T> = match item.get(attr).and_then(|v| v.as_s().ok()) {
                Some(json) => Some(serde_json::from_str(json).map_err(|e| StepError::Internal(format!("{pk}: {e}")))?),
                None => None,
            };
            let next = match change(current) {
                Ok(next) => next,
                Err(refused) => return Ok(Attempt::Done(Err(refused))),
            };
            let json = serde_json::to_string(&next).map_err(|e| StepError::Internal(e.to_string()))?;
            let mut put = self.client.put_item().table_name(&self.table).item("pk", s(pk)).item(attr, s(json)).item("version", n(version.unwrap_or(0) + 1));
            put = match version {
                Some(v) => put.condition_expression("version = :v").expression_attribute_values(":v", n(v)),
                None => put.condition_expression("attribute_not_exists(version)"),
            };
            match put.send().await {
                Ok(_) => Ok(Attempt::Done(Ok(()))),
                Err(e) if is_ccf(&e) => Ok(Attempt::Reread),
                Err(e) => Err(StepError::from_sdk("catalog.update_document", e)),
            }
        })
        .await
    }

    async fn put_document<T: serde::Serialize>(&self, pk: &str, attr: &str, value: &T) -> Result<()> {
        let json = serde_json::to_string(value).map_err(|e| StepError::Internal(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item(attr, s(json))
            .send()
            .await
            .map_err(|e| StepError::from_sdk("catalog.put_document", e))?;
        Ok(())
    }
}
