//! YAML as config: a tree whose every node knows its line and column ([`node`]),
//! `${VAR}` interpolation ([`interpolate`]), and serde decoding that keeps the
//! position of every error ([`decode`]).

pub(crate) mod decode;
pub mod diagnostic;
pub(crate) mod interpolate;
pub mod node;
