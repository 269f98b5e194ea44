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
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Amazon Root CA 1-4, Starfield Services Root CA - G2 and Starfield Class 2 CA, in PEM.
pub const AMAZON_ROOTS_PEM: &str = include_str!("amazon_roots.pem");

/// How many certificates a PEM bundle holds, or why it is not one (the TLS client would panic
/// on a bundle it cannot parse, so a bundle is checked before it is used).
pub fn certificates_in(pem: &[u8]) -> Result<usize, String> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
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
    let store = match trusted_pem(env) {
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
