//! ACME: accounts, orders, challenge solvers and certificate checks, used by the
//! `AcmeIssuer` and `AcmeCertificate` controllers.

pub mod cert;
pub mod dns01;
pub mod keys;
pub mod renewal;
