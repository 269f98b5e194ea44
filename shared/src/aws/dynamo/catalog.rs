//! The catalog table: products, the rate table and the warehouse network.

use super::*;
use crate::domain::fulfillment::Network;
use crate::domain::pricing::{CatalogItem, RateTable};
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
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> DynamoCatalog {
        DynamoCatalog { client: Client::new(sdk), table }
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
