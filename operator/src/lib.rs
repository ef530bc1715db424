//! Vigil: a Kubernetes operator for fleets that span AWS, Alibaba Cloud and VMware on-prem.
//!
//! The library holds everything; the `vigil` binary only parses the command line.
//! - [`api`]: the CRD types of group `vigil.io`.
//! - [`inventory`], [`manifest`], [`validate`], [`render`]: the pure pipeline shared by the
//!   controllers and the offline commands.
//! - [`controllers`]: the controller manager and its runtime.

pub mod acme;
pub mod api;
pub mod check;
pub mod cli;
pub mod controllers;
pub mod crash;
pub mod day2;
pub mod dns;
pub mod error_chain;
pub mod fleet;
pub mod hash;
pub mod inventory;
pub mod manifest;
pub mod metrics;
pub mod parallel;
pub mod prometheus;
pub mod render;
pub mod telemetry;
pub mod tls;
pub mod validate;
pub mod webhook;
pub mod workload_config;
