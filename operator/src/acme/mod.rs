//! ACME: accounts, orders, challenge solvers and certificate checks, used by the
//! `AcmeIssuer` and `AcmeCertificate` controllers.

pub mod dns01;
