//! Webhook signature verification for the payment gateway (Stripe-Signature) and the carrier
//! (X-Hmac-Signature). Building block for fulfillment (issue #3): verify before anything is parsed,
//! recorded or queued. Comparisons are constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Default tolerance: reject events signed more than 300 s ago or in the future.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is missing or not in the expected shape: HTTP 400.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// No signature matches the body: HTTP 401.
    #[error("signature does not match")]
    Mismatch,
    /// Signed too long ago, or in the future: HTTP 401.
    #[error("timestamp outside the tolerance")]
    Stale,
}

impl SignatureError {
    pub fn http_status(&self) -> u16 {
        match self {
            SignatureError::Malformed(_) => 400,
            SignatureError::Mismatch | SignatureError::Stale => 401,
        }
    }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex_eq(expected: &[u8], candidate_hex: &str) -> bool {
    match hex::decode(candidate_hex) {
        Ok(c) => c.len() == expected.len() && bool::from(c.ct_eq(expected)),
        Err(_) => false,
    }
}

/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` where v1 = HMAC-SHA256(secret, "<t>.<body>").
/// Any matching v1 passes (secret rotation signs with two keys); unknown schemes (v0) are ignored.
/// Several `secrets` may be configured during our own rotation.
pub fn verify_stripe(header: &str, body: &[u8], secrets: &[&str], now: i64, tolerance: i64) -> Result<i64, SignatureError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match k {
            "t" => timestamp = Some(v.parse().map_err(|_| SignatureError::Malformed("t is not a unix time"))?),
            "v1" => signatures.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed("no t="))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    let signed_ts = t.to_string();
    let matched = secrets.iter().any(|s| {
        let expected = mac(s.as_bytes(), &[signed_ts.as_bytes(), b".", body]);
        signatures.iter().any(|sig| hex_eq(&expected, sig))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if (now - t).abs() > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(t)
}

/// Sign like the gateway does (for the sandbox and tests).
pub fn sign_stripe(body: &[u8], secret: &str, t: i64) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body])))
}

/// `X-Hmac-Signature: hmac-sha256-hex=<hex HMAC-SHA256(secret, body)>` (EasyPost-shaped). It has no
/// timestamp: replays are stopped by de-duplicating on the event id and ignoring stale updates.
pub fn verify_carrier(header: &str, body: &[u8], secrets: &[&str]) -> Result<(), SignatureError> {
    let sig = header.trim().strip_prefix("hmac-sha256-hex=").ok_or(SignatureError::Malformed("expected hmac-sha256-hex=<hex>"))?;
    if sig.is_empty() || hex::decode(sig).is_err() {
        return Err(SignatureError::Malformed("signature is not hex"));
    }
    if secrets.iter().any(|s| hex_eq(&mac(easypost_key(s).as_bytes(), &[body]), sig)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

pub fn sign_carrier(body: &[u8], secret: &str) -> String {
    format!("hmac-sha256-hex={}", hex::encode(mac(easypost_key(secret).as_bytes(), &[body])))
}

/// EasyPost keys its HMAC with the secret in Unicode NFKD form (easypost-python
/// `util.validate_webhook`: `unicodedata.normalize("NFKD", webhook_secret)`), so a secret with an
/// accented letter or a ligature signs with its decomposed bytes.
fn easypost_key(secret: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    secret.nfkd().collect()
}

/// Fixed vectors from the partners' own client libraries, not from our signer: each header below was
/// accepted by stripe-python 16.1.0 (`stripe.WebhookSignature.verify_header(payload, header, secret,
/// tolerance=None)`) and easypost-python 10.7.0 (`easypost.util.validate_webhook(body, headers,
/// secret)`). A change to how we sign that the libraries would not share fails here.
#[cfg(test)]
mod partner_vectors {
    use super::*;

    const STRIPE_SECRET: &str = "whsec_test_5a8b1c2d3e4f";
    const STRIPE_T: i64 = 1_764_158_400;
    const STRIPE_PAYLOAD: &str = r#"{"id":"evt_1QvFixed0001","object":"event","api_version":"2024-06-20","type":"payment_intent.succeeded","data":{"object":{"id":"pi_fixed_0001","object":"payment_intent","amount":3571,"amount_received":3571,"metadata":{"order_id":"ord_0123456789abcdef0123456789abcdef"}}}}"#;
    const STRIPE_HEADER: &str = "t=1764158400,v1=6474e8a198d0e9165e811761106bfd858ae22fe99c2b113f15462df83e837a01";

    const EASYPOST_BODY: &str = r#"{"id":"evt_fixed_0001","object":"Event","description":"tracker.updated","result":{"id":"trk_fixed_0001","object":"Tracker","tracking_code":"EZ1000000001","status":"in_transit"}}"#;
    const EASYPOST_SECRET: &str = "easypost-webhook-secret";
    const EASYPOST_HEADER: &str = "hmac-sha256-hex=98305a5071d23a313c2c3f2dd5f4ccfcd2f6e9734440ad01345f79fb310b781f";
    /// "sécret-ﬁxed": EasyPost signs with its NFKD form ("se\u{301}cret-fixed").
    const EASYPOST_UNICODE_SECRET: &str = "s\u{e9}cret-\u{fb01}xed";
    const EASYPOST_UNICODE_HEADER: &str = "hmac-sha256-hex=271199de644b9d994005c628cca3adba790c38401e72f7d9ef1d4fc5312f4a3c";

    #[test]
    fn stripe_header_made_by_stripe_python_verifies() {
        let within = STRIPE_T + 10;
        assert_eq!(verify_stripe(STRIPE_HEADER, STRIPE_PAYLOAD.as_bytes(), &[STRIPE_SECRET], within, DEFAULT_TOLERANCE_SECONDS), Ok(STRIPE_T));
        assert_eq!(sign_stripe(STRIPE_PAYLOAD.as_bytes(), STRIPE_SECRET, STRIPE_T), STRIPE_HEADER, "the sandbox signs as Stripe does");
        let mut changed = STRIPE_PAYLOAD.as_bytes().to_vec();
        changed[60] ^= 1;
        assert_eq!(verify_stripe(STRIPE_HEADER, &changed, &[STRIPE_SECRET], within, DEFAULT_TOLERANCE_SECONDS), Err(SignatureError::Mismatch));
        assert!(verify_stripe(STRIPE_HEADER, STRIPE_PAYLOAD.as_bytes(), &[STRIPE_SECRET], STRIPE_T + 301, DEFAULT_TOLERANCE_SECONDS).is_err());
    }

    #[test]
    fn easypost_headers_made_by_easypost_python_verify() {
        assert_eq!(verify_carrier(EASYPOST_HEADER, EASYPOST_BODY.as_bytes(), &[EASYPOST_SECRET]), Ok(()));
        assert_eq!(verify_carrier(EASYPOST_UNICODE_HEADER, EASYPOST_BODY.as_bytes(), &[EASYPOST_UNICODE_SECRET]), Ok(()));
        assert_eq!(sign_carrier(EASYPOST_BODY.as_bytes(), EASYPOST_UNICODE_SECRET), EASYPOST_UNICODE_HEADER, "the sandbox signs as EasyPost does");
        assert_eq!(verify_carrier(EASYPOST_HEADER, EASYPOST_BODY.as_bytes(), &["another-secret"]), Err(SignatureError::Mismatch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: i64 = 1_763_700_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.canceled"}"#;

    #[test]
    fn wh1_a_valid_signature_passes() {
        let h = sign_stripe(BODY, SECRET, NOW - 10);
        assert_eq!(verify_stripe(&h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS), Ok(NOW - 10));
    }

    #[test]
    fn wh1_forged_signature_is_401() {
        let h = sign_stripe(BODY, "another_secret", NOW);
        let e = verify_stripe(&h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).unwrap_err();
        assert_eq!((e.clone(), e.http_status()), (SignatureError::Mismatch, 401));
    }

    #[test]
    fn wh1_malformed_header_is_400() {
        for h in ["", "garbage", "t=abc,v1=00", "v1=00", "t=1"] {
            let e = verify_stripe(h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).unwrap_err();
            assert_eq!(e.http_status(), 400, "{h:?} -> {e:?}");
        }
    }

    #[test]
    fn wh1_one_changed_byte_is_401() {
        let h = sign_stripe(BODY, SECRET, NOW);
        let mut changed = BODY.to_vec();
        changed[5] ^= 1;
        assert_eq!(verify_stripe(&h, &changed, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS), Err(SignatureError::Mismatch));
    }

    #[test]
    fn wh1_old_or_future_timestamps_are_401() {
        for t in [NOW - 301, NOW + 301] {
            let h = sign_stripe(BODY, SECRET, t);
            assert_eq!(verify_stripe(&h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS), Err(SignatureError::Stale));
        }
        let h = sign_stripe(BODY, SECRET, NOW - 300);
        assert!(verify_stripe(&h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).is_ok());
    }

    #[test]
    fn wh1_two_v1_signatures_one_valid_passes() {
        let good = sign_stripe(BODY, SECRET, NOW);
        let v1 = good.split("v1=").nth(1).unwrap();
        let h = format!("t={NOW},v1={},v1={v1},v0=deadbeef", "ab".repeat(32));
        assert!(verify_stripe(&h, BODY, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).is_ok());
    }

    #[test]
    fn our_own_secret_rotation_accepts_either_secret() {
        let h = sign_stripe(BODY, "old_secret", NOW);
        assert!(verify_stripe(&h, BODY, &["new_secret", "old_secret"], NOW, DEFAULT_TOLERANCE_SECONDS).is_ok());
    }

    #[test]
    fn carrier_signatures() {
        let h = sign_carrier(BODY, SECRET);
        assert_eq!(verify_carrier(&h, BODY, &[SECRET]), Ok(()));
        assert_eq!(verify_carrier(&h, b"{}", &[SECRET]), Err(SignatureError::Mismatch));
        assert_eq!(verify_carrier("sha1=abc", BODY, &[SECRET]).unwrap_err().http_status(), 400);
        assert_eq!(verify_carrier("hmac-sha256-hex=zz", BODY, &[SECRET]).unwrap_err().http_status(), 400);
    }

    proptest! {
        #[test]
        fn never_panics_and_never_accepts_garbage(header in ".{0,200}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(verify_stripe(&header, &body, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).is_err());
            prop_assert!(verify_carrier(&header, &body, &[SECRET]).is_err());
        }

        #[test]
        fn any_body_signed_verifies(body in proptest::collection::vec(any::<u8>(), 0..500), skew in -300i64..=300) {
            let h = sign_stripe(&body, SECRET, NOW + skew);
            prop_assert!(verify_stripe(&h, &body, &[SECRET], NOW, DEFAULT_TOLERANCE_SECONDS).is_ok());
        }
    }
}
