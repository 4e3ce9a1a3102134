//! An error and its causes, on one line; a peer's words, clipped.

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

/// The most of a miner's own words (a gRPC status message, a firmware's `Msg`) kept in
/// an error: they go into status and gap samples, which a stalled sink may hold, and
/// into the log. A hostile miner answered 8 MB messages.
pub(crate) const MAX_PEER_TEXT: usize = 512;

/// `text` cut to at most [`MAX_PEER_TEXT`] bytes (at a char boundary), saying how
/// much was cut.
pub(crate) fn clipped(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_PEER_TEXT {
        return text.into();
    }
    let end = (0..=MAX_PEER_TEXT)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}... ({} bytes more)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_long_words_are_clipped_at_a_char_boundary() {
        assert_eq!(clipped("no pools"), "no pools");
        let long = format!("{}é{}", "a".repeat(MAX_PEER_TEXT - 1), "b".repeat(10_000));
        let clipped = clipped(&long);
        assert!(clipped.starts_with(&"a".repeat(MAX_PEER_TEXT - 1)));
        assert!(clipped.ends_with("... (10002 bytes more)"), "{clipped}");
        assert!(clipped.len() < MAX_PEER_TEXT + 32);
    }
}
