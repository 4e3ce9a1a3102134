//! Generated from proto/ by build.rs: the miner API (package `braiins.bos.v1`, and
//! `braiins.bos` for the API version), clients for the `bos` source and servers for
//! `sim`; and rigtap's own sample message (`rigtap.v1`) for the Kafka sink.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

use std::marker::PhantomData;

use bytes::Buf;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder};

/// Every call's codec: prost's, with 1 KiB buffers instead of tonic's 8 KiB. The
/// miner API's messages are a few hundred bytes (the buffers grow for a larger one),
/// and a status stream keeps its decode buffer for its whole life: 7 KiB a miner saved,
/// 70 MiB for a fleet of 10,000. Its decoder counts an answer's lists first
/// ([`Listed`]).
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
    type Decoder = Listed<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        Listed::new(ProstCodec::<T, U>::raw_decoder(buffers()))
    }
}

/// The lists of the miner API's answers, each element of which prost decodes into a
/// struct of its own (hundreds of bytes) from as little as two bytes of an answer: a
/// miner answering 4 MB of empty hashboards took 1.2 GB, and 16 KiB of them (read
/// without a charge to the budget) 2 MB. Per message: the list's field number, what
/// it lists, and a list inside each element.
const LISTS: &[List] = &[
    ("GetHashboardsResponse", 1, "hashboards", None),
    ("GetCoolingStateResponse", 1, "fans", None),
    (
        "GetPoolGroupsResponse",
        1,
        "pool groups",
        Some((4, "pools")),
    ),
];

/// A message's list: its name, the list's field number, what it lists, and a list
/// inside each element.
type List = (&'static str, u32, &'static str, Option<(u32, &'static str)>);

/// The most elements a list of an answer may have, all its elements' lists together
/// for a list inside one. A miner has three or four hashboards, a few fans and pools.
pub const MAX_LISTED: usize = 256;

/// prost's decoder, after a count of the message's lists ([`LISTS`]): an answer
/// listing more than [`MAX_LISTED`] of anything is refused (`OUT_OF_RANGE`, a bad
/// answer) before it is decoded.
pub struct Listed<U>(ProstDecoder<U>, Option<&'static List>);

impl<U> Listed<U> {
    /// Finds `U`'s list once, for every message of the call.
    fn new(decoder: ProstDecoder<U>) -> Self {
        let name = std::any::type_name::<U>().rsplit("::").next().unwrap_or("");
        Listed(decoder, LISTS.iter().find(|l| l.0 == name))
    }
}

impl<U: prost::Message + Default> Decoder for Listed<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if let Some(&(_, field, what, inner)) = self.1 {
            // The whole message is one chunk (tonic reads it into one buffer).
            check_lists(src.chunk(), field, what, inner)?;
        }
        self.0.decode(src)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Refuses `message` if its list `field` (or all of its elements' lists `inner`
/// together) holds more than [`MAX_LISTED`] elements. Malformed data is left to prost
/// to report.
fn check_lists(
    message: &[u8],
    field: u32,
    what: &str,
    inner: Option<(u32, &str)>,
) -> Result<(), Status> {
    let too_many = |what: &str| {
        Status::out_of_range(format!(
            "the answer lists more than {MAX_LISTED} {what}; a miner has a handful, and rigtap reads at most {MAX_LISTED}"
        ))
    };
    let groups = |Groups| {
        Status::out_of_range(
            "the answer holds protobuf groups (wire types 3 and 4), which the miner API never uses",
        )
    };
    let (mut outer, mut nested) = (0, 0);
    let mut refused = None;
    let walked = occurrences(message, field, |element| {
        outer += 1;
        if outer > MAX_LISTED {
            refused = Some(too_many(what));
            return false;
        }
        if let Some((inner_field, inner_what)) = inner {
            let walked = occurrences(element, inner_field, |_| {
                nested += 1;
                (nested <= MAX_LISTED) || {
                    refused = Some(too_many(inner_what));
                    false
                }
            });
            if let Err(found) = walked {
                refused = Some(groups(found));
            }
        }
        refused.is_none()
    });
    walked.map_err(groups)?;
    refused.map_or(Ok(()), Err)
}

/// A group (wire type 3 or 4): prost skips one in a field it does not know and reads on,
/// so the walk cannot skip it blindly, and proto3 has none.
struct Groups;

/// Calls `each` with the payload of every length-delimited field `number` of the
/// protobuf `message`, until it returns false or the data ends (or is malformed: prost
/// refuses it then). A group is an error ([`Groups`]).
fn occurrences<'a>(
    mut message: &'a [u8],
    number: u32,
    mut each: impl FnMut(&'a [u8]) -> bool,
) -> Result<(), Groups> {
    use prost::encoding::decode_varint;
    while message.has_remaining() {
        let Ok(key) = decode_varint(&mut message) else {
            return Ok(());
        };
        let skip = match key & 7 {
            0 => match decode_varint(&mut message) {
                Ok(_) => 0,
                Err(_) => return Ok(()),
            },
            1 => 8,
            5 => 4,
            2 => {
                let Ok(len) = decode_varint(&mut message) else {
                    return Ok(());
                };
                let Some(payload) = usize::try_from(len).ok().and_then(|l| message.get(..l)) else {
                    return Ok(());
                };
                if key >> 3 == u64::from(number) && !each(payload) {
                    return Ok(());
                }
                payload.len()
            }
            3 | 4 => return Err(Groups),
            _ => return Ok(()),
        };
        let Some(rest) = message.get(skip..) else {
            return Ok(());
        };
        message = rest;
    }
    Ok(())
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

    fn last_segment<T>() -> &'static str {
        std::any::type_name::<T>().rsplit("::").next().unwrap()
    }

    /// Every repeated message field of the miner API is in `LISTS`, under the name the
    /// decoder finds its message by.
    #[test]
    fn every_list_of_the_miner_api_is_counted() {
        use super::bos::v1 as api;
        let set = FileDescriptorSet::decode(OURS).expect("build.rs wrote descriptors");
        let mut lists = BTreeSet::new();
        for file in set
            .file
            .iter()
            .filter(|f| f.package().starts_with("braiins."))
        {
            for m in &file.message_type {
                for f in &m.field {
                    if f.label() == Label::Repeated && !f.type_name().is_empty() {
                        lists.insert((m.name().to_string(), f.number() as u32));
                    }
                }
            }
        }
        let counted: BTreeSet<(String, u32)> = super::LISTS
            .iter()
            .flat_map(|&(message, field, _, inner)| {
                let inner = inner.map(|(f, _)| ("PoolGroup".to_string(), f));
                std::iter::once((message.to_string(), field)).chain(inner)
            })
            .collect();
        assert_eq!(counted, lists);
        assert_eq!(
            last_segment::<api::GetHashboardsResponse>(),
            super::LISTS[0].0
        );
        assert_eq!(
            last_segment::<api::GetCoolingStateResponse>(),
            super::LISTS[1].0
        );
        assert_eq!(
            last_segment::<api::GetPoolGroupsResponse>(),
            super::LISTS[2].0
        );
    }

    #[test]
    fn an_answer_listing_hundreds_of_elements_is_refused_before_it_is_decoded() {
        use super::{check_lists, MAX_LISTED};
        // Empty hashboards: two bytes each on the wire, a struct each decoded.
        let boards = |n: usize| [0x0a, 0x00].repeat(n);
        assert!(check_lists(&boards(MAX_LISTED), 1, "hashboards", None).is_ok());
        let refused = check_lists(&boards(MAX_LISTED + 1), 1, "hashboards", None).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::OutOfRange);
        assert!(
            refused.message().contains("more than 256 hashboards"),
            "{}",
            refused.message()
        );
        // A board with a 2 MiB name is one board.
        let named = super::bos::v1::GetHashboardsResponse {
            hashboards: vec![super::bos::v1::Hashboard {
                board_name: Some("x".repeat(2 << 20)),
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert!(check_lists(&named, 1, "hashboards", None).is_ok());
        // Pools counted over all groups: 3 groups of 100.
        let group = super::bos::v1::PoolGroup {
            pools: vec![Default::default(); 100],
            ..Default::default()
        };
        let groups = |n: usize| {
            super::bos::v1::GetPoolGroupsResponse {
                pool_groups: vec![group.clone(); n],
            }
            .encode_to_vec()
        };
        let inner = Some((4, "pools"));
        assert!(check_lists(&groups(2), 1, "pool groups", inner).is_ok());
        let refused = check_lists(&groups(3), 1, "pool groups", inner).unwrap_err();
        assert!(
            refused.message().contains("more than 256 pools"),
            "{}",
            refused.message()
        );
        // Malformed data is prost's to report.
        assert!(check_lists(&[0x0a, 0x7f], 1, "hashboards", None).is_ok());
        // A group, which prost would skip to read the boards after it, is refused.
        let grouped = [vec![0x7b, 0x7c], boards(MAX_LISTED + 1)].concat();
        let refused = check_lists(&grouped, 1, "hashboards", None).unwrap_err();
        assert!(
            refused.message().contains("groups"),
            "{}",
            refused.message()
        );
        let nested = super::bos::v1::PoolGroup::default();
        let mut group = nested.encode_to_vec();
        group.extend_from_slice(&[0x7b, 0x7c]);
        let mut answer = vec![0x0a, group.len() as u8];
        answer.extend_from_slice(&group);
        assert!(check_lists(&answer, 1, "pool groups", inner).is_err());
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
