//! `simulate`: a compiler's builds, end to end, against a real store.
//!
//! [`workspace`] generates a synthetic workspace shaped like real code;
//! [`build`] compiles it through the compiler layer and the store the way a
//! real compiler would; [`oracle`] says from the model alone what each edit
//! must re-key; [`scenario`] runs the seed note's scenarios and checks them;
//! [`concurrent`] runs several builder processes and gc on one store.

pub mod build;
pub mod concurrent;
pub mod oracle;
pub mod scenario;
pub mod workspace;
