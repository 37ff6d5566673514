//! `simulate`: a compiler's builds, end to end, against a real store.
//!
//! [`workspace`] generates a synthetic workspace shaped like real code; the
//! build driver (to come) compiles it through the compiler layer and the
//! store the way a real compiler would, scenario by scenario.

pub mod build;
pub mod oracle;
pub mod scenario;
pub mod workspace;
