//! The FPM receive loop: ZMTP SUB connections to every engine endpoint, read on one thread
//! (non-blocking sockets multiplexed with `mio`), payloads decoded straight from the receive
//! buffer into a shared [`EngineTable`].
//!
//! Like a ZMQ SUB socket it connects lazily and reconnects every `reconnect_s` after a refused
//! or lost connection, subscribes to every topic, and skips frames it cannot use. Each message
//! must be `[topic, 8-byte big-endian sequence, payload]` with a payload of at most
//! `max_payload_bytes`; anything else is counted (`bad_frames`, `oversized`) and dropped. Only
//! `tcp://host:port` endpoints are supported.
//!
//! The table is locked once per read (a batch of messages), so readers of the table (the load
//! tick's snapshot) wait at most one batch. New engines are reported with the endpoint they
//! arrived on ([`ReceiverStats::learned`]) so the caller can map engines to roles.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver as CommandQueue, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::fpm;
use crate::table::EngineTable;
use crate::zmtp::{self, Message, MessageReader};

const WAKER: Token = Token(usize::MAX);

/// Settings of the receive loop.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverOptions {
    /// Largest accepted payload (bytes); bigger ones are counted `oversized` and skipped.
    pub max_payload_bytes: usize,
    /// Seconds between reconnection attempts to an endpoint that is down.
    pub reconnect_s: f64,
    /// Bytes read from a socket at a time.
    pub chunk_bytes: usize,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            max_payload_bytes: fpm::MAX_PAYLOAD_BYTES,
            reconnect_s: 0.1,
            chunk_bytes: 256 * 1024,
        }
    }
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Messages received (good or not).
    pub received: u64,
    /// Messages that were not `[topic, 8-byte sequence, payload]`.
    pub bad_frames: u64,
    /// Messages whose payload exceeded the limit.
    pub oversized: u64,
    /// Whether the connection is up (handshake done).
    pub connected: bool,
}

/// What the loop reports; read it with [`Receiver::stats`].
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    /// Per endpoint, for every endpoint asked for.
    pub endpoints: HashMap<String, EndpointStats>,
    /// Endpoints that could not be parsed or resolved, and handshakes refused.
    pub connect_errors: u64,
    /// New engines as `(endpoint, worker_id, dp_rank)`, oldest first; the caller drains it.
    pub learned: Vec<(String, String, i64)>,
}

enum Command {
    Connect(String),
    Disconnect(String),
    Stop,
}

/// Handle of a running receive loop; dropping it stops the loop.
#[derive(Debug)]
pub struct Receiver {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<ReceiverStats>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `tcp://host:port` -> (host, port), or why not.
pub fn parse_endpoint(endpoint: &str) -> Result<(String, u16), String> {
    let rest = endpoint
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{endpoint:?}: only tcp://host:port endpoints are supported"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{endpoint:?}: missing :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{endpoint:?}: port {port:?} is not a number in 0..=65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "*" {
        return Err(format!("{endpoint:?}: a connect endpoint needs a host"));
    }
    Ok((host.to_string(), port))
}

impl Receiver {
    /// Start the loop on its own thread, feeding `table`.
    pub fn start(table: Arc<Mutex<EngineTable>>, options: ReceiverOptions) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(ReceiverStats::default()));
        let mut state = Loop {
            poll,
            table,
            options,
            stats: Arc::clone(&stats),
            commands: rx,
            conns: Vec::new(),
            by_endpoint: HashMap::new(),
            batch: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("fpm-receiver".into())
            .spawn(move || state.run())?;
        Ok(Receiver {
            commands: tx,
            waker,
            thread: Some(thread),
            stats,
        })
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Subscribe to `endpoint` (`tcp://host:port`); a syntax error is returned and counted.
    pub fn connect(&self, endpoint: &str) -> Result<(), String> {
        if let Err(e) = parse_endpoint(endpoint) {
            lock(&self.stats).connect_errors += 1;
            return Err(e);
        }
        lock(&self.stats)
            .endpoints
            .entry(endpoint.to_string())
            .or_default();
        self.send(Command::Connect(endpoint.to_string()));
        Ok(())
    }

    /// Close the connection to `endpoint` and forget its counters.
    pub fn disconnect(&self, endpoint: &str) {
        lock(&self.stats).endpoints.remove(endpoint);
        self.send(Command::Disconnect(endpoint.to_string()));
    }

    /// The loop's counters (locked while the guard lives).
    pub fn stats(&self) -> MutexGuard<'_, ReceiverStats> {
        lock(&self.stats)
    }

    /// Stop the loop and close every connection (idempotent).
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.send(Command::Stop);
            let _ = thread.join();
        }
    }

    /// Whether the loop thread is running.
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Conn {
    endpoint: String,
    stream: Option<TcpStream>,
    reader: MessageReader,
    out: Vec<u8>,
    sent_ready: bool,
    retry_at: Instant,
}

struct Loop {
    poll: Poll,
    table: Arc<Mutex<EngineTable>>,
    options: ReceiverOptions,
    stats: Arc<Mutex<ReceiverStats>>,
    commands: CommandQueue<Command>,
    conns: Vec<Option<Conn>>,
    by_endpoint: HashMap<String, usize>,
    batch: Vec<(u64, usize, usize)>,
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Loop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    return;
                }
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                self.service(event.token().0);
            }
            if !self.drain_commands() {
                break;
            }
            self.reconnect_due();
        }
        for i in 0..self.conns.len() {
            self.close(i, false);
        }
    }

    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        self.conns
            .iter()
            .flatten()
            .filter(|c| c.stream.is_none())
            .map(|c| c.retry_at.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(500))
    }

    /// Apply queued commands; false on Stop.
    fn drain_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Stop => return false,
                Command::Connect(endpoint) => {
                    if self.by_endpoint.contains_key(&endpoint) {
                        continue;
                    }
                    let conn = Conn {
                        endpoint: endpoint.clone(),
                        stream: None,
                        reader: self.new_reader(),
                        out: Vec::new(),
                        sent_ready: false,
                        retry_at: Instant::now(),
                    };
                    let i = match self.conns.iter().position(Option::is_none) {
                        Some(i) => {
                            self.conns[i] = Some(conn);
                            i
                        }
                        None => {
                            self.conns.push(Some(conn));
                            self.conns.len() - 1
                        }
                    };
                    self.by_endpoint.insert(endpoint, i);
                }
                Command::Disconnect(endpoint) => {
                    if let Some(i) = self.by_endpoint.remove(&endpoint) {
                        self.close(i, false);
                        self.conns[i] = None;
                    }
                }
            }
        }
        true
    }

    fn new_reader(&self) -> MessageReader {
        MessageReader::new(self.options.max_payload_bytes, self.options.chunk_bytes)
    }

    fn reconnect_due(&mut self) {
        let now = Instant::now();
        for i in 0..self.conns.len() {
            let due = self.conns[i]
                .as_ref()
                .is_some_and(|c| c.stream.is_none() && c.retry_at <= now);
            if due {
                self.open(i);
            }
        }
    }

    fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
        let (host, port) = parse_endpoint(endpoint)?;
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("{endpoint:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{endpoint:?}: no address"))
    }

    fn open(&mut self, i: usize) {
        let reader = self.new_reader();
        let retry = Duration::from_secs_f64(self.options.reconnect_s.max(0.001));
        let Some(conn) = self.conns[i].as_mut() else {
            return;
        };
        conn.retry_at = Instant::now() + retry;
        let addr = match Self::resolve(&conn.endpoint) {
            Ok(a) => a,
            Err(_) => {
                lock(&self.stats).connect_errors += 1;
                return;
            }
        };
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        conn.stream = Some(stream);
        conn.reader = reader;
        conn.out = zmtp::greeting(false).to_vec();
        conn.sent_ready = false;
    }

    fn close(&mut self, i: usize, retry: bool) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        if retry {
            conn.retry_at = Instant::now() + Duration::from_secs_f64(self.options.reconnect_s);
        }
        if let Some(s) = lock(&self.stats).endpoints.get_mut(&conn.endpoint) {
            s.connected = false;
        }
    }

    /// Write pending handshake bytes (READY and the subscription once the peer has greeted).
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(());
        };
        if !conn.sent_ready && conn.out.is_empty() && conn.reader.greeted() {
            conn.out = zmtp::sub_ready_and_subscribe();
            conn.sent_ready = true;
        }
        while !conn.out.is_empty() {
            match stream.write(&conn.out) {
                Ok(n) => {
                    conn.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Write pending handshake bytes and read everything available.
    fn service(&mut self, i: usize) {
        if self.flush(i).is_err() {
            return self.close(i, true);
        }
        loop {
            let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
                return;
            };
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let was_ready = conn.reader.ready();
            let n = match stream.read(conn.reader.spare()) {
                Ok(0) => return self.close(i, true),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(i, true),
            };
            conn.reader.filled(n);
            if self.ingest(i, was_ready).is_err() {
                lock(&self.stats).connect_errors += 1;
                return self.close(i, true);
            }
            if self.flush(i).is_err() {
                return self.close(i, true);
            }
        }
    }

    /// Parse the complete messages in connection `i`'s buffer and apply them to the table.
    fn ingest(&mut self, i: usize, was_ready: bool) -> Result<(), zmtp::HandshakeError> {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let mut es = EndpointStats::default();
        self.batch.clear();
        let parsed = loop {
            match conn.reader.next() {
                Ok(Some(Message::Fpm { seq, start, end })) => self.batch.push((seq, start, end)),
                Ok(Some(Message::BadFrames)) => es.bad_frames += 1,
                Ok(Some(Message::Oversized)) => es.oversized += 1,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        es.received = es.bad_frames + es.oversized + self.batch.len() as u64;
        let mut learned = Vec::new();
        if !self.batch.is_empty() {
            let now = now_s();
            let buf = conn.reader.buffer();
            let mut table = lock(&self.table);
            for &(seq, start, end) in &self.batch {
                let payload = &buf[start..end];
                let before = table.counters().registered;
                table.ingest(payload, now, Some(seq));
                if table.counters().registered != before {
                    if let Ok(rec) = fpm::decode(payload) {
                        learned.push((
                            conn.endpoint.clone(),
                            rec.worker_id.to_string(),
                            rec.sample.dp_rank,
                        ));
                    }
                }
            }
        }
        let now_ready = conn.reader.ready();
        if es.received > 0 || !learned.is_empty() || now_ready != was_ready {
            let mut stats = lock(&self.stats);
            if let Some(s) = stats.endpoints.get_mut(&conn.endpoint) {
                s.received += es.received;
                s.bad_frames += es.bad_frames;
                s.oversized += es.oversized;
                s.connected = now_ready;
            }
            stats.learned.append(&mut learned);
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_say_why() {
        assert_eq!(
            parse_endpoint("tcp://127.0.0.1:20380"),
            Ok(("127.0.0.1".to_string(), 20380))
        );
        assert_eq!(parse_endpoint("tcp://[::1]:5"), Ok(("::1".to_string(), 5)));
        for bad in [
            "ipc:///tmp/x",
            "tcp://host",
            "tcp://h:99999",
            "tcp://*:1",
            "tcp://:1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
