//! Which failed calls are tried again, how often, and how long to wait between tries.
//!
//! A call's `timeout` is its deadline, retries included: a retry waits its backoff and
//! its turn at the governors within what is left, is made only with at least as much
//! time left as the attempt before it took, and a call whose time is up is not tried
//! again; a retry that runs out of time reports the failure it was made for. So a
//! call never outlasts `timeout`, however many attempts it is allowed. (An expired
//! session is the exception: its re-login, and the call made again after it, have
//! deadlines of their own.)

use serde::Deserialize;
use tonic::Code;

use crate::fleet::backoff::BackoffConfig;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryConfig {
    /// Tries of one call, the first included: 1 means no retry.
    pub attempts: u32,
    /// The gRPC codes worth another try.
    pub codes: Vec<RetryCode>,
    /// The wait before each retry (full jitter, as the reconnect backoff).
    pub backoff: BackoffConfig,
}

/// The gRPC status codes a retry policy may name (snake_case, as in the gRPC docs'
/// `UNAVAILABLE` → `unavailable`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RetryCode {
    Cancelled,
    Unknown,
    DeadlineExceeded,
    ResourceExhausted,
    Aborted,
    Internal,
    Unavailable,
    DataLoss,
}

impl RetryCode {
    fn code(self) -> Code {
        match self {
            RetryCode::Cancelled => Code::Cancelled,
            RetryCode::Unknown => Code::Unknown,
            RetryCode::DeadlineExceeded => Code::DeadlineExceeded,
            RetryCode::ResourceExhausted => Code::ResourceExhausted,
            RetryCode::Aborted => Code::Aborted,
            RetryCode::Internal => Code::Internal,
            RetryCode::Unavailable => Code::Unavailable,
            RetryCode::DataLoss => Code::DataLoss,
        }
    }
}

/// The most tries of one call.
const MAX_ATTEMPTS: u32 = 10;

impl RetryConfig {
    /// Whether a call that failed with `code` is tried again (time permitting).
    pub(crate) fn retries(&self, code: Code) -> bool {
        self.codes.iter().any(|c| c.code() == code)
    }

    /// The rules `serde` cannot say: the path of the bad key, and what to change.
    pub(crate) fn check(&self) -> Result<(), (Vec<&'static str>, String)> {
        if !(1..=MAX_ATTEMPTS).contains(&self.attempts) {
            return Err((
                vec!["retry", "attempts"],
                format!(
                    "`retry.attempts` counts the first try: from 1 (no retry) to {MAX_ATTEMPTS}, found {}",
                    self.attempts
                ),
            ));
        }
        if self.codes.contains(&RetryCode::DeadlineExceeded) {
            return Err((
                vec!["retry", "codes"],
                "`deadline_exceeded` cannot be retried: `timeout` is the deadline of a call and its retries together, so a call out of time has none left; lengthen `timeout` instead".into(),
            ));
        }
        self.backoff
            .check()
            .map_err(|(key, message)| (vec!["retry", "backoff", key], message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::yaml::decode::from_node;
    use crate::toolkit::yaml::node;

    fn decode(yaml: &str) -> RetryConfig {
        from_node(&node::parse(yaml).unwrap()).unwrap()
    }

    #[test]
    fn codes_decide_and_bounds_are_checked() {
        let retry = decode(
            "attempts: 3\ncodes: [unavailable, resource_exhausted]\nbackoff: {initial: 50ms, max: 1s, multiplier: 2}\n",
        );
        assert!(retry.retries(Code::Unavailable));
        assert!(retry.retries(Code::ResourceExhausted));
        assert!(!retry.retries(Code::Internal));
        assert!(retry.check().is_ok());

        let mut none = retry.clone();
        none.attempts = 0;
        assert!(none.check().unwrap_err().1.contains("from 1 (no retry)"));
        let mut late = retry.clone();
        late.codes.push(RetryCode::DeadlineExceeded);
        let (path, message) = late.check().unwrap_err();
        assert_eq!(path, ["retry", "codes"]);
        assert!(message.contains("lengthen `timeout`"), "{message}");
        let mut shrinking = retry;
        shrinking.backoff.multiplier = 0.5;
        assert_eq!(
            shrinking.check().unwrap_err().0,
            ["retry", "backoff", "multiplier"]
        );
    }
}
