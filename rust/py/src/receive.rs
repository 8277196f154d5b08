//! `FpmReceiver`: the native FPM receive loop feeding an `FpmIngestor`'s table (no GIL on the
//! hot path); `BenchPublisher`: loopback publishers that can outrun it (benchmarks, tests).

use std::io;
use std::thread::JoinHandle;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sla_planner_core::publisher;
use sla_planner_core::receiver::{Receiver, ReceiverOptions};

use crate::errors::{argument, int_in, NativeResult};
use crate::ingest::FpmIngestor;

/// ZMTP SUB connections to FPM endpoints, read on a native thread into an ingestor's table.
#[pyclass(module = "sla_planner._native")]
pub struct FpmReceiver {
    inner: Receiver,
}

#[pymethods]
impl FpmReceiver {
    #[new]
    #[pyo3(
        signature = (ingestor, max_payload_bytes = None, reconnect_s = 0.1),
        text_signature = "(ingestor, max_payload_bytes=65536, reconnect_s=0.1)"
    )]
    fn new(
        ingestor: &Bound<'_, FpmIngestor>,
        max_payload_bytes: Option<&Bound<'_, PyAny>>,
        reconnect_s: f64,
    ) -> NativeResult<Self> {
        let max_payload_bytes = match max_payload_bytes {
            Some(v) => int_in(v, "max_payload_bytes", 1, 1 << 30)? as usize,
            None => sla_planner_core::fpm::MAX_PAYLOAD_BYTES,
        };
        if !(reconnect_s.is_finite() && reconnect_s > 0.0) {
            return Err(argument(format!(
                "reconnect_s must be finite and > 0, got {reconnect_s}"
            )));
        }
        let options = ReceiverOptions {
            max_payload_bytes,
            reconnect_s,
            ..ReceiverOptions::default()
        };
        let table = ingestor.borrow().table.clone();
        let inner = Receiver::start(table, options)
            .map_err(|e| argument(format!("cannot start the FPM receive loop: {e}")))?;
        Ok(FpmReceiver { inner })
    }

    /// Subscribe to `endpoint` (`tcp://host:port`); KernelError for any other form.
    fn connect(&self, endpoint: &str) -> NativeResult<()> {
        self.inner.connect(endpoint).map_err(argument)
    }

    /// Close the connection to `endpoint`.
    fn disconnect(&self, endpoint: &str) {
        self.inner.disconnect(endpoint);
    }

    /// `received`, `bad_frames`, `oversized`, `connect_errors` (totals over current
    /// endpoints), `received_by_endpoint` (endpoint -> messages) and `connected` (endpoints
    /// whose handshake is done, sorted).
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.stats();
        let d = PyDict::new(py);
        let by = PyDict::new(py);
        let (mut received, mut bad, mut oversized) = (0u64, 0u64, 0u64);
        let mut connected = Vec::new();
        for (endpoint, s) in &stats.endpoints {
            received += s.received;
            bad += s.bad_frames;
            oversized += s.oversized;
            by.set_item(endpoint, s.received)?;
            if s.connected {
                connected.push(endpoint.clone());
            }
        }
        connected.sort();
        d.set_item("received", received)?;
        d.set_item("bad_frames", bad)?;
        d.set_item("oversized", oversized)?;
        d.set_item("connect_errors", stats.connect_errors)?;
        d.set_item("received_by_endpoint", by)?;
        d.set_item("connected", connected)?;
        Ok(d)
    }

    /// New engines since the last call, as `(endpoint, worker_id, dp_rank)`, oldest first.
    fn take_learned(&self) -> Vec<(String, String, i64)> {
        std::mem::take(&mut self.inner.stats().learned)
    }

    /// Stop the loop and close every connection (idempotent).
    fn stop(&mut self, py: Python<'_>) {
        let inner = &mut self.inner;
        py.detach(|| inner.stop());
    }

    /// Whether the loop thread is running.
    #[getter]
    fn running(&self) -> bool {
        self.inner.running()
    }
}

/// `n` loopback PUB endpoints sending FPM messages as fast as a subscriber reads them.
#[pyclass(module = "sla_planner._native")]
pub struct BenchPublisher {
    bound: Option<publisher::BenchPublisher>,
    endpoints: Vec<String>,
    running: Vec<JoinHandle<io::Result<usize>>>,
}

#[pymethods]
impl BenchPublisher {
    #[new]
    fn new(n: &Bound<'_, PyAny>) -> NativeResult<Self> {
        let n = int_in(n, "n", 1, 4096)? as usize;
        let bound = publisher::BenchPublisher::bind(n)
            .map_err(|e| argument(format!("cannot bind {n} loopback endpoints: {e}")))?;
        let endpoints = bound.endpoints().map_err(|e| argument(e.to_string()))?;
        Ok(BenchPublisher {
            bound: Some(bound),
            endpoints,
            running: Vec::new(),
        })
    }

    /// `tcp://127.0.0.1:PORT` of every endpoint.
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.endpoints.clone()
    }

    /// Serve: endpoint i accepts one subscriber and sends it `messages` messages cycling
    /// through `payloads[i]` (sequence numbers 0, 1, 2, ...). Returns at once.
    fn start(
        &mut self,
        payloads: Vec<Vec<Bound<'_, PyBytes>>>,
        messages: usize,
    ) -> NativeResult<()> {
        let bound = self
            .bound
            .take()
            .ok_or_else(|| argument("BenchPublisher.start may be called once"))?;
        let payloads: Vec<Vec<Vec<u8>>> = payloads
            .iter()
            .map(|list| list.iter().map(|b| b.as_bytes().to_vec()).collect())
            .collect();
        self.running = bound
            .start(payloads, messages)
            .map_err(|e| argument(e.to_string()))?;
        Ok(())
    }

    /// Wait for every endpoint to finish (its subscriber must close); returns messages sent.
    fn join(&mut self, py: Python<'_>) -> NativeResult<usize> {
        let handles = std::mem::take(&mut self.running);
        py.detach(|| {
            let mut sent = 0usize;
            for h in handles {
                match h.join() {
                    Ok(Ok(n)) => sent += n,
                    Ok(Err(e)) => return Err(argument(format!("publisher failed: {e}"))),
                    Err(_) => return Err(argument("publisher thread panicked")),
                }
            }
            Ok(sent)
        })
    }
}
