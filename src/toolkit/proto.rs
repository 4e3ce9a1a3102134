//! Generated from proto/ by build.rs: the miner API (package `braiins.bos.v1`, and
//! `braiins.bos` for the API version), clients for the `bos` source and servers for
//! `sim`; and rigtap's own sample message (`rigtap.v1`) for the Kafka sink.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod bos {
    tonic::include_proto!("braiins.bos");

    pub mod v1 {
        tonic::include_proto!("braiins.bos.v1");
    }
}

pub mod rigtap {
    pub mod v1 {
        tonic::include_proto!("rigtap.v1");
    }
}
