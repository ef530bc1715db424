//! ACME: accounts, orders, challenge solvers and certificate checks, used by the
//! `AcmeIssuer` and `AcmeCertificate` controllers.

pub mod account;
pub mod cert;
pub mod dns01;
pub mod keys;
pub mod order;
pub mod renewal;
pub mod solver;
