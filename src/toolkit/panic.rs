//! What a panic said, for the error that reports it: a panic is a failed component,
//! reported like any other failure.

use std::any::Any;

/// The message a panic carried (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_kinds_of_message_are_read() {
        let caught = std::panic::catch_unwind(|| panic!("at {}", 3)).unwrap_err();
        assert_eq!(super::message(caught.as_ref()), "at 3");
        let caught = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(super::message(caught.as_ref()), "plain");
    }
}
