//! The core: writing replies. Every reply of a connection is appended to
//! its reply buffer (its own memory, allocated at start-up), behind the
//! replies before it, so many pipelined requests leave in one send, in
//! order. Nothing here allocates.

// ANCHOR: reply
// ANCHOR: reply_types
/// The free end of a connection's reply buffer, and how much of it the
/// replies written so far have used.
pub(crate) struct Reply<'a> {
    free: &'a mut [u8],
    pub(crate) written: usize,
}

/// The reply did not fit: the request waits (unrun) until sends make room.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Room every request may take without asking: any reply but a bulk (an
/// error quotes at most 128 bytes of the command and 128 of its arguments,
/// as Redis's do). A bulk checks its own size first (`fits_bulk`).
pub(crate) const SMALL_REPLY: usize = 512;

impl<'a> Reply<'a> {
    pub(crate) fn new(free: &'a mut [u8]) -> Reply<'a> {
        Reply { free, written: 0 }
    }

    pub(crate) fn room(&self) -> usize {
        self.free.len() - self.written
    }

    /// Whether a bulk of `len` bytes fits, with its header and `\r\n`.
    pub(crate) fn fits_bulk(&self, len: usize) -> bool {
        len + 32 <= self.room()
    }

    /// Appends raw bytes; the caller has checked the room.
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        let end = self.written + bytes.len();
        self.free[self.written..end].copy_from_slice(bytes);
        self.written = end;
    }

    /// `+OK\r\n`, `+PONG\r\n`: a simple string.
    pub(crate) fn simple(&mut self, text: &[u8]) {
        self.raw(b"+");
        self.raw(text);
        self.raw(b"\r\n");
    }

    /// `-ERR ...\r\n`: an error, its text in pieces.
    pub(crate) fn error(&mut self, parts: &[&[u8]]) {
        self.raw(b"-");
        for part in parts {
            self.raw(part);
        }
        self.raw(b"\r\n");
    }

    /// `:42\r\n`
    pub(crate) fn integer(&mut self, n: i64) {
        self.raw(b":");
        self.decimal(n);
        self.raw(b"\r\n");
    }

    /// `$5\r\nhello\r\n`
    pub(crate) fn bulk(&mut self, bytes: &[u8]) {
        self.raw(b"$");
        self.decimal(bytes.len() as i64);
        self.raw(b"\r\n");
        self.raw(bytes);
        self.raw(b"\r\n");
    }

    /// `$-1\r\n`: RESP2's "no such key".
    pub(crate) fn null(&mut self) {
        self.raw(b"$-1\r\n");
    }

    /// `*N\r\n`: an array of N replies, which follow.
    pub(crate) fn array(&mut self, n: usize) {
        self.raw(b"*");
        self.decimal(n as i64);
        self.raw(b"\r\n");
    }

    /// A number in decimal, without allocating.
    pub(crate) fn decimal(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let text = format_decimal(n, &mut digits);
        self.raw(text);
    }
}
// ANCHOR_END: reply_types

/// Writes `n` in decimal into the end of `digits`, returning that part.
pub(crate) fn format_decimal(n: i64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    &digits[at..]
}
// ANCHOR_END: reply

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_resp2() {
        let mut memory = [0u8; 128];
        let mut reply = Reply::new(&mut memory);
        reply.simple(b"OK");
        reply.integer(-42);
        reply.bulk(b"hi");
        reply.null();
        reply.array(2);
        reply.error(&[b"ERR ", b"no"]);
        let n = reply.written;
        assert_eq!(
            &memory[..n],
            b"+OK\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n*2\r\n-ERR no\r\n"
        );
    }

    #[test]
    fn decimals_cover_the_whole_range() {
        let mut digits = [0u8; 20];
        for n in [0, 7, -7, 1234567890, i64::MAX, i64::MIN] {
            assert_eq!(format_decimal(n, &mut digits), n.to_string().as_bytes());
        }
    }
}
