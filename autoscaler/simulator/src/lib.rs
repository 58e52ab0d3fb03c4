//! `quiver autoscaler simulate`: replays a load trace through the KPA of `quiver-autoscaler`
//! with a replica model, and prints, writes (CSV, JSON) and plots what it decided.
//!
//! - [`trace`]: load traces (CSV of seconds and concurrency or rps).
//! - [`simulate`]: the second-by-second replay with replica start-up delays.
//! - [`plot`]: the PNG/SVG chart.
//! - [`cli`]: the command line.
#![warn(missing_docs)]

pub mod cli;
pub mod plot;
pub mod simulate;
pub mod trace;

pub use cli::{run_simulate, SimulateArgs, SimulateError, SimulationReport};
