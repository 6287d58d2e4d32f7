//! srcsel's decisions as pure functions of plain data: which slot, table,
//! mark and rules an uplink gets, which gateway it uses, and the plan that
//! turns one kernel snapshot into the changes to make. Nothing here touches
//! the kernel, so all of it is unit-tested without root.
pub mod access;
pub mod assignment;
pub mod dns;
pub mod failover;
pub mod gateway;
pub mod health;
mod hook_report;
pub mod isolate;
pub mod plan;
mod plan_error;
pub mod registry;
pub mod routing;
pub mod slot;
pub mod snapshot;
pub mod target;
pub mod uplink;

pub use assignment::{Assignment, Mode};
pub use plan::{Plan, Scope, UplinkPlan};
pub use routing::{Action, Family, Route, Rule};
pub use slot::PROTO;
pub use snapshot::Snapshot;
pub use uplink::Uplink;
