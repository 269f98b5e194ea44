//! WH-4: a webhook is answered after verify, record, enqueue, and nothing else. The handler runs
//! here against in-memory ports: the stock ledger panics if touched, the order store must stay
//! empty, no workflow is called, and exactly one message per event reaches the events queue that
//! apply_webhook_events consumes (the work happens there, off the request).

use axum::body::Body;
use http::Request;
use orderflow_shared::env::Env;
use orderflow_shared::fakes::{InMemoryOnce, InMemoryOrders, RecordingQueue, RecordingWorkflows, UntouchedStock};
use orderflow_shared::secrets::SecretSource;
use orderflow_shared::webhooks::{sign_carrier, sign_stripe};
use partner_api::{router, Deps};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

const EVENTS: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/webhook-events";

struct Ports {
    orders: Arc<InMemoryOrders>,
    queue: Arc<RecordingQueue>,
    workflows: Arc<RecordingWorkflows>,
}

fn deps() -> (Arc<Deps>, Ports) {
    let env = Env::from_map(
        [("CARRIER_WEBHOOK_SECRET", "carrier_secret"), ("GATEWAY_WEBHOOK_SECRET", "whsec_gateway"), ("WAREHOUSE_API_TOKENS", "{}")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let ports = Ports { orders: Arc::default(), queue: Arc::default(), workflows: Arc::default() };
    let deps = Deps {
        orders: ports.orders.clone(),
        stock: Arc::new(UntouchedStock),
        once: Arc::new(InMemoryOnce::default()),
        queue: ports.queue.clone(),
        webhook_events_queue_url: EVENTS.into(),
        workflows: ports.workflows.clone(),
        carrier_webhook_secret: Arc::new(SecretSource::from_env(&env, "CARRIER_WEBHOOK_SECRET").unwrap()),
        gateway_webhook_secret: Arc::new(SecretSource::from_env(&env, "GATEWAY_WEBHOOK_SECRET").unwrap()),
        warehouse_api_tokens: Arc::new(SecretSource::from_env(&env, "WAREHOUSE_API_TOKENS").unwrap()),
    };
    (Arc::new(deps), ports)
}

async fn post(deps: &Arc<Deps>, path: &str, header: (&str, String), body: &[u8]) -> (u16, Value) {
    let req = Request::post(path).header("content-type", "application/json").header(header.0, header.1).body(Body::from(body.to_vec())).unwrap();
    let resp = router(deps.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn assert_only_queued(ports: &Ports, event_ids: &[&str]) {
    let queued = ports.queue.bodies(EVENTS);
    let ids: Vec<&str> = queued.iter().map(|m| m["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids, event_ids, "one message per event, on the events queue");
    assert_eq!(ports.queue.sent.lock().unwrap().len(), event_ids.len(), "nothing sent anywhere else");
    assert!(ports.orders.orders.lock().unwrap().is_empty(), "the order store is not written by the intake");
    assert!(ports.workflows.lifecycles.lock().unwrap().is_empty(), "no workflow is called by the intake");
}

#[tokio::test]
async fn wh_4_a_carrier_event_is_verified_recorded_and_queued_and_nothing_else() {
    let (deps, ports) = deps();
    let event = json!({"id": "evt_tracker_1", "description": "tracker.updated",
        "result": {"tracking_code": "EZ1000000001", "status": "in_transit", "shipment_id": "shp_1"}});
    let body = serde_json::to_vec(&event).unwrap();
    let sig = || ("x-hmac-signature", sign_carrier(&body, "carrier_secret"));
    let (status, answer) = post(&deps, "/webhooks/carrier", sig(), &body).await;
    assert_eq!((status, &answer), (200, &json!({"received": true})));
    assert_only_queued(&ports, &["evt_tracker_1"]);
    assert_eq!(ports.queue.bodies(EVENTS)[0]["event"], event, "the event is queued as received");
    // A redelivery is acknowledged and queued no second time.
    let (status, answer) = post(&deps, "/webhooks/carrier", sig(), &body).await;
    assert_eq!((status, answer["duplicate"].as_bool()), (200, Some(true)));
    assert_only_queued(&ports, &["evt_tracker_1"]);
}

#[tokio::test]
async fn wh_4_a_gateway_event_is_verified_recorded_and_queued_and_nothing_else() {
    let (deps, ports) = deps();
    let event = json!({"id": "evt_1", "type": "payment_intent.canceled", "data": {"object": {"id": "pi_1", "metadata": {"order_id": "ord_1"}}}});
    let body = serde_json::to_vec(&event).unwrap();
    let header = ("stripe-signature", sign_stripe(&body, "whsec_gateway", chrono::Utc::now().timestamp()));
    let (status, _) = post(&deps, "/webhooks/gateway", header, &body).await;
    assert_eq!(status, 200);
    assert_only_queued(&ports, &["evt_1"]);
}

/// #10.8: a delivery that arrives while another delivery of the same event is still being taken in
/// (claimed, not yet queued) is told to retry, not "duplicate": if the first dies before queueing,
/// the sender's retry is the only way the event comes back.
#[tokio::test]
async fn a_delivery_while_the_first_is_in_flight_is_told_to_retry_and_nothing_is_lost() {
    let (deps, ports) = deps();
    let event = json!({"id": "evt_inflight", "description": "tracker.updated", "result": {"tracking_code": "EZ2", "status": "delivered"}});
    let body = serde_json::to_vec(&event).unwrap();
    let sig = || ("x-hmac-signature", sign_carrier(&body, "carrier_secret"));
    // The first delivery has claimed the event and not queued it yet.
    assert_eq!(deps.once.begin("webhook:carrier:evt_inflight").await.unwrap(), orderflow_shared::ports::OnceClaim::Go);
    let (status, answer) = post(&deps, "/webhooks/carrier", sig(), &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("event_in_progress")), "{answer}");
    assert_only_queued(&ports, &[]);
    // The first died: its claim is given up (the adapter's lease does this after 120 s), and the
    // sender's retry takes the event in.
    deps.once.forget("webhook:carrier:evt_inflight").await.unwrap();
    let (status, _) = post(&deps, "/webhooks/carrier", sig(), &body).await;
    assert_eq!(status, 200);
    assert_only_queued(&ports, &["evt_inflight"]);
}

/// #10 item 7: no endpoint reads an unbounded body; a 300 KB webhook is 413 in the API's error shape
/// and nothing is claimed or queued.
#[tokio::test]
async fn an_oversized_body_is_refused_before_any_handler_reads_it() {
    let (deps, ports) = deps();
    let big = vec![b' '; 300 * 1024];
    for path in ["/webhooks/gateway", "/webhooks/carrier", "/warehouse/receipts", "/warehouse/returns"] {
        let (st, body) = post(&deps, path, ("x-any", "1".into()), &big).await;
        assert_eq!((st, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{path}: {body}");
    }
    assert!(ports.queue.sent.lock().unwrap().is_empty());
}
