"""SimFpmBridge: simulator FPM rows reach an FpmIngestor as real msgpack payloads, with
per-worker counters, heartbeats, removal and slot reuse handled like live engines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim_helpers import Run, cluster
from sla_planner import kernels
from sla_planner.errors import FpmDecodeError, KernelError, SimulationError
from sla_planner.sim import _kernel as K
from sla_planner.sim.cluster import SimCluster
from sla_planner.sim.fpm_bridge import SimFpmBridge
from sla_planner.types import Pool

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG

# "default" follows SLA_PLANNER_NO_EXTENSIONS (native unless it is set); "reference" is forced
IMPLS = [pytest.param(False, id="default"), pytest.param(True, id="reference")]


@pytest.fixture(params=IMPLS)
def reference(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class BridgedRun(Run):
    """A Run whose sink also feeds every FPM batch to the bridge and reports removals."""

    def __init__(self, c: SimCluster, bridge: SimFpmBridge) -> None:
        super().__init__(c)
        self.bridge = bridge
        self.accepted = 0
        self.worker_of_row: list[np.ndarray] = []
        self._events = 0

    def sink(self) -> None:
        super().sink()
        rows = self.fpm[-1]
        ids = [self.c.worker_id(int(e)) for e in rows[:, K.F_ENGINE]]
        self.worker_of_row.append(np.array(ids, dtype=object))
        self.accepted += self.bridge.ingest(rows, self.c.now_s)
        new = self.c.scale_events[self._events:]
        self._events = len(self.c.scale_events)
        self.bridge.apply_scale_events(new)

    def worker_ids(self) -> np.ndarray:
        parts = [w for w in self.worker_of_row if w.shape[0]]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=object)


def play(reference: bool, initial: dict[Pool, int], actions: dict[float, dict[Pool, int]] | None = None,
         until: float = 10.0, **settings: Any) -> BridgedRun:
    c = cluster(initial, startup_delay_s=1.0, **settings)
    run = BridgedRun(c, SimFpmBridge(c, history_len=4, stale_after_s=30.0, reference=reference))
    arrivals = [(0.1 * i, 1500 + 37 * i, 10 + i % 7) for i in range(30)]
    run.play(arrivals, until=until, step=1.0, actions=actions)
    return run


def row(slot: int, wall_s: float = 0.02, queued_prefill_tokens: float = 0.0) -> np.ndarray:
    """One hand-made FPM row (wall_s 0.0 makes it an all-zero heartbeat)."""
    r = np.zeros(K.N_F)
    r[K.F_ENGINE] = slot
    r[K.F_WALL] = wall_s
    if wall_s > 0.0:
        r[K.F_S_NDEC] = 3
        r[K.F_S_DEC_KV] = 3000
        r[K.F_S_DEC_VAR] = 12.5
        r[K.F_Q_NPRE] = 1 if queued_prefill_tokens else 0
        r[K.F_Q_PRE_TOK] = queued_prefill_tokens
    return r


def rows(*items: np.ndarray) -> np.ndarray:
    return np.vstack(items) if items else np.zeros((0, K.N_F))


# ------------------------------------------------------------------- simulated scenarios

def test_every_row_is_ingested_with_counters_per_worker(reference: bool) -> None:
    run = play(reference, {P: 2, D: 2})
    fpm, who = run.fpm_rows(), run.worker_ids()
    assert fpm.shape[0] > 50
    assert run.accepted == fpm.shape[0]
    c = run.bridge.ingestor.counters()
    heartbeats = int((fpm[:, K.F_WALL] == 0.0).sum())
    assert heartbeats > 0
    assert (c["received"], c["decoded"], c["malformed"]) == (fpm.shape[0], fpm.shape[0], 0)
    assert c["heartbeats"] == heartbeats
    assert (c["counter_gaps"], c["out_of_order"]) == (0, 0)
    snap = run.bridge.snapshot(run.c.now_s)
    for i, worker_id in enumerate(snap["worker_id"]):
        mine = fpm[who == worker_id]
        assert snap["received"][i] == mine.shape[0]
        assert snap["heartbeats"][i] == int((mine[:, K.F_WALL] == 0.0).sum())
        assert snap["counter_id"][i] == int((mine[:, K.F_WALL] != 0.0).sum()), worker_id


def test_latest_sample_per_engine_is_the_last_simulator_row(reference: bool) -> None:
    run = play(reference, {P: 2, D: 1}, until=6.0)
    fpm, who = run.fpm_rows(), run.worker_ids()
    snap = run.bridge.snapshot(run.c.now_s)
    assert sorted(snap["worker_id"]) == ["decode-2", "prefill-0", "prefill-1"]
    for i, worker_id in enumerate(snap["worker_id"]):
        last = fpm[who == worker_id][-1]
        assert snap["queued_sum_prefill_tokens"][i] == last[K.F_Q_PRE_TOK]
        assert snap["queued_num_prefill_requests"][i] == last[K.F_Q_NPRE]
        assert snap["scheduled_sum_decode_kv_tokens"][i] == last[K.F_S_DEC_KV]
        assert snap["scheduled_var_prefill_length"][i] == last[K.F_S_PRE_VAR]
        assert snap["wall_time"][i] == last[K.F_WALL]
    prefill = [i for i, w in enumerate(snap["worker_id"]) if w.startswith("prefill-")]
    expected = sum(float(snap["queued_sum_prefill_tokens"][i]) for i in prefill)
    assert run.bridge.queued_prefill_tokens(run.c.now_s, [P]) == expected
    assert run.bridge.queued_prefill_tokens(run.c.now_s, P) == expected


def test_removed_engines_leave_and_a_reused_slot_starts_a_new_counter(reference: bool) -> None:
    run = play(reference, {P: 1, D: 2}, actions={4.0: {D: 1}, 6.0: {D: 2}}, until=10.0)
    removed = [ev.worker_id for ev in run.c.scale_events if ev.action == "remove"]
    added = [ev.worker_id for ev in run.c.scale_events if ev.action == "add"]
    assert (removed, added) == (["decode-2"], ["decode-3"])
    snap = run.bridge.snapshot(run.c.now_s)
    assert "decode-2" not in set(snap["worker_id"])
    assert "decode-3" in set(snap["worker_id"])
    assert run.bridge.remove("decode-2") is False  # already forgotten
    fpm, who = run.fpm_rows(), run.worker_ids()
    i = list(snap["worker_id"]).index("decode-3")
    assert snap["counter_id"][i] == int((fpm[who == "decode-3"][:, K.F_WALL] != 0.0).sum())
    assert run.bridge.ingestor.counters()["out_of_order"] == 0
    assert run.bridge.pool_of("decode-2") is D  # still known after removal
    assert run.bridge.pool_of("prefill-0") is P


def test_agg_engines_are_bridged(reference: bool) -> None:
    run = play(reference, {A: 2}, mode="agg", until=5.0)
    snap = run.bridge.snapshot(run.c.now_s)
    assert sorted(snap["worker_id"]) == ["agg-0", "agg-1"]
    total = float(snap["queued_sum_prefill_tokens"].sum())
    assert run.bridge.queued_prefill_tokens(run.c.now_s, [A]) == total
    assert run.bridge.queued_prefill_tokens(run.c.now_s, [P, D]) == 0.0


def test_idle_cluster_sends_only_heartbeats(reference: bool) -> None:
    c = cluster({P: 1, D: 1})
    run = BridgedRun(c, SimFpmBridge(c, reference=reference))
    run.play([], until=5.0)
    n = run.fpm_rows().shape[0]
    assert n >= 8
    counters = run.bridge.ingestor.counters()
    assert counters["received"] == counters["heartbeats"] == n
    assert run.bridge.snapshot(c.now_s)["counter_id"].tolist() == [0, 0]


@pytest.mark.skipif(not kernels.USING_EXTENSIONS, reason="native kernels are switched off")
def test_native_and_reference_bridges_agree() -> None:
    native = play(False, {P: 2, D: 2}, actions={5.0: {D: 1}})
    ref = play(True, {P: 2, D: 2}, actions={5.0: {D: 1}})
    now = native.c.now_s
    a, b = native.bridge.snapshot(now), ref.bridge.snapshot(now)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert native.bridge.ingestor.counters() == ref.bridge.ingestor.counters()


# ------------------------------------------------------------------------ hand-made rows

def test_heartbeats_repeat_the_last_counter_and_batches_continue(reference: bool) -> None:
    c = cluster({P: 1, D: 1})
    bridge = SimFpmBridge(c, reference=reference)
    batch = rows(row(1), row(1, wall_s=0.0), row(0), row(1), row(1, wall_s=0.0))
    assert bridge.ingest(batch, now_s=1.0) == 5
    snap = bridge.snapshot(1.0)
    assert dict(zip(snap["worker_id"], snap["counter_id"].tolist())) == {"decode-1": 2, "prefill-0": 1}
    assert bridge.ingest(rows(row(1), row(0, wall_s=0.0)), now_s=2.0) == 2
    history = bridge.ingestor.history("decode-1", 0)
    assert history["counter_id"].tolist() == [1, 2, 3]
    snap = bridge.snapshot(2.0)
    assert dict(zip(snap["worker_id"], snap["counter_id"].tolist())) == {"decode-1": 3, "prefill-0": 1}
    assert dict(zip(snap["worker_id"], snap["heartbeats"].tolist())) == {"decode-1": 2, "prefill-0": 1}
    assert bridge.ingestor.counters()["counter_gaps"] == 0


def test_empty_batch_ingests_nothing(reference: bool) -> None:
    c = cluster({P: 1, D: 1})
    bridge = SimFpmBridge(c, reference=reference)
    assert bridge.ingest(rows(), now_s=1.0) == 0
    assert len(bridge.ingestor) == 0


@pytest.mark.parametrize(
    ("now_s", "expected"),
    [
        pytest.param(31.0, 700.0, id="at-stale-after-active"),
        pytest.param(31.000001, 0.0, id="just-past-stale-after"),
    ],
)
def test_queued_prefill_tokens_counts_active_engines_only(reference: bool, now_s: float, expected: float) -> None:
    c = cluster({P: 2, D: 1})
    bridge = SimFpmBridge(c, stale_after_s=30.0, reference=reference)
    bridge.ingest(rows(row(0, queued_prefill_tokens=300.0), row(1, queued_prefill_tokens=400.0),
                       row(2, queued_prefill_tokens=50.0)), now_s=1.0)
    assert bridge.queued_prefill_tokens(now_s, [P]) == expected


def test_slot_reuse_after_removal(reference: bool) -> None:
    c = cluster({P: 1, D: 1})
    bridge = SimFpmBridge(c, reference=reference)
    bridge.ingest(rows(row(1), row(1)), now_s=1.0)
    assert bridge.apply_scale_events(c.set_targets({D: 0})) == 1
    events = c.set_targets({D: 1})
    assert [(ev.worker_id, ev.action) for ev in events] == [("decode-2", "add")]
    assert c.worker_id(1) == "decode-2"  # the freed slot is reused
    bridge.ingest(rows(row(1)), now_s=2.0)
    snap = bridge.snapshot(2.0)
    assert dict(zip(snap["worker_id"], snap["counter_id"].tolist())) == {"decode-2": 1}
    assert bridge.pool_of("decode-2") is D


def test_pool_of_unknown_worker_raises_key_error(reference: bool) -> None:
    c = cluster({P: 1, D: 1})
    bridge = SimFpmBridge(c, reference=reference)
    assert bridge.pool_of("decode-1") is D  # held by the cluster, not yet seen in FPM
    with pytest.raises(SimulationError, match="decode-9"):
        bridge.pool_of("decode-9")


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        pytest.param(np.zeros((2, K.N_F - 1)), KernelError, r"rows must have shape \(n, 16\)", id="columns"),
        pytest.param(np.zeros(K.N_F), KernelError, r"rows must have shape", id="one-dimensional"),
        pytest.param(rows(row(2)), KernelError, r"rows\[0, F_ENGINE\] = 2\.0 is not an engine slot", id="slot-high"),
        pytest.param(rows(row(0), row(-1)), KernelError, r"rows\[1, F_ENGINE\] = -1\.0", id="slot-negative"),
        pytest.param(rows(row(0), row(1)) + np.eye(2, K.N_F) * 0.5, KernelError, r"rows\[0, F_ENGINE\] = 0\.5",
                     id="slot-fraction"),
        pytest.param(rows(row(0, queued_prefill_tokens=2.5)), FpmDecodeError,
                     r"FPM row 0: queued\[0, 1\] \(queued_requests.sum_prefill_tokens\) must be a whole number",
                     id="fractional-count"),
    ],
)
def test_bad_rows_raise(reference: bool, bad: np.ndarray, error: type[Exception], match: str) -> None:
    c = cluster({P: 1, D: 1})
    bridge = SimFpmBridge(c, reference=reference)
    with pytest.raises(error, match=match):
        bridge.ingest(bad, now_s=1.0)
