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
    use std::collections::BTreeSet;

    use prost::Message;
    use prost_types::field_descriptor_proto::Label;
    use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

    use super::bos::v1::GetMinerDetailsResponse;

    /// The protos build.rs compiled, as descriptors.
    const OURS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

    /// braiins/bos-plus-api's interface, one fact a line (tests/py/reference_facts.py).
    const REFERENCE: &str = include_str!("../../tests/data/bos-plus-api-1.11.0.facts");

    /// The facts of our miner API protos, in the form tests/py/reference_facts.py
    /// writes the reference's.
    fn our_facts() -> BTreeSet<String> {
        fn message(prefix: &str, m: &DescriptorProto, out: &mut BTreeSet<String>) {
            let name = format!("{prefix}.{}", m.name());
            out.insert(format!("message {name}"));
            for f in &m.field {
                let kind = match f.type_name() {
                    "" => f.r#type().as_str_name()["TYPE_".len()..].to_ascii_lowercase(),
                    named => named.to_string(),
                };
                let repeated = if f.label() == Label::Repeated {
                    " repeated"
                } else {
                    ""
                };
                out.insert(format!(
                    "field {name} {} {} {kind}{repeated}",
                    f.number(),
                    f.name()
                ));
            }
            for nested in &m.nested_type {
                message(&name, nested, out);
            }
            for e in &m.enum_type {
                enumeration(&name, e, out);
            }
        }
        fn enumeration(prefix: &str, e: &EnumDescriptorProto, out: &mut BTreeSet<String>) {
            for v in &e.value {
                out.insert(format!(
                    "enum {prefix}.{} {} {}",
                    e.name(),
                    v.number(),
                    v.name()
                ));
            }
        }
        let set = FileDescriptorSet::decode(OURS).expect("build.rs wrote descriptors");
        let mut facts = BTreeSet::new();
        for file in set
            .file
            .iter()
            .filter(|f| f.package().starts_with("braiins."))
        {
            let package = format!(".{}", file.package());
            for m in &file.message_type {
                message(&package, m, &mut facts);
            }
            for e in &file.enum_type {
                enumeration(&package, e, &mut facts);
            }
            for service in &file.service {
                for m in &service.method {
                    let stream = |yes: bool| if yes { "stream " } else { "" };
                    facts.insert(format!(
                        "rpc {package}.{}/{} {}{} -> {}{}",
                        service.name(),
                        m.name(),
                        stream(m.client_streaming()),
                        m.input_type(),
                        stream(m.server_streaming()),
                        m.output_type()
                    ));
                }
            }
        }
        facts
    }

    /// Every message, field (number, name, type), enum value and rpc rigtap declares
    /// is as braiins/bos-plus-api 1.11.0 declares it: a mismatch is a miner whose
    /// answers fail to decode, or decode into the wrong field.
    #[test]
    fn the_miner_api_agrees_with_the_reference() {
        let reference: BTreeSet<&str> = REFERENCE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        let ours = our_facts();
        assert!(
            ours.len() > 150,
            "{} facts: the protos were read",
            ours.len()
        );
        let differ: Vec<&String> = ours
            .iter()
            .filter(|fact| !reference.contains(fact.as_str()))
            .collect();
        assert!(
            differ.is_empty(),
            "declared here, not so in the reference:\n{}",
            differ
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

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
