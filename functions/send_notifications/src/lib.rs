//! SQS consumer of the notifications queue: render the customer email for `{orderId, kind}` and send
//! it through SESv2. A claim per email on the order's email log makes it go out once however often
//! the message is delivered or the confirm step ran (WF-5); the claim's end and the log entry are one
//! write. Partial batch failures are reported (WF-4).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use orderflow_shared::domain::order::{Order, OrderStatus, TimelineEntry};
use orderflow_shared::ports::{Delivery, OnceClaim};
use orderflow_shared::ports::{EmailLog, Mailer, OrderRepository};
use orderflow_shared::{ConfigError, Env, StepError};
use std::sync::Arc;

/// What this function uses, built from its environment at cold start (and nothing else: the
/// template gives it exactly these settings, and its role exactly these resources).
pub struct Deps {
    pub orders: Arc<dyn OrderRepository>,
    pub emails: Arc<dyn EmailLog>,
    pub mailer: Arc<dyn Mailer>,
}

impl Deps {
    pub async fn from_env(env: Env) -> Result<Deps, ConfigError> {
        let w = orderflow_shared::wiring::Wiring::new(env).await;
        Ok(Deps { orders: w.orders()?, emails: w.email_log()?, mailer: w.mailer()? })
    }
}

pub use orderflow_shared::notification::{Notification, NotificationKind};

pub struct Email {
    pub subject: String,
    pub text: String,
}

/// The emails we know how to write. Unknown kinds are poison messages: they fail, and after the
/// receive limit land in the dead-letter queue where the alarm sees them.
pub fn render(n: &Notification, order: &Order) -> Option<Email> {
    let lines: String =
        order.lines.iter().map(|l| format!("  {} x {} ({}) @ {} = {}\n", l.quantity, l.name, l.sku, l.unit_price.display(), l.line_total.display())).collect();
    let t = &order.totals;
    match n.kind {
        NotificationKind::OrderConfirmation => Some(Email {
            subject: format!("Order {} confirmed", order.order_id),
            text: format!(
                "Hello {name},\n\nThank you for your order {id}. We have received your payment authorization and will charge it when your order ships.\n\n{lines}\n  Subtotal: {sub}\n  Shipping ({method}): {ship}\n  Tax: {tax}\n  Total: {total}\n\nShipping to: {addr}\nEstimated delivery: {eta}\n",
                name = order.shipping_address.name,
                id = order.order_id,
                sub = t.subtotal.display(),
                method = order.shipping_method,
                ship = t.shipping.display(),
                tax = t.tax.display(),
                total = t.total.display(),
                addr = format_args!("{}, {} {}, {}", order.shipping_address.line1, order.shipping_address.postal_code, order.shipping_address.city, order.shipping_address.country),
                eta = order.estimated_delivery,
            ),
        }),
        NotificationKind::OrderCancelled if !order.shipments.is_empty() => Some(Email {
            // Goods left but the payment could not be collected (the hold was gone): no false
            // "nothing charged, all cancelled" promise; a person follows up.
            subject: format!("About your order {}", order.order_id),
            text: format!(
                "Hello {name},\n\nWe could not complete the payment for your order {id}, part of which may already be on its way to you. Nothing has been charged. Our team will contact you shortly about it.\n",
                name = order.shipping_address.name,
                id = order.order_id,
            ),
        }),
        NotificationKind::OrderCancelled if order.status == OrderStatus::Cancelled => Some(Email {
            subject: format!("Order {} cancelled", order.order_id),
            text: format!(
                "Hello {name},\n\nYour order {id} has been cancelled{by}. Nothing has been charged and the payment authorization has been released.\n\n{lines}\nIf you have questions, reply to this email.\n",
                name = order.shipping_address.name,
                id = order.order_id,
                by = if order.cancel.as_ref().is_some_and(|c| c.by == "customer") { " as you asked" } else { " by the store" },
            ),
        }),
        NotificationKind::OrderCancelled => Some(Email {
            subject: format!("Order {} cancelled", order.order_id),
            text: format!(
                "Hello {name},\n\nWe are sorry: we could not complete your order {id}. Nothing has been charged and the payment authorization has been released.\n\n{lines}\nIf you have questions, reply to this email.\n",
                name = order.shipping_address.name,
                id = order.order_id,
            ),
        }),
        NotificationKind::OrderShipped => {
            let s = order.shipments.get(n.shipment_id.as_deref()?)?;
            let parcel: String = s.lines.iter().map(|l| format!("  {} x {}\n", l.quantity, l.sku)).collect();
            Some(Email {
                subject: format!("Your order {} has shipped", order.order_id),
                text: format!(
                    "Hello {name},\n\nGood news: a parcel of your order {id} is on its way.\n\n{parcel}\nCarrier: {carrier}\nTracking number: {code}\nTrack it: {url}\n\nCharged for this parcel: {amount}\n",
                    name = order.shipping_address.name,
                    id = order.order_id,
                    carrier = s.carrier.as_deref().unwrap_or("-"),
                    code = s.tracking_code.as_deref().unwrap_or("-"),
                    url = s.tracking_url.as_deref().unwrap_or("-"),
                    amount = s.captured.or(s.amount).map(|m| m.display()).unwrap_or_default(),
                ),
            })
        }
        NotificationKind::TrackingUpdate => {
            let s = order.shipments.get(n.shipment_id.as_deref()?)?;
            let (subject, what) = match n.status.as_deref()? {
                "out_for_delivery" => ("is out for delivery", "is out for delivery today"),
                "available_for_pickup" => ("is ready for pickup", "is waiting for you at the carrier's pickup point"),
                "delivered" => ("was delivered", "was delivered"),
                "failure" => ("has a delivery problem", "could not be delivered; the carrier will try again or contact you"),
                "return_to_sender" => ("is being returned", "is being returned to us; we will contact you about a refund or a new delivery"),
                _ => return None,
            };
            Some(Email {
                subject: format!("Your parcel {subject} (order {})", order.order_id),
                text: format!(
                    "Hello {name},\n\nYour parcel {code} of order {id} {what}.\nTrack it: {url}\n",
                    name = order.shipping_address.name,
                    code = s.tracking_code.as_deref().unwrap_or("-"),
                    id = order.order_id,
                    url = s.tracking_url.as_deref().unwrap_or("-"),
                ),
            })
        }
        NotificationKind::FeedbackRequest => Some(Email {
            subject: format!("How was your order {}?", order.order_id),
            text: format!("Hello {},\n\nYour order {} has arrived. We would love to hear how it went: just reply to this email.\n", order.shipping_address.name, order.order_id),
        }),
        NotificationKind::RefundIssued => {
            let r = order.refunds.get(n.refund_id.as_deref()?)?;
            let amount = orderflow_shared::money::Money::new(r.amount_minor, order.totals.currency()).display();
            let items: String = r.lines.iter().map(|(sku, q)| format!("  {q} x {sku}\n")).collect();
            Some(Email {
                subject: format!("Refund of {amount} for order {}", order.order_id),
                text: format!(
                    "Hello {name},\n\nWe have refunded {amount} for your order {id} to the card you paid with.\n{items}\nRefunds usually reach the card within 5-10 business days, depending on the bank.\n",
                    name = order.shipping_address.name,
                    id = order.order_id,
                    items = if items.is_empty() { String::new() } else { format!("\nFor:\n{items}") },
                ),
            })
        }
        NotificationKind::OrderPartiallyFulfilled if order.cancel.is_some() => {
            // Exactly what shipped and what the cancel stopped, line by line.
            let mut shipped: std::collections::BTreeMap<&str, i64> = Default::default();
            for l in order.shipments.values().flat_map(|s| s.lines.iter()) {
                *shipped.entry(l.sku.as_str()).or_default() += l.quantity;
            }
            let mut sent = String::new();
            let mut stopped = String::new();
            for l in &order.lines {
                let out = shipped.get(l.sku.as_str()).copied().unwrap_or(0).min(l.quantity);
                if out > 0 {
                    sent.push_str(&format!("  {out} x {} ({})\n", l.name, l.sku));
                }
                if l.quantity > out {
                    stopped.push_str(&format!("  {} x {} ({})\n", l.quantity - out, l.name, l.sku));
                }
            }
            let charged = order.payment.as_ref().map(|p| orderflow_shared::money::Money::new(p.captured_minor, p.amount_authorized.currency).display()).unwrap_or_default();
            Some(Email {
                subject: format!("Your order {} is cancelled; part of it had already shipped", order.order_id),
                text: format!(
                    "Hello {name},\n\nYour order {id} is cancelled. These items had already shipped and are on their way:\n{sent}\nThese items are cancelled and will not ship:\n{stopped}\nYou were charged {charged} for what shipped; the rest of the payment authorization has been released.\n",
                    name = order.shipping_address.name,
                    id = order.order_id,
                ),
            })
        }
        NotificationKind::ReturnLabel => {
            let r = order.returns.get(n.return_id.as_deref()?)?;
            let mut parcels = String::new();
            for p in r.parcels.values() {
                let label = p.label.as_ref()?;
                let units: String = p.lines.iter().map(|(sku, q)| format!("    {q} x {}\n", item_name(order, sku))).collect();
                parcels.push_str(&format!("  Label: {}\n  Tracking: {} {}\n  Put in this parcel:\n{units}\n", label.label_url, label.carrier, label.tracking_code));
            }
            Some(Email {
                subject: format!("Your return for order {}", order.order_id),
                text: format!(
                    "Hello {name},\n\nYour return {rid} is authorized. Print the prepaid label, pack the items and hand the parcel to the carrier:\n\n{parcels}We will refund what you paid for the items once they arrive and are checked.\n",
                    name = order.shipping_address.name,
                    rid = r.return_id,
                ),
            })
        }
        NotificationKind::ReturnExpired => {
            let r = order.returns.get(n.return_id.as_deref()?)?;
            Some(Email {
                subject: format!("Your return for order {} has expired", order.order_id),
                text: format!(
                    "Hello {name},\n\nWe did not receive the parcel of your return {rid}, and its label is no longer valid. If you still want to return the items, please ask for a new return while you are within the return window.\n",
                    name = order.shipping_address.name,
                    rid = r.return_id,
                ),
            })
        }
        NotificationKind::OrderPartiallyFulfilled => {
            let shipped: i64 = order.shipments.values().flat_map(|s| s.lines.iter().map(|l| l.quantity)).sum();
            let ordered: i64 = order.lines.iter().map(|l| l.quantity).sum();
            let charged = order.payment.as_ref().map(|p| orderflow_shared::money::Money::new(p.captured_minor, p.amount_authorized.currency).display()).unwrap_or_default();
            Some(Email {
                subject: format!("Part of your order {} could not be shipped", order.order_id),
                text: format!(
                    "Hello {name},\n\nWe shipped {shipped} of the {ordered} items of your order {id} but could not ship the rest. You were charged {charged} for what shipped; the rest of the payment authorization has been released.\n",
                    name = order.shipping_address.name,
                    id = order.order_id,
                ),
            })
        }
    }
}

/// An order line's name for a SKU (the SKU when the line is gone).
fn item_name(order: &Order, sku: &str) -> String {
    order.lines.iter().find(|l| l.sku == sku).map(|l| format!("{} ({sku})", l.name)).unwrap_or_else(|| sku.to_string())
}

async fn one(deps: &Deps, body: &str) -> Result<(), StepError> {
    let n: Notification = serde_json::from_str(body).map_err(|e| StepError::InvalidInput(format!("notification message: {e}")))?;
    let span = tracing::info_span!("notification", order_id = %n.order_id, kind = n.kind.as_str());
    tracing::Instrument::instrument(
        async move {
            let key = n.email_key();
            match deps.emails.claim_email(&n.order_id, &key).await? {
                OnceClaim::AlreadyDone => {
                    tracing::info!("already sent; skipping duplicate");
                    return Ok(());
                }
                OnceClaim::InProgress => return Err(StepError::Retryable("another delivery is sending this email".into())),
                OnceClaim::Go => {}
            }
            let delivery = async {
                let order = deps.orders.get(&n.order_id).await?.ok_or_else(|| StepError::InvalidInput(format!("order {} not found", n.order_id)))?;
                let email =
                    render(&n, &order).ok_or_else(|| StepError::InvalidInput(format!("nothing to tell for {} on order {}", n.kind.as_str(), n.order_id)))?;
                deps.mailer.send(&order.customer_email, &email.subject, &email.text).await
            }
            .await;
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    // Nothing went out: let the next delivery try again rather than waiting for the
                    // stale-claim window.
                    let _ = deps.emails.release_email(&n.order_id, &key).await;
                    return Err(e);
                }
            };
            // Sent (or skipped): from here the email is done, so no retry can send it again. A sent
            // email goes on the order's email log in the same write, not on the order item (an
            // email would rewrite it whole).
            let event = match &delivery {
                Delivery::Sent(message_id) => {
                    tracing::info!(%message_id, "email sent");
                    deps.emails.email_done(&n.order_id, &key, Some(TimelineEntry::now("email_sent", Some(n.kind.as_str().to_string())))).await?;
                    return Ok(());
                }
                Delivery::Suppressed(reason) => {
                    // The address bounced or complained before: skipping it protects the sender's
                    // reputation. Operators see it on the order; the customer's view does not.
                    tracing::warn!(%reason, "email skipped: the address is on the suppression list");
                    deps.emails.email_done(&n.order_id, &key, None).await?;
                    TimelineEntry::now("email_skipped", Some(format!("{}: address suppressed ({reason})", n.kind.as_str())))
                }
            };
            if let Err(e) = deps.orders.append_timeline(&n.order_id, event).await {
                tracing::warn!(error = %e, "the email's outcome could not be put on the timeline");
            }
            Ok::<(), StepError>(())
        },
        span,
    )
    .await
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, StepError> {
    Ok(orderflow_shared::lambda::for_each_sqs_record(event, |body| async move { one(deps, &body).await }).await)
}

pub async fn invoke(deps: &Deps, payload: serde_json::Value) -> Result<serde_json::Value, StepError> {
    orderflow_shared::lambda::invoke_json("send_notifications", payload, |i| handle(deps, i)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_shared::fakes::{shipped_order, InMemoryOrders, RecordingMailer};

    fn sqs(bodies: &[serde_json::Value]) -> SqsEvent {
        let records: Vec<serde_json::Value> =
            bodies.iter().enumerate().map(|(i, b)| serde_json::json!({"messageId": format!("m{i}"), "body": b.to_string()})).collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn the_same_notification_delivered_five_times_is_one_email_and_poison_is_reported_alone() {
        let orders = Arc::new(InMemoryOrders::with(shipped_order("ord_1", 1_000, Some(true), &[])));
        let mailer = Arc::new(RecordingMailer::default());
        let d = Deps { orders: orders.clone(), emails: orders.clone(), mailer: mailer.clone() };
        let confirmation = Notification::new("ord_1", NotificationKind::OrderConfirmation).to_json();
        let poison = serde_json::json!({"orderId": "ord_1", "kind": "birthday_card"});
        let resp = handle(&d, sqs(&[confirmation.clone(), poison, confirmation.clone()])).await.unwrap();
        for _ in 0..3 {
            handle(&d, sqs(std::slice::from_ref(&confirmation))).await.unwrap();
        }
        let failed: Vec<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(failed, vec!["m1".to_string()], "only the poison message comes back (WF-4)");
        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "WF-5: one email however often the message comes");
        assert_eq!(sent[0].0, "a@example.com");
        assert!(sent[0].1.contains("ord_1 confirmed"), "{}", sent[0].1);
        assert!(orders.order("ord_1").timeline.iter().all(|e| e.event != "email_sent"), "the order item is not rewritten per email");
        let seen = orders.get_for_view("ord_1").await.unwrap().unwrap();
        assert_eq!(seen.timeline.iter().filter(|e| e.event == "email_sent").count(), 1);
    }
}
