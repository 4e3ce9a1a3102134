//! An error and its causes, on one line.

/// An error and its causes on one line: transport errors keep the useful part
/// ("connection refused", "invalid peer certificate: UnknownIssuer") in their sources.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}
