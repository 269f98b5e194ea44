//! End-to-end scenarios: the deployed state machine definitions executing on the local stack,
//! the production gateway client against the sandbox gateway, real DynamoDB conditional writes.
//! Property ids (IDEM-1, INV-1, ...) refer to shared/docs/properties.md.

mod after_sale;
mod api_properties;
mod checkout_paths;
mod contracts;
mod dead_letters;
mod fulfillment;
mod iam_enforcement;
mod lost_answers;
mod ops_listing;
mod returns;
mod soak;
mod stock_properties;
mod store_data;
mod sweeper;
mod uncharged;
mod workflow_properties;
