//! A function's settings, read from its environment at cold start.
//!
//! On AWS the environment is what infra/template.yaml gives that one function (plus the variables
//! Lambda itself sets: `AWS_REGION`, the role's credentials, ...). The local stack starts every
//! function through the same `from_env` with the environment the template gives it, resolved the
//! way CloudFormation would (`infra/local/src/functions.rs`). Each function reads only its own
//! settings; a missing one stops the cold start with its name (`ConfigError`), never a silent
//! empty string. `Env` remembers every name read, so a contract test can compare what a function
//! reads with what the template gives it (tests/template_contract.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A setting a function needs and did not get (or got in a shape it cannot use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(String),
    #[error("environment variable {name} is not valid: {reason}")]
    Invalid { name: String, reason: String },
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The environment a function starts with.
#[derive(Clone)]
pub struct Env {
    lookup: Lookup,
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("read", &self.names_read()).finish()
    }
}

impl Env {
    /// The process environment (what Lambda gives a deployed function).
    pub fn process() -> Env {
        Env::from_lookup(|k| std::env::var(k).ok())
    }

    /// A fixed map (what the local stack resolves from the template for one function).
    pub fn from_map(map: BTreeMap<String, String>) -> Env {
        Env::from_lookup(move |k| map.get(k).cloned())
    }

    pub fn from_lookup(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Env {
        Env { lookup: Arc::new(f), read: Arc::default() }
    }

    /// A value that may be absent or empty.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string());
        (self.lookup)(name).filter(|v| !v.is_empty())
    }

    /// A value the function cannot start without.
    pub fn require(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing(name.to_string()))
    }

    /// A required value parsed (numbers).
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.require(name)?;
        raw.parse().map_err(|e: T::Err| ConfigError::Invalid { name: name.to_string(), reason: e.to_string() })
    }

    /// A required JSON value.
    pub fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let raw = self.require(name)?;
        serde_json::from_str(&raw).map_err(|e| ConfigError::Invalid { name: name.to_string(), reason: e.to_string() })
    }

    /// Warehouse id -> its pick-list queue URL: the ids from `WAREHOUSES` (the template's
    /// `Warehouses` list), each queue named by `PICK_LIST_QUEUE_URL_PREFIX` + id, as the template
    /// names them, so a warehouse added to the list is known to every function without more wiring.
    pub fn warehouse_queue_urls(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let prefix = self.require("PICK_LIST_QUEUE_URL_PREFIX")?;
        let ids: Vec<String> = self.require("WAREHOUSES")?.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
        if ids.is_empty() {
            return Err(ConfigError::Invalid { name: "WAREHOUSES".into(), reason: "no warehouse".into() });
        }
        Ok(ids.into_iter().map(|w| (w.clone(), format!("{prefix}{w}"))).collect())
    }

    /// A secret the function reads on first use (see `secrets::SecretSource`).
    pub fn secret(&self, name: &str) -> Result<crate::secrets::SecretSource, ConfigError> {
        crate::secrets::SecretSource::from_env(self, name)
    }

    /// Every name looked up so far, present or not.
    pub fn names_read(&self) -> BTreeSet<String> {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The AWS region (set by Lambda).
    pub fn region(&self) -> String {
        self.optional("AWS_REGION").unwrap_or_else(|| "us-east-1".into())
    }
}

/// A string that never prints itself.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(<empty>)" } else { "Secret(<redacted>)" })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Variables Lambda (or the local stack standing in for it) sets for every function; the template
/// does not declare them, so the contract test leaves them out.
pub fn is_runtime_variable(name: &str) -> bool {
    name.starts_with("AWS_") || name == "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT" || name == "RUST_LOG"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_missing_or_empty_setting_is_named() {
        let e = env(&[("ORDERS_TABLE", "")]);
        assert_eq!(e.require("ORDERS_TABLE"), Err(ConfigError::Missing("ORDERS_TABLE".into())));
        assert_eq!(e.require("INVENTORY_TABLE").unwrap_err().to_string(), "missing environment variable INVENTORY_TABLE");
    }

    #[test]
    fn parse_errors_name_the_variable_and_every_read_is_remembered() {
        let e = env(&[("WAREHOUSE_TIMEOUT_SECONDS", "three days"), ("ORDERS_TABLE", "orders")]);
        let err = e.parse::<i64>("WAREHOUSE_TIMEOUT_SECONDS").unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { ref name, .. } if name == "WAREHOUSE_TIMEOUT_SECONDS"), "{err}");
        assert_eq!(e.require("ORDERS_TABLE").unwrap(), "orders");
        assert_eq!(e.names_read(), BTreeSet::from(["ORDERS_TABLE".to_string(), "WAREHOUSE_TIMEOUT_SECONDS".to_string()]));
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret("sk_live_x".into())), "Secret(<redacted>)");
    }
}
