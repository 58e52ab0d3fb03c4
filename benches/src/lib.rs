//! The load generator (`quiver bench`) and the peer comparisons.
//!
//! The generator lands with its own issue; this crate is part of the workspace now so the
//! workspace layout of the design is fixed early.
