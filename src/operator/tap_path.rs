//! The path of a component's tap on the API, `/tap/ID`: written by `rigtap tap`,
//! read by the API. A component id may hold any character (a space, `é`, `/`, `?`),
//! so the id is percent-encoded, every byte but RFC 3986's unreserved ones: it is then
//! one path segment whatever it holds, a valid request line, and the server decodes it
//! back to the id.

use std::fmt::Write;

const PREFIX: &str = "/tap/";

/// The request path of `component`'s tap.
pub(crate) fn path(component: &str) -> String {
    let mut path = String::from(PREFIX);
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            let _ = write!(path, "%{byte:02X}");
        }
    }
    path
}

/// A tap's path whose escapes do not decode to a component id.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a percent-encoded component id (`%` is followed by two hex digits, and the id is UTF-8)")]
pub(crate) struct BadTapPath(String);

/// The component a request path taps: `None` when it is not a tap's path. An id
/// written raw (`/tap/fleet`, as with curl) decodes to itself.
pub(crate) fn component(path: &str) -> Option<Result<String, BadTapPath>> {
    let encoded = path.strip_prefix(PREFIX)?;
    Some(decode(encoded).ok_or_else(|| BadTapPath(encoded.to_string())))
}

fn decode(encoded: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(after.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_id_goes_through_the_path_and_back() {
        for id in ["fleet", "gén 1", "a/b?c#d", "100%", "~._-", "行 %2F"] {
            let path = path(id);
            assert!(
                path.bytes().all(|b| b.is_ascii_graphic()),
                "a request line holds no space nor raw byte: {path}"
            );
            assert_eq!(path.matches('/').count(), 2, "one segment: {path}");
            assert_eq!(component(&path), Some(Ok(id.to_string())), "{path}");
        }
        assert_eq!(path("gén 1"), "/tap/g%C3%A9n%201");
    }

    #[test]
    fn a_raw_or_bad_path_decodes_or_is_refused() {
        assert_eq!(component("/tap/a/b"), Some(Ok("a/b".to_string())));
        assert_eq!(component("/metrics"), None);
        for bad in ["/tap/50%", "/tap/%zz", "/tap/%C3"] {
            assert!(matches!(component(bad), Some(Err(_))), "{bad}");
        }
    }
}
