//! A load generator for the receive path: `n` ZMTP PUB endpoints on loopback, each serving one
//! subscriber a fixed number of FPM messages as fast as the socket takes them (benchmarks and
//! tests; engines publish with libzmq).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::zmtp::{self, GREETING_LEN};

/// Messages written per `write_all` call (one pre-encoded block, sequence numbers patched).
const BLOCK_MESSAGES: usize = 256;

/// `n` bound PUB endpoints; [`BenchPublisher::start`] serves them.
#[derive(Debug)]
pub struct BenchPublisher {
    listeners: Vec<TcpListener>,
}

/// Read the subscriber's greeting, READY and subscription (frames until the first message).
fn read_subscriber_handshake(stream: &mut TcpStream) -> io::Result<()> {
    let mut greeting = [0u8; GREETING_LEN];
    stream.read_exact(&mut greeting)?;
    zmtp::check_greeting(&greeting).map_err(|e| io::Error::other(e.to_string()))?;
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head)?;
        let size = if head[0] & zmtp::FLAG_LONG != 0 {
            let mut rest = [0u8; 7];
            stream.read_exact(&mut rest)?;
            let mut b = [0u8; 8];
            b[0] = head[1];
            b[1..].copy_from_slice(&rest);
            u64::from_be_bytes(b)
        } else {
            u64::from(head[1])
        };
        let mut body = vec![
            0u8;
            usize::try_from(size)
                .map_err(io::Error::other)?
                .min(1 << 20)
        ];
        stream.read_exact(&mut body)?;
        if head[0] & zmtp::FLAG_COMMAND == 0 {
            return Ok(()); // the subscription message
        }
    }
}

fn serve(
    listener: TcpListener,
    topic: Vec<u8>,
    payloads: Vec<Vec<u8>>,
    messages: usize,
) -> io::Result<usize> {
    let (mut stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&zmtp::greeting(true))?;
    stream.write_all(&zmtp::ready("PUB"))?;
    read_subscriber_handshake(&mut stream)?;
    // one block of messages; the sequence fields are patched before every write
    let mut block = Vec::new();
    let mut seq_at = Vec::with_capacity(BLOCK_MESSAGES);
    for i in 0..BLOCK_MESSAGES.min(messages.max(1)) {
        let payload = &payloads[i % payloads.len().max(1)];
        zmtp::put_frame(&mut block, zmtp::FLAG_MORE, &topic);
        seq_at.push(block.len() + 2);
        zmtp::put_frame(&mut block, zmtp::FLAG_MORE, &0u64.to_be_bytes());
        zmtp::put_frame(&mut block, 0, payload);
    }
    let per_block = seq_at.len();
    let mut sent = 0usize;
    let mut seq = 0u64;
    while sent < messages {
        let n = per_block.min(messages - sent);
        for &at in &seq_at[..n] {
            block[at..at + 8].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
        }
        let end = if n == per_block {
            block.len()
        } else {
            seq_at
                .get(n)
                .map_or(block.len(), |&at| at - 2 - 2 - topic.len())
        };
        stream.write_all(&block[..end])?;
        sent += n;
    }
    stream.flush()?;
    // keep the connection open until the subscriber closes it (its reads may still be pending)
    let mut sink = [0u8; 64];
    let _ = stream.read(&mut sink);
    Ok(sent)
}

impl BenchPublisher {
    /// Bind `n` endpoints on 127.0.0.1 (ephemeral ports).
    pub fn bind(n: usize) -> io::Result<Self> {
        let listeners = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(BenchPublisher { listeners })
    }

    /// `tcp://127.0.0.1:PORT` of every endpoint.
    pub fn endpoints(&self) -> io::Result<Vec<String>> {
        self.listeners
            .iter()
            .map(|l| Ok(format!("tcp://{}", l.local_addr()?)))
            .collect()
    }

    /// Serve every endpoint on its own thread: accept one subscriber, then send it `messages`
    /// messages cycling through `payloads[endpoint]`. Join the handles for the counts sent.
    pub fn start(
        self,
        payloads: Vec<Vec<Vec<u8>>>,
        messages: usize,
    ) -> io::Result<Vec<JoinHandle<io::Result<usize>>>> {
        if payloads.len() != self.listeners.len() || payloads.iter().any(Vec::is_empty) {
            return Err(io::Error::other(
                "one non-empty payload list per endpoint is required",
            ));
        }
        self.listeners
            .into_iter()
            .zip(payloads)
            .enumerate()
            .map(|(i, (listener, payloads))| {
                std::thread::Builder::new()
                    .name(format!("bench-pub-{i}"))
                    .spawn(move || serve(listener, b"fpm".to_vec(), payloads, messages))
            })
            .collect()
    }
}
