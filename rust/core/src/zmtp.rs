//! The subset of ZMTP 3.0 (ZeroMQ's wire protocol, RFC 23) that a SUB socket connecting to a
//! PUB socket with the NULL mechanism needs, and its mirror for a PUB socket (benchmarks).
//!
//! A connection starts with a 64-byte greeting from each side, then one READY command each
//! (`Socket-Type` property), then the SUB sends its subscription as a message whose body is
//! `0x01` + prefix (the empty prefix: every message). Afterwards the PUB sends messages as
//! frames: a flags byte (`MORE` 0x01, `LONG` 0x02, `COMMAND` 0x04), the body size (one byte, or
//! eight big-endian bytes when `LONG`) and the body. We announce version 3.0, so a 3.1 peer
//! (libzmq 4.2+) speaks 3.0 with us and accepts the message-style subscription.
//!
//! [`MessageReader`] turns received bytes into FPM transport messages
//! (`[topic, 8-byte big-endian sequence, payload]`) without copying payloads; frames larger than
//! the payload limit are skipped as they arrive, never buffered.

/// Frame flag: more frames of this message follow.
pub const FLAG_MORE: u8 = 0x01;
/// Frame flag: the size field is 8 bytes.
pub const FLAG_LONG: u8 = 0x02;
/// Frame flag: a command frame, not part of a message.
pub const FLAG_COMMAND: u8 = 0x04;
/// Length of a greeting.
pub const GREETING_LEN: usize = 64;

/// Our greeting: signature, version 3.0, mechanism NULL, as-server 0, filler.
pub fn greeting(as_server: bool) -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = u8::from(as_server);
    g
}

/// Why a peer's greeting or handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a ZMTP 3.x greeting (signature or version).
    NotZmtp3,
    /// A security mechanism other than NULL.
    Mechanism,
    /// The peer sent an ERROR command or something other than READY.
    Refused,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HandshakeError::NotZmtp3 => "peer is not a ZMTP 3 endpoint",
            HandshakeError::Mechanism => "peer wants a security mechanism other than NULL",
            HandshakeError::Refused => "peer refused the handshake",
        })
    }
}

/// Check a peer's greeting.
pub fn check_greeting(g: &[u8; GREETING_LEN]) -> Result<(), HandshakeError> {
    if g[0] != 0xff || g[9] != 0x7f || g[10] < 3 {
        return Err(HandshakeError::NotZmtp3);
    }
    if &g[12..16] != b"NULL" || g[16..32].iter().any(|&b| b != 0) {
        return Err(HandshakeError::Mechanism);
    }
    Ok(())
}

/// Append one frame (short or long form) to `out`.
pub fn put_frame(out: &mut Vec<u8>, flags: u8, body: &[u8]) {
    if body.len() <= 255 {
        out.push(flags & !FLAG_LONG);
        out.push(body.len() as u8);
    } else {
        out.push(flags | FLAG_LONG);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    }
    out.extend_from_slice(body);
}

/// A READY command announcing `socket_type` ("SUB" or "PUB").
pub fn ready(socket_type: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.push(5);
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 9);
    put_frame(&mut out, FLAG_COMMAND, &body);
    out
}

/// What a SUB sends once the peer's greeting has arrived: READY, then subscribe-to-all. (Sent
/// together with our greeting, libzmq 4.3 drops the connection: it reads the greeting in stages
/// and must not find the READY in the same read.)
pub fn sub_ready_and_subscribe() -> Vec<u8> {
    let mut out = ready("SUB");
    put_frame(&mut out, 0, &[0x01]);
    out
}

/// Whether a command body is READY (else ERROR or unknown: the handshake failed).
pub fn is_ready(command_body: &[u8]) -> bool {
    command_body.first() == Some(&5) && command_body.get(1..6) == Some(b"READY")
}

/// Append one FPM transport message `[topic, seq, payload]` as three frames.
pub fn put_fpm_message(out: &mut Vec<u8>, topic: &[u8], seq: u64, payload: &[u8]) {
    put_frame(out, FLAG_MORE, topic);
    put_frame(out, FLAG_MORE, &seq.to_be_bytes());
    put_frame(out, 0, payload);
}

/// One complete message as [`MessageReader`] classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `[topic, 8-byte sequence, payload]`: the payload is `buf[start..end]` of the reader.
    Fpm { seq: u64, start: usize, end: usize },
    /// Not three frames, or the sequence is not 8 bytes.
    BadFrames,
    /// Well framed, but the payload is larger than the limit (its bytes were skipped).
    Oversized,
}

/// Where the reader is inside the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's greeting.
    Greeting,
    /// Greeting seen; waiting for the peer's READY.
    Handshake,
    /// Reading messages.
    Messages,
}

/// Incremental parser of one connection's received bytes.
///
/// Feed bytes with [`MessageReader::spare`] + [`MessageReader::filled`], then call
/// [`MessageReader::next`] until it returns `Ok(None)`; payload ranges stay valid until the next
/// `spare` call (which compacts the buffer).
#[derive(Debug)]
pub struct MessageReader {
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    state: State,
    max_payload: usize,
    // message under assembly
    frames: usize,
    seq: Option<u64>,
    skipping: u64,
    skipped_payload: bool,
    skipped_more: bool,
}

impl MessageReader {
    /// A reader accepting payloads of at most `max_payload` bytes, reading up to `chunk` bytes
    /// at a time.
    pub fn new(max_payload: usize, chunk: usize) -> Self {
        MessageReader {
            buf: vec![0; chunk.max(max_payload + 64).max(GREETING_LEN)],
            len: 0,
            pos: 0,
            state: State::Greeting,
            max_payload,
            frames: 0,
            seq: None,
            skipping: 0,
            skipped_payload: false,
            skipped_more: false,
        }
    }

    /// True once the peer's greeting was accepted.
    pub fn greeted(&self) -> bool {
        self.state != State::Greeting
    }

    /// True once the peer's greeting and READY were accepted.
    pub fn ready(&self) -> bool {
        self.state == State::Messages
    }

    /// Free space to read into (compacting consumed bytes first).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        &mut self.buf[self.len..]
    }

    /// `n` bytes were read into [`MessageReader::spare`].
    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// The receive buffer (payload ranges of [`Message::Fpm`] index into it).
    pub fn buffer(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn avail(&self) -> usize {
        self.len - self.pos
    }

    /// The next complete message, `Ok(None)` when more bytes are needed, or the handshake error
    /// that ends the connection.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, HandshakeError> {
        loop {
            if self.state == State::Greeting {
                if self.avail() < GREETING_LEN {
                    return Ok(None);
                }
                let mut g = [0u8; GREETING_LEN];
                g.copy_from_slice(&self.buf[self.pos..self.pos + GREETING_LEN]);
                check_greeting(&g)?;
                self.pos += GREETING_LEN;
                self.state = State::Handshake;
                continue;
            }
            if self.skipping > 0 {
                let n = (self.skipping).min(self.avail() as u64) as usize;
                self.pos += n;
                self.skipping -= n as u64;
                if self.skipping > 0 {
                    return Ok(None);
                }
                if !self.skipped_more {
                    return Ok(Some(self.finish_skipped()));
                }
                continue;
            }
            // frame header
            if self.pos >= self.len {
                return Ok(None);
            }
            let flags = self.buf[self.pos];
            let (size, header) = if flags & FLAG_LONG != 0 {
                if self.avail() < 9 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[self.pos + 1..self.pos + 9]);
                (u64::from_be_bytes(b), 9)
            } else {
                if self.avail() < 2 {
                    return Ok(None);
                }
                (u64::from(self.buf[self.pos + 1]), 2)
            };
            let more = flags & FLAG_MORE != 0;
            let command = flags & FLAG_COMMAND != 0;
            let limit = (self.max_payload + 64) as u64;
            if size > limit {
                // too big to buffer: skip the body as it arrives
                self.pos += header;
                self.skipping = size;
                if command || self.state != State::Messages {
                    return Err(HandshakeError::Refused);
                }
                self.frames += 1;
                self.skipped_payload |= self.frames == 3;
                self.skipped_more = more;
                continue;
            }
            let size = size as usize;
            if self.avail() < header + size {
                return Ok(None);
            }
            let start = self.pos + header;
            let end = start + size;
            self.pos = end;
            if command {
                if self.state == State::Handshake {
                    if !is_ready(&self.buf[start..end]) {
                        return Err(HandshakeError::Refused);
                    }
                    self.state = State::Messages;
                }
                continue; // PING and other commands after the handshake are ignored
            }
            if self.state != State::Messages {
                return Err(HandshakeError::Refused);
            }
            self.frames += 1;
            if self.frames == 2 {
                self.seq = (size == 8).then(|| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[start..end]);
                    u64::from_be_bytes(b)
                });
            }
            if more {
                continue;
            }
            let frames = std::mem::take(&mut self.frames);
            let seq = self.seq.take();
            let skipped = std::mem::take(&mut self.skipped_payload);
            return Ok(Some(match (frames, seq) {
                (3, Some(_)) if skipped || size > self.max_payload => Message::Oversized,
                (3, Some(seq)) => Message::Fpm { seq, start, end },
                _ => Message::BadFrames,
            }));
        }
    }

    fn finish_skipped(&mut self) -> Message {
        let frames = std::mem::take(&mut self.frames);
        let seq = self.seq.take();
        let skipped = std::mem::take(&mut self.skipped_payload);
        if frames == 3 && seq.is_some() && skipped {
            Message::Oversized
        } else {
            Message::BadFrames
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_prelude(socket_type: &str) -> Vec<u8> {
        let mut out = greeting(true).to_vec();
        out.extend_from_slice(&ready(socket_type));
        out
    }

    fn feed(r: &mut MessageReader, bytes: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(7) {
            let spare = r.spare();
            spare[..chunk.len()].copy_from_slice(chunk);
            r.filled(chunk.len());
            while let Some(m) = r.next().expect("valid stream") {
                if let Message::Fpm { seq, start, end } = m {
                    out.push(Message::Fpm {
                        seq,
                        start: r.buffer()[start..end].len(),
                        end: usize::from(r.buffer()[start]),
                    });
                } else {
                    out.push(m);
                }
            }
        }
        out
    }

    #[test]
    fn messages_are_classified_across_any_split() {
        let mut stream = peer_prelude("PUB");
        put_fpm_message(&mut stream, b"t", 7, &[9u8; 300]);
        put_frame(&mut stream, 0, b"only one frame");
        put_frame(&mut stream, FLAG_MORE, b"t");
        put_frame(&mut stream, 0, &[0; 8]);
        put_frame(&mut stream, FLAG_MORE, b"t");
        put_frame(&mut stream, FLAG_MORE, &[0; 7]);
        put_frame(&mut stream, 0, b"x");
        put_fpm_message(&mut stream, b"t", 8, &[5u8; 2000]); // over the 1000-byte limit
        put_frame(&mut stream, FLAG_MORE, b"t");
        put_frame(&mut stream, FLAG_MORE, &[0; 8]);
        put_frame(&mut stream, FLAG_MORE, &[1u8; 5000]); // skipped, then a fourth frame
        put_frame(&mut stream, 0, b"x");
        put_frame(&mut stream, FLAG_COMMAND, b"\x04PING");
        put_fpm_message(&mut stream, b"", u64::MAX, &[3u8]);
        let mut r = MessageReader::new(1000, 64);
        assert_eq!(
            feed(&mut r, &stream),
            vec![
                Message::Fpm {
                    seq: 7,
                    start: 300,
                    end: 9
                },
                Message::BadFrames,
                Message::BadFrames,
                Message::BadFrames,
                Message::Oversized,
                Message::BadFrames,
                Message::Fpm {
                    seq: u64::MAX,
                    start: 1,
                    end: 3
                },
            ]
        );
    }

    #[test]
    fn handshake_errors_end_the_connection() {
        let mut r = MessageReader::new(1000, 256);
        let mut bad = greeting(true);
        bad[10] = 2;
        r.spare()[..64].copy_from_slice(&bad);
        r.filled(64);
        assert_eq!(r.next(), Err(HandshakeError::NotZmtp3));

        let mut r = MessageReader::new(1000, 256);
        let mut stream = greeting(true).to_vec();
        put_frame(&mut stream, FLAG_COMMAND, b"\x05ERROR\x03bad");
        r.spare()[..stream.len()].copy_from_slice(&stream);
        r.filled(stream.len());
        assert_eq!(r.next(), Err(HandshakeError::Refused));
        assert!(!r.ready());
    }

    #[test]
    fn sub_handshake_is_greeting_then_ready_and_subscribe() {
        assert!(check_greeting(&greeting(false)).is_ok());
        let h = sub_ready_and_subscribe();
        assert_eq!(h.len(), 2 + 25 + 2 + 1);
        assert!(is_ready(&h[2..27]));
        assert_eq!(&h[27..], &[0x00, 0x01, 0x01]);
    }
}
