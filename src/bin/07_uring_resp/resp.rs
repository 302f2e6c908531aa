//! The core, the protocol: where one request ends. An echo server never
//! asks that question; a RESP server asks it for every byte it receives.
//!
//! A request is either a *multibulk* (what every client library sends):
//!
//! ```text
//! *3\r\n  $3\r\n SET\r\n  $3\r\n key\r\n  $5\r\n hello\r\n
//! ^count  ^len   ^bytes   ^len   ^bytes   ^len   ^bytes
//! ```
//!
//! or an *inline* line, for a person at `nc`: `SET key hello\r\n`. `parse`
//! reads one request from the start of a slice and says how many bytes it
//! took, or that the slice holds only part of one (`Incomplete`), or that it
//! is malformed. It never copies: an argument is a span of the slice.

// ANCHOR: limits
/// The bounds on what a client may send, each checked before a byte of the
/// request is stored: nothing a client sends can make the server hold more.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Arguments in one request (Redis: 1,048,576 for a client that is not
    /// a replica). More is "invalid multibulk length".
    pub(crate) max_args: usize,
    /// Bytes in one request, all arguments together (Redis bounds each bulk
    /// by `proto-max-bulk-len`, 512 MB). A bulk that would pass it is
    /// "invalid bulk length". It is also the size of a connection's carry
    /// (`frame.rs`): a request always fits there.
    pub(crate) max_request: usize,
    /// Bytes of an inline line, or of a count line, before its newline
    /// (Redis: 64 KiB, `PROTO_INLINE_MAX_SIZE`). Less than `max_request`.
    pub(crate) max_inline: usize,
}

/// What is wrong with a request: the text after `-ERR Protocol error: `,
/// in Redis's words. The connection closes once the reply is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedDollar(u8),
    TooBigMbulkCount,
    TooBigBulkCount,
    TooBigInline,
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The message, in two pieces: `ExpectedDollar` names the byte it got.
    pub(crate) fn message(self) -> (&'static str, Option<u8>) {
        match self {
            ProtocolError::InvalidMultibulkLength => ("invalid multibulk length", None),
            ProtocolError::InvalidBulkLength => ("invalid bulk length", None),
            ProtocolError::ExpectedDollar(got) => ("expected '$', got '", Some(got)),
            ProtocolError::TooBigMbulkCount => ("too big mbulk count string", None),
            ProtocolError::TooBigBulkCount => ("too big bulk count string", None),
            ProtocolError::TooBigInline => ("too big inline request", None),
            ProtocolError::UnbalancedQuotes => ("unbalanced quotes in request", None),
        }
    }
}
// ANCHOR_END: limits

// ANCHOR: parse
// ANCHOR: multibulk
/// One step of parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole request of `used` bytes; its arguments are in `args`, as
    /// (start, end) offsets into the slice.
    Command(usize),
    /// `used` bytes that hold no request: an empty line, `*0` or `*-1`.
    /// Redis skips them without a reply, and so do we.
    Skip(usize),
    /// Only part of a request: wait for more bytes.
    Incomplete,
    Error(ProtocolError),
}

/// Reads one request from the start of `input`.
pub(crate) fn parse(input: &[u8], limits: &Limits, args: &mut Vec<(u32, u32)>) -> Parsed {
    args.clear();
    let parsed = match input.first() {
        None => Parsed::Incomplete,
        Some(b'*') => multibulk(input, limits, args),
        Some(_) => inline(input, limits, args),
    };
    // A request that is not whole yet must be shorter than the limit, so
    // that it always fits in the carry. The rules above see to that, but
    // for a count line that starts near the limit: that is a bulk too long.
    if parsed == Parsed::Incomplete && input.len() >= limits.max_request {
        return Parsed::Error(ProtocolError::InvalidBulkLength);
    }
    parsed
}

/// `*N\r\n` then N bulks `$LEN\r\nBYTES\r\n`.
fn multibulk(input: &[u8], limits: &Limits, args: &mut Vec<(u32, u32)>) -> Parsed {
    let (count, mut pos) = match number_line(input, 1, limits) {
        Line::Number(n, next) => (n, next),
        Line::Incomplete => return Parsed::Incomplete,
        Line::TooLong => return Parsed::Error(ProtocolError::TooBigMbulkCount),
        Line::NotANumber => return Parsed::Error(ProtocolError::InvalidMultibulkLength),
    };
    if count <= 0 {
        return Parsed::Skip(pos);
    }
    if count as usize > limits.max_args {
        return Parsed::Error(ProtocolError::InvalidMultibulkLength);
    }
    for _ in 0..count {
        match input.get(pos) {
            None => return Parsed::Incomplete,
            Some(b'$') => {}
            Some(&other) => return Parsed::Error(ProtocolError::ExpectedDollar(other)),
        }
        let (len, start) = match number_line(&input[pos..], 1, limits) {
            Line::Number(n, next) => (n, pos + next),
            Line::Incomplete => return Parsed::Incomplete,
            Line::TooLong => return Parsed::Error(ProtocolError::TooBigBulkCount),
            Line::NotANumber => return Parsed::Error(ProtocolError::InvalidBulkLength),
        };
        // The bytes, then two more (the `\r\n`, which Redis does not check
        // either): all of it inside the request's limit.
        if len < 0 {
            return Parsed::Error(ProtocolError::InvalidBulkLength);
        }
        let end = start as u64 + len as u64;
        if end + 2 > limits.max_request as u64 {
            return Parsed::Error(ProtocolError::InvalidBulkLength);
        }
        let end = end as usize;
        if input.len() < end + 2 {
            return Parsed::Incomplete;
        }
        args.push((start as u32, end as u32));
        pos = end + 2;
    }
    Parsed::Command(pos)
}
// ANCHOR_END: multibulk

// ANCHOR: number_line
enum Line {
    /// The number, and where the next line starts.
    Number(i64, usize),
    Incomplete,
    TooLong,
    NotANumber,
}

/// A decimal number from `from` to a `\r`, which must be followed by one
/// more byte (the `\n`), as Redis reads count lines.
fn number_line(input: &[u8], from: usize, limits: &Limits) -> Line {
    let Some(cr) = input.iter().position(|&b| b == b'\r') else {
        return if input.len() > limits.max_inline {
            Line::TooLong
        } else {
            Line::Incomplete
        };
    };
    if cr > limits.max_inline {
        return Line::TooLong;
    }
    if cr + 1 >= input.len() {
        return Line::Incomplete; // the `\n` is not here yet
    }
    match decimal(&input[from..cr]) {
        Some(n) => Line::Number(n, cr + 2),
        None => Line::NotANumber,
    }
}
// ANCHOR_END: number_line

/// A whole decimal i64 with an optional `-`, nothing else (no `+`, no
/// spaces, no leading zeros but "0"), as Redis's `string2ll` accepts.
pub(crate) fn decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && text.len() > 1) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}
// ANCHOR_END: parse

// ANCHOR: inline
/// A line of words up to `\n` (a `\r` before it is dropped): what a person
/// types at `nc` or `telnet`. Words are split on spaces and tabs; a word may
/// be quoted, with `"` or `'`, to hold spaces. Escapes inside quotes
/// (Redis reads `\n`, `\x41`, ...) are not decoded: an argument is a span
/// of the input, never a copy.
fn inline(input: &[u8], limits: &Limits, args: &mut Vec<(u32, u32)>) -> Parsed {
    let Some(newline) = input.iter().position(|&b| b == b'\n') else {
        return if input.len() > limits.max_inline {
            Parsed::Error(ProtocolError::TooBigInline)
        } else {
            Parsed::Incomplete
        };
    };
    if newline > limits.max_inline {
        return Parsed::Error(ProtocolError::TooBigInline);
    }
    let mut end = newline;
    if end > 0 && input[end - 1] == b'\r' {
        end -= 1;
    }
    let line = &input[..end];
    let mut pos = 0;
    while pos < line.len() {
        if line[pos] == b' ' || line[pos] == b'\t' {
            pos += 1;
            continue;
        }
        let (start, stop, next) = match line[pos] {
            quote @ (b'"' | b'\'') => {
                let Some(close) = line[pos + 1..].iter().position(|&b| b == quote) else {
                    return Parsed::Error(ProtocolError::UnbalancedQuotes);
                };
                let close = pos + 1 + close;
                // Redis: "closing quote must be followed by a space or
                // nothing at all".
                if line
                    .get(close + 1)
                    .is_some_and(|&b| b != b' ' && b != b'\t')
                {
                    return Parsed::Error(ProtocolError::UnbalancedQuotes);
                }
                (pos + 1, close, close + 1)
            }
            _ => {
                let stop = line[pos..]
                    .iter()
                    .position(|&b| b == b' ' || b == b'\t')
                    .map_or(line.len(), |n| pos + n);
                (pos, stop, stop)
            }
        };
        if args.len() == limits.max_args {
            return Parsed::Error(ProtocolError::InvalidMultibulkLength);
        }
        args.push((start as u32, stop as u32));
        pos = next;
    }
    if args.is_empty() {
        Parsed::Skip(newline + 1)
    } else {
        Parsed::Command(newline + 1)
    }
}
// ANCHOR_END: inline

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LIMITS: Limits = Limits {
        max_args: 64,
        max_request: 4096,
        max_inline: 1024,
    };

    fn words(input: &[u8]) -> Result<(Vec<Vec<u8>>, usize), Parsed> {
        let mut args = Vec::new();
        match parse(input, &LIMITS, &mut args) {
            Parsed::Command(used) => Ok((
                args.iter()
                    .map(|&(s, e)| input[s as usize..e as usize].to_vec())
                    .collect(),
                used,
            )),
            other => Err(other),
        }
    }

    #[test]
    fn a_multibulk_and_an_inline_request() {
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nhello\r\nGET";
        let (args, used) = words(input).unwrap();
        assert_eq!(args, [&b"SET"[..], b"key", b"hello"]);
        assert_eq!(used, input.len() - 3);
        let (args, used) = words(b"set  k \"a b\"\r\nnext").unwrap();
        assert_eq!(args, [&b"set"[..], b"k", b"a b"]);
        assert_eq!(used, 14);
        assert_eq!(words(b"PING\n").unwrap().0, [b"PING"]);
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let input = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n";
        for cut in 0..input.len() {
            assert_eq!(words(&input[..cut]), Err(Parsed::Incomplete), "{cut}");
        }
        assert!(words(input).is_ok());
    }

    #[test]
    fn empty_requests_are_skipped() {
        let mut args = Vec::new();
        assert_eq!(parse(b"\r\n", &LIMITS, &mut args), Parsed::Skip(2));
        assert_eq!(parse(b"*0\r\n", &LIMITS, &mut args), Parsed::Skip(4));
        assert_eq!(parse(b"*-1\r\n", &LIMITS, &mut args), Parsed::Skip(5));
        assert_eq!(parse(b"   \n", &LIMITS, &mut args), Parsed::Skip(4));
    }

    #[test]
    fn malformed_requests_get_redis_errors() {
        use ProtocolError::*;
        let mut args = Vec::new();
        let big = vec![b'a'; 2000];
        let mut big_count = b"*".to_vec();
        big_count.extend(vec![b'1'; 2000]);
        for (input, error) in [
            (&b"*x\r\n"[..], InvalidMultibulkLength),
            (b"*65\r\n", InvalidMultibulkLength),
            (b"*1\r\nx", ExpectedDollar(b'x')),
            (b"*1\r\n$-1\r\n", InvalidBulkLength),
            (b"*1\r\n$x\r\n", InvalidBulkLength),
            (b"*1\r\n$5000\r\n", InvalidBulkLength),
            (b"*1\r\n$99999999999999999999\r\n", InvalidBulkLength),
            (b"set \"a\r\n", UnbalancedQuotes),
            (b"set \"a\"b\r\n", UnbalancedQuotes),
            (&big, TooBigInline),
            (&big_count, TooBigMbulkCount),
        ] {
            assert_eq!(
                parse(input, &LIMITS, &mut args),
                Parsed::Error(error),
                "{:?}",
                String::from_utf8_lossy(&input[..input.len().min(40)])
            );
        }
    }

    #[test]
    fn decimal_is_strict() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"-12"), Some(-12));
        assert_eq!(decimal(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(decimal(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
