//! One command to one miner over the CGMiner-style API: a TCP connection per command
//! (how these firmwares work; many serve one client at a time), the command as JSON,
//! and the answer read to the end of the connection or its NUL terminator.
//!
//! Answers are tidied before they are parsed, for the dialects real firmware sends: a
//! trailing NUL byte, `}{` with no comma between the objects of a list (bmminer's
//! `stats`), a stray comma before a closing brace or after an opening bracket
//! (btminer), and a bare `nan` or `inf` for a number (Avalon), read as absent. A
//! command the firmware refuses answers `STATUS: E`, which is an error here, with the
//! firmware's words.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::toolkit::error_chain::clipped;

/// Why a command got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("the connection failed: {0}")]
    Io(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is longer than {0} bytes")]
    TooLarge(usize),
    #[error("the answer is not JSON ({0})")]
    Json(String),
    #[error("the miner refused `{command}`: {message}")]
    Refused { command: String, message: String },
}

impl WireError {
    /// The miner could not be reached or said nothing: the connection failed, or no
    /// answer came within the timeout.
    pub(crate) fn unreachable(&self) -> bool {
        matches!(self, WireError::Connect(_) | WireError::Timeout(_))
    }

    /// The firmware does not know the command (cgminer's code 14, "Invalid command"),
    /// as against a refusal of the moment ("No pools" while it boots).
    pub(crate) fn unknown_command(&self) -> bool {
        matches!(self, WireError::Refused { message, .. } if message.contains("Invalid command"))
    }
}

/// Sends `command` (e.g. `summary`, or `summary+pools` where the firmware combines)
/// to `address` and returns its parsed answer, all within `timeout`.
pub(crate) async fn ask(
    address: &str,
    command: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Value, WireError> {
    exchange(address, command, timeout, max_bytes).await?.answer
}

/// What came back for a command: the bytes as they came (a recording keeps them),
/// and what they read as (a refusal and an unreadable answer are errors there).
pub(crate) struct Reply {
    pub(crate) raw: Vec<u8>,
    pub(crate) answer: Result<Value, WireError>,
}

/// [`ask`], keeping the bytes; an error when nothing came back.
pub(crate) async fn exchange(
    address: &str,
    command: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Reply, WireError> {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(WireError::Connect)?;
        let request = serde_json::json!({"command": command, "parameter": ""}).to_string();
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(WireError::Io)?;
        let mut raw = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        let mut ending = Ending::default();
        loop {
            let n = stream.read(&mut chunk).await.map_err(WireError::Io)?;
            if n == 0 {
                if raw.is_empty() {
                    return Err(WireError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the miner closed the connection without answering",
                    )));
                }
                let answer = parse(&raw);
                return Ok(Reply { raw, answer });
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > max_bytes {
                return Err(WireError::TooLarge(max_bytes));
            }
            // The NUL ends an answer; some firmwares keep the connection open after
            // it, or end with a newline instead.
            let closed = ending.follow(&chunk[..n]);
            match raw.last() {
                Some(0) => {
                    let answer = parse(&raw);
                    return Ok(Reply { raw, answer });
                }
                // Only where the answer could be whole: its outermost object closed.
                Some(b'\n') if closed && ending.may_parse() => {
                    if let Ok(value) = parse(&raw) {
                        return Ok(Reply {
                            raw,
                            answer: Ok(value),
                        });
                    }
                }
                _ => {}
            }
        }
    };
    let mut reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| WireError::Timeout(timeout))??;
    if let Ok(value) = &reply.answer {
        if let Err(refusal) = refused(command, value) {
            reply.answer = Err(refusal);
        }
    }
    Ok(reply)
}

/// Where an answer read so far stands: how deep in braces and brackets (outside
/// strings), and how many times it was parsed before its NUL or its end. A miner
/// dripping `}\n` a few bytes at a time would otherwise have the whole answer parsed
/// again after each read: 10 CPU-seconds in 15 s for one hostile miner.
#[derive(Default)]
struct Ending {
    depth: usize,
    strings: Strings,
    /// The outermost object or list closed, and only whitespace came after.
    closed: bool,
    parsed: u32,
}

/// Parses of an answer that ends in a newline without a NUL, at most: each is of the
/// whole answer (up to `max_answer_size`).
const MAX_PARSES: u32 = 4;

impl Ending {
    /// Follows `bytes`; whether the outermost object or list has closed, with nothing
    /// but whitespace after.
    fn follow(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.strings.inside(char::from(b)) {
                self.closed = false;
                continue;
            }
            match b {
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.closed = self.depth == 0;
                    continue;
                }
                _ => {}
            }
            self.closed &= b.is_ascii_whitespace() || b == 0;
        }
        self.closed
    }

    /// Whether another parse may be tried; counts it.
    fn may_parse(&mut self) -> bool {
        self.parsed += 1;
        self.parsed <= MAX_PARSES
    }
}

/// Whether an answer's text, followed a character at a time, is inside a string (its
/// quotes included, and what a backslash escapes): what is outside is JSON's own.
#[derive(Default)]
struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Follows `c`; whether it belongs to a string. (A byte of a multi-byte character
    /// passed as a `char` of its own is neither a quote nor a backslash.)
    fn inside(&mut self, c: char) -> bool {
        if !self.inside {
            self.inside = c == '"';
            return self.inside;
        }
        match (self.escaped, c) {
            (true, _) => self.escaped = false,
            (false, '\\') => self.escaped = true,
            (false, '"') => self.inside = false,
            _ => {}
        }
        true
    }
}

/// Parses an answer, mending the defects of real firmware (see the module's doc).
pub(crate) fn parse(answer: &[u8]) -> Result<Value, WireError> {
    let text = String::from_utf8_lossy(answer);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let tidy = without_bare_non_numbers(
        &text
            .replace("}{", "},{")
            .replace(",}", "}")
            .replace("[,{", "[{"),
    );
    serde_json::from_str(&tidy).map_err(|e| WireError::Json(e.to_string()))
}

/// `nan`, `-nan`, `inf`, `-Infinity`... outside strings become `null`. One pass: each
/// word outside strings is looked at once (a miner's answer of a million letters took
/// a core for good when each letter began a word of its own).
fn without_bare_non_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut strings = Strings::default();
    // The end of the word last copied: the chars before it are done.
    let mut done = 0;
    for (i, c) in text.char_indices() {
        if i < done {
            continue;
        }
        if strings.inside(c) {
            out.push(c);
            continue;
        }
        let start = i + usize::from(c == '-' || c == '+');
        let letters = text[start..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if letters == 0 {
            out.push(c);
            continue;
        }
        let word = &text[start..start + letters];
        if ["nan", "inf", "infinity"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
        {
            out.push_str("null");
        } else {
            out.push_str(&text[i..start + letters]);
        }
        done = start + letters;
    }
    out
}

/// A `STATUS: E` (error) answer. (A combined answer's parts each have their own
/// status: a part refused adds nothing, the others are read.)
fn refused(command: &str, answer: &Value) -> Result<(), WireError> {
    let Some(status) = answer
        .get("STATUS")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return Ok(());
    };
    if status.get("STATUS").and_then(Value::as_str) != Some("E") {
        return Ok(());
    }
    let message = clipped(
        status
            .get("Msg")
            .and_then(Value::as_str)
            .unwrap_or("no message"),
    )
    .into_owned();
    Err(WireError::Refused {
        command: command.to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_and_missing_commas_are_tolerated() {
        let answer = b"{\"STATUS\":[{\"STATUS\":\"S\"}],\"STATS\":[{\"Type\":\"S19j Pro\"}{\"GHS 5s\":\"104000.5\"}],\"id\":1}\0";
        let value = parse(answer).unwrap();
        assert_eq!(value["STATS"][1]["GHS 5s"], "104000.5");
        let mended = parse(b"{\"SUMMARY\":[{\"MHS av\":nan,\"MHS 5s\": -nan,\"T\":[NaN, 3, -Infinity],\"Msg\":\"nan inside\",\"Accepted\":3,}]}").unwrap();
        assert_eq!(
            mended["SUMMARY"][0]["MHS av"],
            Value::Null,
            "a bare nan is absent"
        );
        assert_eq!(mended["SUMMARY"][0]["MHS 5s"], Value::Null);
        assert_eq!(
            mended["SUMMARY"][0]["T"],
            serde_json::json!([null, 3, null])
        );
        assert_eq!(
            mended["SUMMARY"][0]["Msg"], "nan inside",
            "strings are left alone"
        );
        assert_eq!(mended["SUMMARY"][0]["Accepted"], 3);
        assert!(matches!(
            parse(b"{\"SUMMARY\":[").unwrap_err(),
            WireError::Json(_)
        ));
        assert!(matches!(parse(b"").unwrap_err(), WireError::Json(_)));
    }

    #[test]
    fn words_outside_strings_are_read_once() {
        // Each letter began a word of its own: a million letters took a core for good.
        let letters = "x".repeat(1_000_000);
        let answer = format!("{{\"STATUS\":[{{\"STATUS\":\"S\"}}],\"SUMMARY\":{letters}}}\0");
        let started = std::time::Instant::now();
        assert!(matches!(parse(answer.as_bytes()), Err(WireError::Json(_))));
        // Linear: milliseconds in a debug build; quadratic, hours.
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(
            without_bare_non_numbers("[true,-nanx,+Inf,-5,false,nan]"),
            "[true,-nanx,null,-5,false,null]"
        );
    }

    #[test]
    fn an_answer_is_whole_when_its_outermost_object_closes() {
        let mut ending = Ending::default();
        assert!(!ending.follow(b"{\"a\":[{\"b\":\"}\"}]"));
        assert!(!ending.follow(b""));
        assert!(ending.follow(b"}"));
        assert!(ending.follow(b" \n"), "whitespace after keeps it whole");
        assert!(!ending.follow(b"{"), "a second object opens");
        // A miner dripping `{}` again and again is parsed a few times, not each time.
        let mut ending = Ending::default();
        let parses = (0..100)
            .filter(|_| ending.follow(b"{}\n") && ending.may_parse())
            .count();
        assert_eq!(parses, MAX_PARSES as usize);
    }

    #[test]
    fn figures_are_read_to_the_last_bit() {
        // serde_json's default float parser may miss by one unit in the last place
        // (this text, for one); `float_roundtrip` reads what the firmware wrote.
        let text = "43.715180000000004";
        let answer = parse(format!("{{\"MHS 5s\":{text}}}").as_bytes()).unwrap();
        assert_eq!(answer["MHS 5s"].as_f64(), Some(text.parse().unwrap()));
    }

    #[test]
    fn an_error_status_is_a_refusal_with_the_firmwares_words() {
        let answer = parse(
            b"{\"STATUS\":[{\"STATUS\":\"E\",\"Code\":14,\"Msg\":\"Invalid command\"}],\"id\":1}",
        )
        .unwrap();
        let e = refused("estats", &answer).unwrap_err();
        assert_eq!(e.to_string(), "the miner refused `estats`: Invalid command");
        let combined = parse(b"{\"summary\":[{\"STATUS\":[{\"STATUS\":\"S\"}]}],\"pools\":[{\"STATUS\":[{\"STATUS\":\"E\",\"Msg\":\"No pools\"}]}]}").unwrap();
        assert!(
            refused("summary+pools", &combined).is_ok(),
            "a refused part of a combined answer is skipped, not the whole"
        );
    }
}
