//! The embedded driver (`quiver up`): InferenceServices from the store, reconciled by the pure
//! core ([`crate::isvc::reconcile`]) and carried out on the in-process runtime — each service a
//! model of the managed repository under the Quiver home, each revision a version of it, the
//! canary split the runtime's traffic split — with KServe's status written back to the store.

mod admission;
mod controller;
mod edge;
mod home;
mod repository;
mod scaling;
mod state;

pub use admission::InferenceServiceKind;
pub use controller::{Controller, ControllerOptions};
pub use edge::ManagementRoutes;
pub use home::Home;

/// The store resource of InferenceServices.
pub const ISVC_RESOURCE: &str = "inferenceservices.serving.kserve.io";
