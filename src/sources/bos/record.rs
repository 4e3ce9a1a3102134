//! What a `bos` source's `record:` keeps of a poll ([`crate::fleet::record`]): each
//! call's message as protobuf hex (re-encoded from what was decoded), absent where the
//! call was not made or failed.

use prost::Message;
use serde_json::{Map, Value};

use super::poll::Answers;
use crate::fleet::record::hex;

/// One poll's answers as the fields of a recorded line.
pub(crate) fn fields(answers: &Answers) -> Map<String, Value> {
    fn encoded<M: Message>(message: Option<&M>) -> Value {
        message.map_or(Value::Null, |m| Value::from(hex(&m.encode_to_vec())))
    }
    let mut fields = Map::with_capacity(5);
    fields.insert("details".into(), encoded(answers.details.as_ref()));
    fields.insert("stats".into(), encoded(answers.stats.as_ref()));
    fields.insert("hashboards".into(), encoded(answers.hashboards.as_ref()));
    fields.insert("cooling".into(), encoded(answers.cooling.as_ref()));
    fields.insert("pools".into(), encoded(answers.pools.as_ref()));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::proto::bos::v1 as api;

    #[test]
    fn each_answer_is_its_protobuf_and_a_call_not_made_is_null() {
        let details = api::GetMinerDetailsResponse {
            hostname: "rig".into(),
            ..Default::default()
        };
        let fields = fields(&Answers {
            details: Some(details.clone()),
            ..Answers::default()
        });
        assert_eq!(fields["details"], hex(&details.encode_to_vec()));
        assert!(fields["stats"].is_null(), "not asked: absent");
    }
}
