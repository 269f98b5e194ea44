//! The order domain: pure types and rules, no AWS, no I/O.
pub mod checkout;
pub mod fraud;
pub mod order;
pub mod pricing;
