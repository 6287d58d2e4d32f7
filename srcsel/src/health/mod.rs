//! Health checks' runtime parts: targets as URLs, and one probe through one
//! uplink. The verdicts are policy ([`crate::policy::health`]); the rounds
//! are the daemon's ([`crate::daemon`]).
pub mod probe;
pub mod target;
