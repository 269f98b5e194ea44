//! The ports the local stack itself uses (seeding, the tests' and the demo's reads and set-up), as
//! an operator would: through the edge (`deps`) or straight to moto (`observer`, so watching an
//! order does not count among its AWS calls). Not a deployed role: the edge does not check it.

use orderflow_shared::ports::{Catalog, OrderRepository, StockLedger, Workflows};
use orderflow_shared::wiring::Wiring;
use orderflow_shared::Env;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Ports {
    pub orders: Arc<dyn OrderRepository>,
    pub stock: Arc<dyn StockLedger>,
    pub catalog: Arc<dyn Catalog>,
    pub workflows: Arc<dyn Workflows>,
}

/// The operator's credentials and endpoint (anything but a function's key is the operator).
pub fn operator_env(endpoint: &str, extra: BTreeMap<String, String>) -> Env {
    let mut m = BTreeMap::from([
        ("AWS_REGION".to_string(), crate::template::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID".to_string(), "local".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "local".to_string()),
        ("AWS_ENDPOINT_URL".to_string(), endpoint.to_string()),
    ]);
    m.extend(extra);
    Env::from_map(m)
}

impl Ports {
    pub async fn new(endpoint: &str, template: &crate::template::Template) -> Result<Ports, String> {
        let mut names = BTreeMap::new();
        for (var, id) in [
            ("ORDERS_TABLE", "OrdersTable"),
            ("INVENTORY_TABLE", "InventoryTable"),
            ("CATALOG_TABLE", "CatalogTable"),
            ("LIFECYCLE_STATE_MACHINE_ARN", "LifecycleStateMachine"),
        ] {
            names.insert(var.to_string(), template.reference(id)?);
        }
        let w = Wiring::new(operator_env(endpoint, names)).await;
        let e = |e: orderflow_shared::ConfigError| e.to_string();
        Ok(Ports {
            orders: w.orders().map_err(e)?,
            stock: w.stock().map_err(e)?,
            catalog: w.catalog().map_err(e)?,
            workflows: w.lifecycle_starter().map_err(e)?,
        })
    }
}
