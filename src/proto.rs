//! The miner API (package `braiins.bos.v1`, and `braiins.bos` for the API version),
//! generated from proto/ by build.rs: clients for the `bos` source, servers for `sim`.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod bos {
    tonic::include_proto!("braiins.bos");

    pub mod v1 {
        tonic::include_proto!("braiins.bos.v1");
    }
}
