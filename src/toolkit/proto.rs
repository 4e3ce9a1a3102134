//! Generated from proto/ by build.rs: the miner API (package `braiins.bos.v1`, and
//! `braiins.bos` for the API version), clients for the `bos` source and servers for
//! `sim`; and rigtap's own sample message (`rigtap.v1`) for the Kafka sink.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Every call's codec: prost's, with 1 KiB buffers instead of tonic's 8 KiB. The
/// miner API's messages are a few hundred bytes (the buffers grow for a larger one),
/// and a status stream keeps its decode buffer for its whole life: 7 KiB a miner saved,
/// 70 MiB for a fleet of 10,000.
#[derive(Debug, Clone)]
pub struct SmallBuffers<T, U>(PhantomData<(T, U)>);

fn buffers() -> BufferSettings {
    BufferSettings::new(1 << 10, 32 << 10)
}

impl<T, U> Default for SmallBuffers<T, U> {
    fn default() -> Self {
        SmallBuffers(PhantomData)
    }
}

impl<T, U> Codec for SmallBuffers<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(buffers())
    }
}

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

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::bos::v1::GetMinerDetailsResponse;

    /// A miner that still fills the deprecated `system_uptime = 8` sends it as a varint
    /// (uint64 in braiins/bos-plus-api); a string here made every `GetMinerDetails`
    /// from such a miner fail to decode.
    #[test]
    fn details_with_the_deprecated_uptime_field_decode() {
        // hostname = 6 ("rig"), system_uptime = 8 (3600, a varint), system_uptime_s = 11 (3600)
        let wire = [
            0x32, 3, b'r', b'i', b'g', 0x40, 0x90, 0x1c, 0x58, 0x90, 0x1c,
        ];
        let details = GetMinerDetailsResponse::decode(&wire[..]).expect("decodes");
        assert_eq!(details.hostname, "rig");
        assert_eq!(details.system_uptime_s, 3600);
    }
}
