//! The roots the SDK's HTTPS client trusts. AWS's service endpoints present certificates from Amazon
//! Trust Services (Amazon Root CA 1-4, cross-signed by Starfield), so the client trusts those six
//! roots, compiled in (`amazon_roots.pem`, each with its SHA-256 fingerprint), instead of reading and
//! parsing the system's ~140 at every cold start: that parse was most of a function's Init phase
//! (`.ci/coldstart`, design.md "Cold starts"). `AWS_CA_BUNDLE` (a PEM file, the variable the other
//! AWS SDKs read) replaces them, e.g. behind a TLS-inspecting proxy.
use crate::env::Env;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Amazon Root CA 1-4, Starfield Services Root CA - G2 and Starfield Class 2 CA, in PEM.
pub const AMAZON_ROOTS_PEM: &str = include_str!("amazon_roots.pem");

/// How many certificates a PEM bundle holds, or why it is not one. The TLS client panics on a
/// bundle it cannot use (a PEM it cannot parse, a certificate that is not a usable trust anchor),
/// so a bundle is checked here, at Init, as the client will use it.
pub fn certificates_in(pem: &[u8]) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    for (i, cert) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(cert).map_err(|e| format!("certificate {} is not a usable trust anchor: {e:?}", i + 1))?;
    }
    Ok(certs.len())
}

/// The PEM the client trusts: `AWS_CA_BUNDLE`'s file when it is set and readable, else the
/// compiled-in Amazon roots. None: the system's roots (an unusable bundle, logged).
pub fn trusted_pem(env: &Env) -> Option<Vec<u8>> {
    let Some(path) = env.optional("AWS_CA_BUNDLE") else { return Some(AMAZON_ROOTS_PEM.as_bytes().to_vec()) };
    match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|pem| certificates_in(&pem).map(|_| pem)) {
        Ok(pem) => Some(pem),
        Err(e) => {
            tracing::error!(path = %path, error = %e, "AWS_CA_BUNDLE is not a usable PEM bundle; trusting the system's roots");
            None
        }
    }
}

/// The SDK's default HTTPS client (rustls, here on ring; proxy settings from the environment),
/// trusting `trusted_pem`.
pub fn https_client(env: &Env) -> SharedHttpClient {
    let pem = trusted_pem(env);
    let roots_checked = pem.is_some();
    checked_once(connector_per_settings(pem), roots_checked)
}

fn checked_once(inner: SharedHttpClient, roots_checked: bool) -> SharedHttpClient {
    SharedHttpClient::new(CheckedOnce { inner, checked: std::sync::Once::new(), roots_checked })
}

/// The HTTP client, checked at most once per process rather than once per SDK client. The SDK asks
/// the HTTP client to check itself each time a service client is made; the hyper client does that
/// by building a whole TLS connector (its trusted roots parsed) and dropping it, "so that native
/// certs load at client initialization time" (aws-smithy-http-client's `validate_base_client_config`).
/// With the system's roots, that is done once, so a broken trust store still shows at Init. With
/// our own PEM (`roots_checked`) there is nothing to load: the compiled-in roots are checked by a
/// test and an `AWS_CA_BUNDLE` at Init by `certificates_in`, so the build is skipped. It was a
/// third of a small function's Init, and thrown away: requests get the connector the inner client
/// builds once per settings (at the first request, as before) and keeps.
#[derive(Debug)]
struct CheckedOnce {
    inner: SharedHttpClient,
    checked: std::sync::Once,
    roots_checked: bool,
}

impl HttpClient for CheckedOnce {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.inner.http_connector(settings, components)
    }

    fn validate_base_client_config(&self, components: &RuntimeComponentsBuilder, cfg: &ConfigBag) -> Result<(), BoxError> {
        if self.roots_checked {
            return Ok(());
        }
        let mut result = Ok(());
        self.checked.call_once(|| result = self.inner.validate_base_client_config(components, cfg));
        result
    }

    fn validate_final_config(&self, components: &RuntimeComponents, cfg: &ConfigBag) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

fn connector_per_settings(pem: Option<Vec<u8>>) -> SharedHttpClient {
    let store = match pem {
        Some(pem) => TrustStore::empty().with_native_roots(false).with_pem_certificate(pem),
        None => TrustStore::default(),
    };
    let context = TlsContext::builder().with_trust_store(store).build().expect("a TLS context only holds its parts");
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)).tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Debug, Default)]
    struct Counting(Arc<AtomicUsize>);
    impl HttpClient for Counting {
        fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
            unreachable!("no request is made")
        }
        fn validate_base_client_config(&self, _: &RuntimeComponentsBuilder, _: &ConfigBag) -> Result<(), BoxError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn check(client: &SharedHttpClient) {
        client.validate_base_client_config(&RuntimeComponentsBuilder::new("test"), &ConfigBag::base()).unwrap();
    }

    /// How many times the inner client checked itself while four SDK clients were made.
    fn inner_checks_for_four_clients(roots_checked: bool) -> usize {
        let checks = Arc::new(AtomicUsize::new(0));
        let client = checked_once(SharedHttpClient::new(Counting(checks.clone())), roots_checked);
        for _ in 0..4 {
            check(&client);
        }
        checks.load(Ordering::SeqCst)
    }

    #[test]
    fn with_the_systems_roots_the_http_client_is_checked_once_however_many_sdk_clients_are_made() {
        assert_eq!(inner_checks_for_four_clients(false), 1);
    }

    #[test]
    fn with_roots_already_checked_no_connector_is_built_at_init() {
        assert_eq!(inner_checks_for_four_clients(true), 0);
    }

    /// What the first request does, now that Init does not: build the TLS connector from the PEM
    /// (the hyper client's check builds one exactly as a request would, and panics on bad roots).
    #[tokio::test]
    async fn the_connector_builds_with_the_compiled_in_roots_and_with_a_checked_bundle() {
        check(&connector_per_settings(Some(AMAZON_ROOTS_PEM.as_bytes().to_vec())));
        let one = &AMAZON_ROOTS_PEM[AMAZON_ROOTS_PEM.find("-----BEGIN").unwrap()..AMAZON_ROOTS_PEM.find("-----END CERTIFICATE-----").unwrap() + 26];
        assert_eq!(certificates_in(one.as_bytes()), Ok(1));
        check(&connector_per_settings(Some(one.as_bytes().to_vec())));
    }

    #[test]
    fn a_pem_whose_certificate_is_not_a_trust_anchor_is_refused() {
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let err = certificates_in(garbage.as_bytes()).unwrap_err();
        assert!(err.contains("certificate 1 is not a usable trust anchor"), "{err}");
    }

    #[test]
    fn the_compiled_in_roots_are_the_six_amazon_trust_services_roots() {
        assert_eq!(certificates_in(AMAZON_ROOTS_PEM.as_bytes()), Ok(6));
        for name in ["Amazon Root CA 1", "Amazon Root CA 2", "Amazon Root CA 3", "Amazon Root CA 4", "Starfield Services Root Certificate Authority - G2"] {
            assert!(AMAZON_ROOTS_PEM.contains(&format!("# {name}\n")), "{name}");
        }
    }

    #[test]
    fn aws_ca_bundle_replaces_the_roots_and_an_unusable_one_falls_back_to_the_system() {
        let env = |v: Option<&str>| Env::from_map(v.map(|p| BTreeMap::from([("AWS_CA_BUNDLE".to_string(), p.to_string())])).unwrap_or_default());
        assert_eq!(trusted_pem(&env(None)).as_deref(), Some(AMAZON_ROOTS_PEM.as_bytes()));
        let dir = std::env::temp_dir().join(format!("orderflow-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = &AMAZON_ROOTS_PEM[..AMAZON_ROOTS_PEM.find("-----END CERTIFICATE-----").unwrap() + 26];
        std::fs::write(dir.join("one.pem"), one).unwrap();
        std::fs::write(dir.join("bad.pem"), "not a certificate").unwrap();
        let got = trusted_pem(&env(Some(dir.join("one.pem").to_str().unwrap()))).unwrap();
        assert_eq!(certificates_in(&got), Ok(1));
        assert_eq!(trusted_pem(&env(Some(dir.join("bad.pem").to_str().unwrap()))), None);
        assert_eq!(trusted_pem(&env(Some(dir.join("missing.pem").to_str().unwrap()))), None);
        let _ = std::fs::remove_dir_all(dir);
        // The client builds with either store.
        let _ = https_client(&env(None));
    }
}
