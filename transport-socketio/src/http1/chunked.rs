//! The chunked transfer coding of a request body (RFC 9112 §7.1), decoded incrementally: feed
//! whatever bytes arrived, get the data out, until the last chunk and the trailer section are
//! read. Chunk extensions and trailer fields are read and dropped. Pure.

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 1024;

/// Why a chunked body is refused (answered 400, connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`seen`: at least one digit).
    Size { seen: bool },
    /// After the size: extensions up to CR LF.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk data still to come.
    Data(u64),
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// Start of a trailer line (an empty one ends the body).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// The LF ending a trailer line (`last`: the line was empty).
    TrailerLf { last: bool },
    /// The body is complete.
    Done,
}

/// An incremental decoder of one chunked body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// The size of the chunk being read.
    size: u64,
    /// Bytes of the current size or trailer line (bounded by `MAX_LINE`).
    line: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size { seen: false },
            size: 0,
            line: 0,
        }
    }
}

impl Decoder {
    /// Whether the whole body (last chunk and trailers) was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending data to `out`, and returns how many bytes of `input`
    /// were used; it stops at the body's end (what follows is the next request).
    ///
    /// # Errors
    /// When the bytes are not a valid chunked body.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok(i),
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::Size { .. } | State::Extension | State::Trailer => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(ChunkError("chunk line too long"));
                    }
                }
                _ => {}
            }
            self.state = match (self.state, b) {
                (State::Size { .. }, b) if b.is_ascii_hexdigit() => {
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or(ChunkError("chunk size too large"))?;
                    State::Size { seen: true }
                }
                (State::Size { seen: true }, b';' | b' ' | b'\t') => State::Extension,
                (State::Size { seen: true }, b'\r') => State::SizeLf,
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(ChunkError("bare LF in a chunk line")),
                (State::Extension, _) => State::Extension,
                (State::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(std::mem::take(&mut self.size))
                    }
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { seen: false },
                (State::TrailerStart, b'\r') => State::TrailerLf { last: true },
                (State::TrailerStart | State::Trailer, b'\n') => {
                    return Err(ChunkError("bare LF in a trailer"));
                }
                (State::Trailer, b'\r') => State::TrailerLf { last: false },
                (State::TrailerStart | State::Trailer, _) => State::Trailer,
                (State::TrailerLf { last }, b'\n') => {
                    self.line = 0;
                    if last {
                        i += 1;
                        self.state = State::Done;
                        return Ok(i);
                    }
                    State::TrailerStart
                }
                _ => return Err(ChunkError("malformed chunked body")),
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` fed in pieces of `step` bytes; the data and the bytes left over.
    fn decode(body: &[u8], step: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let mut at = 0;
        while at < body.len() && !d.is_done() {
            let end = (at + step).min(body.len());
            at += d.feed(&body[at..end], &mut out)?;
        }
        assert!(d.is_done(), "body not complete");
        Ok((out, body.len() - at))
    }

    #[test]
    fn chunks_decode_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(decode(body, step).unwrap(), (b"hello, world".to_vec(), 4));
        }
        assert_eq!(decode(b"0\r\n\r\n", 1).unwrap(), (vec![], 0));
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap().0.len(),
            10
        );
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\r\n0\r\nbad\n",
            b"-5\r\n",
            b"+5\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            let mut d = Decoder::default();
            assert!(d.feed(bad, &mut Vec::new()).is_err(), "{bad:?} accepted");
        }
        let mut d = Decoder::default();
        let long = format!("1;{}\r\n", "e".repeat(MAX_LINE));
        assert!(d.feed(long.as_bytes(), &mut Vec::new()).is_err());
    }
}
