//! IAM as the template writes it, enforced at the edge (issue: runs on AWS the way it runs here).
//! Removing one resource-scoped grant makes the scenario that needs it fail with AccessDenied,
//! as it would on AWS; giving it back makes the same scenario pass.

use orderflow_e2e::*;
use orderflow_local::iam::{table_arn, Need, Principal};

#[test]
fn a_revoked_grant_fails_the_step_that_needs_it_with_access_denied() {
    let h = harness();
    // Alone: the revoked grant must not fail other scenarios' orders.
    h.run_alone(async {
        let sku = h.new_sku(1500, 5).await;
        let inventory = table_arn("InventoryTable");
        let removed = h.stack.edge.iam.revoke("reserve_stock", "dynamodb:UpdateItem", &inventory);
        assert!(!removed.is_empty(), "the template grants reserve_stock dynamodb:UpdateItem on the inventory table");
        let denied_before = h.stack.edge.iam.denials.lock().unwrap().len();

        let refused = h.place(&order_body(&h.email("iam"), &[(&sku, 2)], "pm_card_visa")).await;

        let denials: Vec<_> = h.stack.edge.iam.denials.lock().unwrap()[denied_before..].to_vec();
        h.stack.edge.iam.restore("reserve_stock", removed);
        assert!(
            denials.iter().any(|d| d.role == "reserve_stock" && d.action == "dynamodb:UpdateItem" && d.resource == inventory),
            "expected AccessDenied for reserve_stock dynamodb:UpdateItem on {inventory}, got {denials:?}"
        );
        assert_ne!(refused.status, 201, "checkout must not confirm without the grant: {}", refused.body);
        assert_eq!(h.stock(&sku).await, (5, 0), "nothing reserved");
        assert!(h.intents(&refused.order_id()).is_empty(), "no hold placed: {:?}", h.intents(&refused.order_id()));

        // The same scenario with the grant back.
        let placed = h.place(&order_body(&h.email("iam"), &[(&sku, 2)], "pm_card_visa")).await;
        assert_eq!(placed.status, 201, "{}", placed.body);
        assert_eq!(h.stock(&sku).await, (3, 2));
    });
}

#[test]
fn each_function_calls_with_its_own_role() {
    let h = harness();
    let iam = &h.stack.edge.iam;
    // A function's credentials name it; it may not use another function's grants.
    let key = &h.stack.edge.functions["score_fraud"].identity.access_key_id;
    let auth = format!("AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x");
    let p = iam.principal(Some(&auth));
    assert_eq!(p, Principal::Function("score_fraud".into()));
    let need = |action: &str, table: &str| Need { action: action.into(), resource: table_arn(table) };
    assert!(iam.authorize(&p, &[need("dynamodb:PutItem", "VelocityTable")]).is_ok());
    let d = iam.authorize(&p, &[need("dynamodb:PutItem", "InventoryTable")]).unwrap_err();
    assert!(
        d.message().contains("is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/InventoryTable"),
        "{}",
        d.message()
    );
    // moto's engine is checked against the state machines that can make the call.
    assert!(iam
        .authorize(&Principal::Engine, &[Need { action: "lambda:InvokeFunction".into(), resource: orderflow_local::functions::function_arn("reserve_stock") }])
        .is_ok());
    assert!(iam
        .authorize(&Principal::Engine, &[Need { action: "lambda:InvokeFunction".into(), resource: orderflow_local::functions::function_arn("partner_api") }])
        .is_err());
}
