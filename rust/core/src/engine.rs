//! One engine's state in the ingestion table: latest sample, bounded history ring, counters.

use crate::fpm::FpmSample;

/// One stored forward pass: the FPM numbers plus when the planner received it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HistoryEntry {
    /// Caller-supplied receive time (seconds).
    pub received_s: f64,
    /// The decoded numbers.
    pub sample: FpmSample,
}

/// Fixed-capacity ring of the most recent entries (oldest overwritten first).
#[derive(Debug, Clone, Default)]
pub struct HistoryRing {
    entries: Vec<HistoryEntry>,
    head: usize,
    capacity: usize,
}

impl HistoryRing {
    /// An empty ring holding at most `capacity` entries; storage is allocated on first push.
    pub fn new(capacity: usize) -> Self {
        HistoryRing {
            entries: Vec::new(),
            head: 0,
            capacity,
        }
    }

    /// Append, evicting the oldest entry when full.
    #[inline]
    pub fn push(&mut self, entry: HistoryEntry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() < self.capacity {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(self.capacity);
            }
            self.entries.push(entry);
        } else if let Some(slot) = self.entries.get_mut(self.head) {
            *slot = entry;
            // a compare instead of `%`: an integer division per message is measurable here
            self.head += 1;
            if self.head == self.capacity {
                self.head = 0;
            }
        }
    }

    /// Number of stored entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = &HistoryEntry> {
        let (newer, older) = self.entries.split_at(self.head.min(self.entries.len()));
        older.iter().chain(newer.iter())
    }

    /// Heap bytes held by the ring.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<HistoryEntry>()
    }
}

/// Per-engine counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Messages accepted for this engine (forward passes and heartbeats).
    pub received: u64,
    /// Idle heartbeats (`wall_time == 0.0`).
    pub heartbeats: u64,
    /// Messages missing between consecutive `counter_id`s (heartbeats excluded).
    pub counter_gaps: u64,
    /// Messages missing between consecutive transport sequence numbers.
    pub seq_gaps: u64,
    /// Messages whose `counter_id` or sequence did not advance (reorder, duplicate, restart; a
    /// `counter_id` that wraps past 2**64 - 1 back to a small value is a restart, not a gap).
    pub out_of_order: u64,
}

/// What one accepted message changed, for the table's global counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateEffect {
    /// The message was an idle heartbeat.
    pub heartbeat: bool,
    /// Missing messages detected from `counter_id`.
    pub counter_gap: u64,
    /// Missing messages detected from the transport sequence.
    pub seq_gap: u64,
    /// The message did not advance `counter_id` or the sequence.
    pub out_of_order: bool,
}

/// State of one engine `(worker_id, dp_rank)`.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Worker identifier.
    pub worker_id: Box<str>,
    /// The table's interned index of `worker_id` (shared by all dp ranks of one worker).
    pub worker_index: u32,
    /// Data-parallel rank.
    pub dp_rank: i64,
    /// Most recent message (a heartbeat included).
    pub latest: FpmSample,
    /// Caller time of the most recent message (seconds).
    pub last_seen_s: f64,
    /// Counters for this engine.
    pub counters: EngineCounters,
    history: HistoryRing,
    last_counter_id: Option<u64>,
    last_seq: Option<u64>,
}

impl Engine {
    /// A new engine of the worker interned as `worker_index`, with an empty history ring of
    /// `history_len` entries.
    pub fn new(worker_id: &str, worker_index: u32, dp_rank: i64, history_len: usize) -> Self {
        Engine {
            worker_id: worker_id.into(),
            worker_index,
            dp_rank,
            latest: FpmSample::default(),
            last_seen_s: f64::NEG_INFINITY,
            counters: EngineCounters::default(),
            history: HistoryRing::new(history_len),
            last_counter_id: None,
            last_seq: None,
        }
    }

    /// Apply one accepted message received at `now_s` (with its transport `seq` when known).
    ///
    /// Heartbeats refresh `latest`, `last_seen_s` and the sequence but are not stored in the
    /// history and do not take part in `counter_id` gap detection.
    #[inline]
    pub fn update(&mut self, sample: &FpmSample, now_s: f64, seq: Option<u64>) -> UpdateEffect {
        let mut effect = UpdateEffect {
            heartbeat: sample.is_heartbeat(),
            ..UpdateEffect::default()
        };
        if let Some(s) = seq {
            if let Some(last) = self.last_seq {
                if s > last {
                    effect.seq_gap = s - last - 1;
                } else {
                    effect.out_of_order = true;
                }
            }
            self.last_seq = Some(s);
        }
        if !effect.heartbeat {
            let c = sample.counter_id;
            if let Some(last) = self.last_counter_id {
                if c > last {
                    effect.counter_gap = c - last - 1;
                } else {
                    effect.out_of_order = true;
                }
            }
            self.last_counter_id = Some(c);
            self.history.push(HistoryEntry {
                received_s: now_s,
                sample: *sample,
            });
        }
        let k = &mut self.counters;
        k.received = k.received.saturating_add(1);
        k.heartbeats = k.heartbeats.saturating_add(u64::from(effect.heartbeat));
        k.counter_gaps = k.counter_gaps.saturating_add(effect.counter_gap);
        k.seq_gaps = k.seq_gaps.saturating_add(effect.seq_gap);
        k.out_of_order = k
            .out_of_order
            .saturating_add(u64::from(effect.out_of_order));
        self.latest = *sample;
        self.last_seen_s = now_s;
        effect
    }

    /// True when no message arrived for more than `stale_after_s` before `now_s`.
    pub fn is_stale(&self, now_s: f64, stale_after_s: f64) -> bool {
        now_s - self.last_seen_s > stale_after_s
    }

    /// Stored forward passes, oldest first.
    pub fn history(&self) -> &HistoryRing {
        &self.history
    }

    /// Bytes owned by this engine (struct, name, history storage).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Engine>() + self.worker_id.len() + self.history.heap_bytes()
    }
}
