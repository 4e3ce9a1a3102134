//! The condition language of `filter`: comparisons of sample fields and labels,
//! joined with `and`, `or`, `not` and parentheses.
//!
//! ```text
//! condition  := and_expr ("or" and_expr)*
//! and_expr   := unary ("and" unary)*
//! unary      := "not" unary | "(" condition ")" | comparison
//! comparison := field ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
//!             | field ["not"] "in" "[" literal ("," literal)* "]"
//! ```
//!
//! Fields are the sample's columns; any other name is a label. A comparison with a
//! value the sample does not have is false.
//!
//! A condition is parsed and evaluated by recursion, so its size is bounded: at most
//! [`MAX_LENGTH`] characters, [`MAX_TERMS`] comparisons, and [`MAX_DEPTH`] levels of
//! parentheses and `not`. Longer conditions are refused at validate time (20,000
//! `or`s once overflowed the stack).

use std::fmt;

use crate::toolkit::sample::{
    number_field, text_field, NumberField, Sample, TextField, FIXED_COLUMNS,
};

/// The longest condition, in characters.
pub(crate) const MAX_LENGTH: usize = 16_384;
/// The most comparisons one condition may join.
pub(crate) const MAX_TERMS: usize = 256;
/// The deepest nesting of parentheses and `not`.
pub(crate) const MAX_DEPTH: usize = 32;

#[derive(Clone)]
pub(crate) enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Number {
        field: NumberField,
        op: Op,
        value: f64,
    },
    Text {
        field: Text,
        op: Op,
        value: String,
    },
    In {
        field: Text,
        values: Vec<String>,
    },
}

/// A text operand: a fixed column or a label.
#[derive(Clone)]
pub(crate) enum Text {
    Column(TextField),
    Label(String),
}

impl Text {
    fn get<'a>(&'a self, sample: &'a Sample) -> Option<&'a str> {
        match self {
            Text::Column(field) => field(sample),
            Text::Label(name) => sample.labels.get(name).map(String::as_str),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds<T: PartialOrd + ?Sized>(self, left: &T, right: &T) -> bool {
        match self {
            Op::Eq => left == right,
            Op::Ne => left != right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Condition(..)")
    }
}

impl Condition {
    pub(crate) fn matches(&self, sample: &Sample) -> bool {
        match self {
            Condition::And(a, b) => a.matches(sample) && b.matches(sample),
            Condition::Or(a, b) => a.matches(sample) || b.matches(sample),
            Condition::Not(c) => !c.matches(sample),
            Condition::Number { field, op, value } => {
                field(sample).is_some_and(|v| op.holds(&v, value))
            }
            Condition::Text { field, op, value } => field
                .get(sample)
                .is_some_and(|v| op.holds(v, value.as_str())),
            Condition::In { field, values } => field
                .get(sample)
                .is_some_and(|v| values.iter().any(|x| x == v)),
        }
    }
}

/// What is wrong with a condition, and where in it (1-based character).
#[derive(Debug, PartialEq)]
pub(crate) struct ParseError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in the condition at character {}: {}",
            self.at, self.message
        )
    }
}

impl std::str::FromStr for Condition {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let length = text.chars().count();
        if length > MAX_LENGTH {
            return Err(ParseError {
                at: MAX_LENGTH + 1,
                message: format!("the condition is {length} characters long; at most {MAX_LENGTH} are allowed. Split it into several filters"),
            });
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            end: length + 1,
            depth: 0,
            terms: 0,
        };
        let condition = parser.or()?;
        match parser.peek() {
            None => Ok(condition),
            Some((at, token)) => Err(ParseError {
                at,
                message: format!("unexpected {token}; join conditions with `and` or `or`"),
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Number(f64),
    Str(String),
    Op(Op),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "`{w}`"),
            Token::Number(n) => write!(f, "number {n}"),
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Op(op) => write!(f, "operator {op:?}"),
            Token::Open => f.write_str("`(`"),
            Token::Close => f.write_str("`)`"),
            Token::OpenList => f.write_str("`[`"),
            Token::CloseList => f.write_str("`]`"),
            Token::Comma => f.write_str("`,`"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (token, len) = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            '[' => (Token::OpenList, 1),
            ']' => (Token::CloseList, 1),
            ',' => (Token::Comma, 1),
            _ if two == "==" => (Token::Op(Op::Eq), 2),
            _ if two == "!=" => (Token::Op(Op::Ne), 2),
            _ if two == "<=" => (Token::Op(Op::Le), 2),
            _ if two == ">=" => (Token::Op(Op::Ge), 2),
            '<' => (Token::Op(Op::Lt), 1),
            '>' => (Token::Op(Op::Gt), 1),
            '=' => {
                return Err(ParseError {
                    at,
                    message: "`=` is not an operator; compare with `==`".into(),
                })
            }
            '"' | '\'' => {
                let end =
                    chars[i + 1..]
                        .iter()
                        .position(|x| *x == c)
                        .ok_or_else(|| ParseError {
                            at,
                            message: format!("unclosed string; end it with {c}"),
                        })?;
                let value: String = chars[i + 1..i + 1 + end].iter().collect();
                (Token::Str(value), end + 2)
            }
            _ if c.is_ascii_digit() || c == '-' || c == '.' => {
                let len = chars[i..]
                    .iter()
                    .position(|x| {
                        !(x.is_ascii_alphanumeric() || matches!(x, '.' | '-' | '+' | '_'))
                    })
                    .unwrap_or(chars.len() - i);
                let word: String = chars[i..i + len].iter().collect();
                let number = word.parse().map_err(|_| ParseError {
                    at,
                    message: format!("`{word}` is not a number"),
                })?;
                (Token::Number(number), len)
            }
            _ if c.is_alphanumeric() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .position(|x| !(x.is_alphanumeric() || *x == '_' || *x == '.'))
                    .unwrap_or(chars.len() - i);
                (Token::Word(chars[i..i + len].iter().collect()), len)
            }
            _ => {
                return Err(ParseError {
                    at,
                    message: format!("unexpected `{c}`"),
                })
            }
        };
        tokens.push((at, token));
        i += len;
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    /// Parentheses and `not`s open around the current position.
    depth: usize,
    /// Comparisons read so far.
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<(usize, &Token)> {
        self.tokens.get(self.pos).map(|(at, t)| (*at, t))
    }

    fn next(&mut self, expected: &str) -> Result<(usize, Token), ParseError> {
        let token = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or_else(|| ParseError {
                at: self.end,
                message: format!("the condition ends early; expected {expected}"),
            })?;
        self.pos += 1;
        Ok(token)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some((_, Token::Word(w))) if w == word);
        if found {
            self.pos += 1;
        }
        found
    }

    fn or(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, ParseError> {
        let at = self.peek().map_or(self.end, |(at, _)| at);
        if self.keyword("not") {
            self.deeper(at)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        if matches!(self.peek(), Some((_, Token::Open))) {
            self.pos += 1;
            self.deeper(at)?;
            let inner = self.or()?;
            self.depth -= 1;
            match self.next("`)`")? {
                (_, Token::Close) => return Ok(inner),
                (at, other) => {
                    return Err(ParseError {
                        at,
                        message: format!("expected `)`, found {other}"),
                    })
                }
            }
        }
        self.comparison()
    }

    /// One more level of parentheses or `not`, within [`MAX_DEPTH`].
    fn deeper(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                at,
                message: format!("parentheses and `not` nest deeper than {MAX_DEPTH} levels here; simplify the condition"),
            });
        }
        Ok(())
    }

    fn comparison(&mut self) -> Result<Condition, ParseError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            let at = self.peek().map_or(self.end, |(at, _)| at);
            return Err(ParseError {
                at,
                message: format!("the condition joins more than {MAX_TERMS} comparisons; use `in [...]` for a list of values, or split it into several filters"),
            });
        }
        let (at, name) = match self.next("a field name")? {
            (at, Token::Word(name)) => (at, name),
            (at, other) => {
                return Err(ParseError {
                    at,
                    message: format!("expected a field name, found {other}"),
                })
            }
        };
        let operand = operand(at, &name)?;
        let negated = self.keyword("not");
        if negated || self.keyword("in") {
            if negated && !self.keyword("in") {
                return Err(ParseError {
                    at,
                    message: format!("expected `in` after `{name} not`"),
                });
            }
            let Operand::Text(field) = operand else {
                return Err(ParseError {
                    at,
                    message: format!(
                        "`in` compares text, and `{name}` is a number; use `<`, `>`, `==`"
                    ),
                });
            };
            let values = self.list()?;
            let condition = Condition::In { field, values };
            return Ok(if negated {
                Condition::Not(Box::new(condition))
            } else {
                condition
            });
        }
        let op = match self.next("an operator such as `==` or `<`")? {
            (_, Token::Op(op)) => op,
            (at, other) => {
                return Err(ParseError {
                    at,
                    message: format!(
                        "expected an operator (== != < <= > >= in) after `{name}`, found {other}"
                    ),
                })
            }
        };
        match (operand, self.next("a value")?) {
            (Operand::Number(field), (_, Token::Number(value))) => {
                Ok(Condition::Number { field, op, value })
            }
            (Operand::Text(field), (_, Token::Str(value) | Token::Word(value))) => {
                Ok(Condition::Text { field, op, value })
            }
            (Operand::Number(_), (at, other)) => Err(ParseError {
                at,
                message: format!("`{name}` is a number; compare it with a number, not {other}"),
            }),
            (Operand::Text(_), (at, other)) => Err(ParseError {
                at,
                message: format!("`{name}` is text; compare it with a quoted string, not {other}"),
            }),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, ParseError> {
        match self.next("`[`")? {
            (_, Token::OpenList) => {}
            (at, other) => {
                return Err(ParseError {
                    at,
                    message: format!("expected a list such as `[\"a\", \"b\"]`, found {other}"),
                })
            }
        }
        let mut values = Vec::new();
        loop {
            match self.next("a value or `]`")? {
                (_, Token::Str(v) | Token::Word(v)) => values.push(v),
                (_, Token::CloseList) if values.is_empty() => return Ok(values),
                (at, other) => {
                    return Err(ParseError {
                        at,
                        message: format!("expected a quoted string in the list, found {other}"),
                    })
                }
            }
            match self.next("`,` or `]`")? {
                (_, Token::Comma) => {}
                (_, Token::CloseList) => return Ok(values),
                (at, other) => {
                    return Err(ParseError {
                        at,
                        message: format!("expected `,` or `]`, found {other}"),
                    })
                }
            }
        }
    }
}

enum Operand {
    Number(NumberField),
    Text(Text),
}

/// Resolves a name to a column, or to a label when it is no column's near miss.
fn operand(at: usize, name: &str) -> Result<Operand, ParseError> {
    if let Some(field) = number_field(name) {
        return Ok(Operand::Number(field));
    }
    if let Some(field) = text_field(name) {
        return Ok(Operand::Text(Text::Column(field)));
    }
    if name == "timestamp" {
        return Err(ParseError {
            at,
            message: "conditions cannot compare `timestamp`".into(),
        });
    }
    // Labels such as `site` sit close to columns such as `state`, so only a column's
    // prefix (`hashrate`) or a one-letter slip (`kid`) counts as a typo.
    let typo_of = FIXED_COLUMNS
        .iter()
        .find(|c| c.starts_with(name) || strsim::damerau_levenshtein(name, c) <= 1);
    if let Some(column) = typo_of {
        return Err(ParseError {
            at,
            message: format!(
                "unknown field `{name}`; did you mean `{column}`? (any other name is a label)"
            ),
        });
    }
    Ok(Operand::Text(Text::Label(name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::sample::SampleKind;
    use std::sync::Arc;

    fn sample(kind: SampleKind, hashrate: Option<f64>, site: &str) -> Sample {
        let labels = Arc::new([("site".to_string(), site.to_string())].into());
        let mut s = Sample::new(kind, "m-1".into(), labels);
        s.hashrate_ths = hashrate;
        s
    }

    fn holds(condition: &str, s: &Sample) -> bool {
        match condition.parse::<Condition>() {
            Ok(c) => c.matches(s),
            Err(e) => panic!("{condition}: {e}"),
        }
    }

    #[test]
    fn comparisons_labels_and_logic() {
        let slow = sample(SampleKind::Miner, Some(40.0), "north");
        let fast = sample(SampleKind::Miner, Some(240.0), "south");
        let board = sample(SampleKind::Board, Some(40.0), "north");
        let c = r#"kind == "miner" and hashrate_ths < 50"#;
        assert!(holds(c, &slow));
        assert!(!holds(c, &fast));
        assert!(!holds(c, &board));
        assert!(holds("site in ['north', 'east']", &slow));
        assert!(!holds("site in ['north', 'east']", &fast));
        assert!(holds("site not in [north]", &fast));
        assert!(holds("not (hashrate_ths >= 100) or site == south", &fast));
        // `and` binds tighter than `or`.
        assert!(holds(
            "hashrate_ths >= 100 or site == north and kind == board",
            &board
        ));
    }

    #[test]
    fn absent_values_never_match() {
        let unknown = sample(SampleKind::Miner, None, "north");
        assert!(!holds("hashrate_ths < 50", &unknown));
        assert!(!holds("hashrate_ths >= 50", &unknown));
        assert!(!holds("rack == r1", &unknown));
        assert!(holds("not (rack == r1)", &unknown));
    }

    #[test]
    fn errors_say_where_and_what() {
        let err = |c: &str| c.parse::<Condition>().unwrap_err();
        assert_eq!(
            err("hashrate_th < 5").message,
            "unknown field `hashrate_th`; did you mean `hashrate_ths`? (any other name is a label)"
        );
        assert_eq!(err("kind = miner").at, 6);
        assert!(err("hashrate_ths < fast").message.contains("is a number"));
        assert!(err("kind == 'miner").message.contains("unclosed string"));
        assert!(err("kind == miner and").message.contains("ends early"));
        assert!(err("kind == miner site == x")
            .message
            .contains("join conditions"));
        assert!(err("power_w in [1]").message.contains("is a number"));
    }

    #[test]
    fn conditions_too_long_or_too_deep_are_refused_not_a_stack_overflow() {
        let terms = |n: usize| vec!["hashrate_ths > 1"; n].join(" or ");
        let s = sample(SampleKind::Miner, Some(2.0), "a");
        assert!(holds(&terms(MAX_TERMS), &s), "the limit itself is allowed");
        let e = terms(20_000).parse::<Condition>().unwrap_err();
        assert!(e.message.contains("characters long"), "{e}");
        let e = terms(MAX_TERMS + 1).parse::<Condition>().unwrap_err();
        assert!(e.message.contains("more than 256 comparisons"), "{e}");

        let nested = |n: usize| format!("{}kind == \"miner\"{}", "(".repeat(n), ")".repeat(n));
        assert!(holds(&nested(MAX_DEPTH), &s));
        let e = nested(20_000).parse::<Condition>().unwrap_err();
        assert!(e.message.contains("characters long"), "{e}");
        let e = nested(MAX_DEPTH + 1).parse::<Condition>().unwrap_err();
        assert!(e.message.contains("deeper than 32 levels"), "{e}");
        assert_eq!(e.at, MAX_DEPTH + 1);
        let nots = format!("{}kind == \"miner\"", "not ".repeat(MAX_DEPTH + 1));
        let e = nots.parse::<Condition>().unwrap_err();
        assert!(e.message.contains("deeper than 32 levels"), "{e}");
        let e = "not ".repeat(50_000).parse::<Condition>().unwrap_err();
        assert!(e.message.contains("characters long"), "{e}");
    }
}
