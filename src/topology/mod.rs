//! Layer 4, the assembly: the registry of component types ([`registry`]), the
//! pipeline part of a config file ([`config`]) and its graph check ([`graph`]), and
//! the running pipeline built from it ([`running`]), which stops in order.

pub mod config;
pub(crate) mod graph;
pub(crate) mod registry;
pub mod running;
