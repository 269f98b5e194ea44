//! The order domain: pure types and rules, no AWS, no I/O.
pub mod checkout;
pub mod collection;
pub mod fraud;
pub mod fulfillment;
pub mod order;
pub mod order_index;
pub mod pricing;
pub mod refund;
pub mod returns;
pub mod shipping;
pub mod store_data;
