//! YAML as config: a tree whose every node knows its line and column ([`node`]),
//! `${VAR}` interpolation ([`interpolate`]), and serde decoding that keeps the
//! position of every error ([`decode`]).

pub mod decode;
pub mod diagnostic;
pub mod interpolate;
pub mod node;
