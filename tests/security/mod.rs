//! Attacks on the ports behind the gateway, each seen refused.
//!
//! Executors' Flight ports run direct plans; whoever reaches one could hand
//! it any plan DataFusion can decode. These tests do what an attacker on
//! the cluster network would: build plans with DataFusion, wrap them in
//! direct tickets, and send them to a real executor of a real standalone.

mod executor;
mod internal;
