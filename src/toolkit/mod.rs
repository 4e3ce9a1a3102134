//! Layer 1, the toolkit: what every layer above speaks, with no knowledge of
//! components. YAML with positions and located errors ([`yaml`]), units and secrets in
//! config, the inventory CSV, files read whole within a limit, the [`sample::Sample`]
//! and its schema, templates over its fields, latency histograms, a log-line budget, a
//! count of things alive, the directories a pipeline writes, the process's open-file limit and allocator settings, an error's causes on
//! one line, the wire types generated from proto/, and the proptest strategies and the
//! future sizes the tests share.

pub(crate) mod counted;
pub(crate) mod error_chain;
#[cfg(test)]
pub(crate) mod future_size;
pub mod histogram;
pub mod inventory;
pub(crate) mod limits;
pub(crate) mod log_budget;
pub mod malloc;
pub(crate) mod panic;
pub(crate) mod paths;
pub mod proto;
pub(crate) mod regular_file;
pub mod sample;
pub(crate) mod secret;
pub mod segment_log;
#[cfg(test)]
pub(crate) mod strategies;
pub(crate) mod template;
pub mod units;
pub mod yaml;
