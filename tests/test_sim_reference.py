"""The plain-Python simulator (sim.reference) against the numba one (SimCluster), and on its own.

The property test plays hypothesis-generated scenarios through both, in the same steps, and
requires the same request records, FPM records, scale events and pool state. The table tests pin
the reference to hand-computed numbers and to the tie and boundary rules of the kernel docstring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.errors import SimulationError
from sla_planner.perf.profile_data import load_profile
from sla_planner.sim import _kernel as K
from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
from sla_planner.sim.reference import ReferenceCluster
from sla_planner.types import Pool

from sim_helpers import constant_perf

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG
_MODELS = load_profile("builtin:example")
EXAMPLE = SimPerf.from_models(_MODELS.prefill, _MODELS.decode)
DONE_TIMES = [K.D_ARRIVAL, K.D_FIRST, K.D_DONE]
DONE_EXACT = [K.D_TRACE, K.D_ISL, K.D_OSL, K.D_STATUS, K.D_ENGINE]
Arrival = tuple[float, int, int]  # (time s, ISL, OSL)
# Every time and duration exactly representable (prefill 1024 tok/s per GPU, ITL 1/128 s, times in
# eighths of a second), so events often share a time and the tie rules decide the outcome.
DYADIC = SimPerf(
    prefill_isl=np.array([1e6, 2e6]),  # every ISL is below the first knot: the rate is exact
    prefill_thpt_per_gpu=np.array([1024.0, 1024.0]),
    prefill_slopes=np.zeros(2),
    decode_itl_grid_ms=np.full((1, 1), 7.8125),  # one cell: no interpolation rounding
    kv_min=0.0, kv_step=1.0, log_ctx_min=0.0, log_ctx_step=1.0,
    max_kv_tokens=EXAMPLE.max_kv_tokens,
)


@dataclasses.dataclass
class Scenario:
    """One replay: cluster set-up, arrivals, advance boundaries, targets applied at boundaries."""

    perf: SimPerf
    settings: SimSettings
    initial: dict[Pool, int]
    arrivals: list[Arrival]
    boundaries: list[float]
    targets: dict[int, dict[Pool, int]]  # boundary index -> targets set right after reaching it
    capacity: dict[str, int] = dataclasses.field(default_factory=dict)  # SimCluster buffers
    drains: dict[int, dict[Pool, tuple[str, ...]]] = dataclasses.field(default_factory=dict)


class Recorder:
    """A cluster (either kind) with every record it emitted."""

    def __init__(self, cluster: Any) -> None:
        self.c = cluster
        self.done: list[np.ndarray] = []
        self.fpm: list[np.ndarray] = []

    def sink(self) -> None:
        self.done.append(self.c.take_done())
        self.fpm.append(self.c.take_fpm())

    def done_rows(self) -> np.ndarray:
        self.sink()
        rows = np.concatenate(self.done)
        return rows[np.lexsort((rows[:, K.D_STATUS], rows[:, K.D_TRACE]))]

    def fpm_rows(self) -> np.ndarray:
        self.sink()
        rows = np.concatenate(self.fpm)
        return rows[np.lexsort(tuple(rows[:, c] for c in reversed(range(K.N_F))))]


def play(sc: Scenario, make: Callable[..., Any], **kw: Any) -> tuple[Recorder, list[dict[str, Any]]]:
    """Drive one cluster through the scenario; returns it and its observable state per step."""
    rec = Recorder(make(sc.perf, sc.settings, dict(sc.initial), **kw))
    arr = sorted(sc.arrivals, key=lambda a: a[0])  # stable: equal times keep list order
    t_arr = np.array([a[0] for a in arr], dtype=np.float64)
    isl = np.array([a[1] for a in arr], dtype=np.int64)
    osl = np.array([a[2] for a in arr], dtype=np.int64)
    idx = np.arange(len(arr), dtype=np.int64)
    states: list[dict[str, Any]] = []
    lo = 0
    for i, t_end in enumerate(sc.boundaries):
        hi = int(np.searchsorted(t_arr, t_end, side="right"))
        rec.c.advance(t_end, t_arr[lo:hi], isl[lo:hi], osl[lo:hi], idx[lo:hi], rec.sink)
        rec.c.take_retired()
        lo = hi
        if i in sc.targets:
            rec.c.set_targets(sc.targets[i], sc.drains.get(i))
        states.append(_state(rec.c))
    rec.c.take_retired()
    rec.c.finish()
    return rec, states


def _state(c: Any) -> dict[str, Any]:
    return {
        "now_s": c.now_s,
        "counts": c.counts(),
        "ready": c.ready_counts(),
        "scaling": c.scaling_in_progress(),
        "gpus": c.gpus_in_use(),
        "in_flight": c.in_flight,
        "frontend": c.frontend_waiting,
        "workers": [(c.worker_id(e), c.engine_pool(e)) for e in range(c.n_engines)],
        "kv_usage": c.engine_kv_usage(),
        "draining": sorted(c.draining_workers()),
    }


def run_both(sc: Scenario) -> tuple[Recorder, Recorder]:
    """Play both clusters and assert everything observable is the same."""
    kernel, k_states = play(sc, SimCluster, **sc.capacity)
    ref, r_states = play(sc, ReferenceCluster)
    assert r_states == k_states
    assert ref.c.scale_events == kernel.c.scale_events
    assert ref.c.gpu_seconds == pytest.approx(kernel.c.gpu_seconds, rel=1e-12)
    assert_same_done(kernel.done_rows(), ref.done_rows())
    assert_same_fpm(kernel.fpm_rows(), ref.fpm_rows())
    return kernel, ref


def assert_same_done(kernel: np.ndarray, ref: np.ndarray) -> None:
    def keys(rows: np.ndarray) -> list[tuple[int, int]]:
        return [(int(r[K.D_TRACE]), int(r[K.D_STATUS])) for r in rows]

    assert keys(ref) == keys(kernel), "different (trace index, status) records"
    np.testing.assert_array_equal(ref[:, DONE_EXACT], kernel[:, DONE_EXACT])
    np.testing.assert_allclose(ref[:, DONE_TIMES], kernel[:, DONE_TIMES], rtol=1e-9, atol=1e-12)


def assert_same_fpm(kernel: np.ndarray, ref: np.ndarray) -> None:
    def per_engine(rows: np.ndarray) -> dict[int, tuple[int, float, float, float]]:
        out = {}
        for e in np.unique(rows[:, K.F_ENGINE]).astype(int):
            mine = rows[rows[:, K.F_ENGINE] == e]
            out[e] = (len(mine), mine[:, K.F_S_PRE_TOK].sum(), mine[:, K.F_S_NPRE].sum(),
                      mine[:, K.F_S_NDEC].sum())
        return out

    assert per_engine(ref) == per_engine(kernel)
    np.testing.assert_allclose(ref, kernel, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------- scenarios
def _seconds(dyadic: bool, lo: float, hi: float) -> st.SearchStrategy[float]:
    """Times in [lo, hi]: eighths of a second in dyadic scenarios, any float otherwise."""
    if dyadic:
        return st.integers(int(lo * 8), int(hi * 8)).map(lambda k: k / 8)
    return st.floats(lo, hi)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    dyadic = draw(st.booleans())
    mode = draw(st.sampled_from(["disagg", "agg"]))
    batched = draw(st.integers(1, 8192))
    delay = draw(_seconds(dyadic, 0.125, 30.0))
    cfg = SimSettings(
        mode=mode,
        max_num_batched_tokens=batched,
        max_num_seqs=draw(st.integers(1, 256)),
        startup_delay_s=delay,
        startup_delay_max_s=draw(st.none() | _seconds(dyadic, 0.0, 30.0).map(lambda x: delay + x)),
        transfer_s=draw(st.just(0.0) | _seconds(dyadic, 0.125, 2.0)),
        drain_timeout_s=draw(st.just(0.0) | st.just(600.0) | _seconds(dyadic, 0.125, 30.0)),
        time_scale=draw(st.sampled_from([0.5, 1.0, 2.0]) if dyadic else st.floats(0.5, 2.0)),
        prefill_engine_num_gpu=draw(st.integers(1, 4)),
        decode_engine_num_gpu=draw(st.integers(1, 4)),
        heartbeat_s=draw(_seconds(dyadic, 0.25, 5.0)),
        seed=draw(st.integers(0, 2**16)),
    )
    base = DYADIC if dyadic else EXAMPLE
    max_kv = draw(st.none() | st.integers(1_000, 40_000))
    perf = base if max_kv is None else dataclasses.replace(base, max_kv_tokens=max_kv)
    pools = cfg.pools()
    initial = {p: draw(st.integers(1, 4)) for p in pools}
    max_isl = min(20_000, 50 * batched)  # bounds the number of prefill iterations
    # dyadic prompts are whole 1/16 s of prefill on one GPU, so iterations end on the time grid
    isl = st.integers(0, max_isl // 64).map(lambda k: 64 * k) if dyadic else st.integers(0, max_isl)
    arrivals = draw(st.lists(
        st.tuples(_seconds(dyadic, 0.0, 60.0), isl, st.integers(0, 300)),
        min_size=1, max_size=40,
    ))
    steps = draw(st.lists(_seconds(dyadic, 0.125, 15.0), min_size=1, max_size=25))
    boundaries = [float(b) for b in np.cumsum(steps)]
    last = max(t for t, _, _ in arrivals) + 90.0
    while boundaries[-1] < last:
        boundaries.append(boundaries[-1] + 10.0)
    targets = draw(st.dictionaries(
        st.integers(0, len(steps) - 1),
        st.fixed_dictionaries({p: st.integers(0, 4) for p in pools}),
        max_size=4,
    ))
    names = st.tuples(*[]) | st.lists(
        st.integers(0, 12), max_size=3, unique=True
    ).map(lambda ks: tuple(ks))
    drains = {
        i: {p: tuple(f"{p.value}-{k}" for k in draw(names)) for p in pools}
        for i in targets
        if draw(st.booleans())
    }
    capacity = draw(st.fixed_dictionaries({
        "engine_capacity": st.sampled_from([1, 64]),
        "request_capacity": st.sampled_from([1, 8, 1 << 14]),
        "fpm_capacity": st.sampled_from([4, 1 << 16]),
    }))
    return Scenario(perf, cfg, initial, arrivals, boundaries, targets, capacity, drains)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_reference_matches_sim_cluster(sc: Scenario) -> None:
    run_both(sc)


# ------------------------------------------------------------------------ hand-checked cases
def const(**settings_: Any) -> tuple[SimPerf, SimSettings]:
    """Prefill 1000 tok/s, ITL 10 ms, max_kv 10 000 (tests/sim_helpers.constant_perf)."""
    return constant_perf(), SimSettings(**settings_)


def outcomes(rec: Recorder) -> dict[int, np.ndarray]:
    rows = rec.done_rows()
    return {int(r[K.D_TRACE]): r for r in rows if r[K.D_STATUS] != K.STATUS_FIRST_TOKEN}


def simple(perf: SimPerf, cfg: SimSettings, initial: dict[Pool, int], arrivals: list[Arrival],
           until: float, step: float = 1.0) -> Scenario:
    """Fixed steps up to ``until``, no scaling."""
    n = int(math.ceil(until / step))
    return Scenario(perf, cfg, initial, arrivals, [step * (i + 1) for i in range(n)], {})


TIMINGS = [
    # id, settings, initial pools, arrivals, trace -> (first token s, done s, engine)
    ("lone_disagg", {}, {P: 1, D: 1}, [(0.0, 2000, 3)], {0: (2.0, 2.02, 1)}),
    ("chunked_shares_iteration", {"max_num_batched_tokens": 1500}, {P: 1, D: 1},
     [(0.0, 2000, 1), (0.5, 1000, 1)], {0: (3.0, 3.0, 0), 1: (3.0, 3.0, 0)}),
    ("transfer_delay", {"transfer_s": 0.5}, {P: 1, D: 1}, [(0.0, 1000, 2)], {0: (1.0, 1.51, 1)}),
    ("agg_same_engine", {"mode": "agg"}, {A: 1}, [(0.0, 1000, 2)], {0: (1.0, 1.01, 0)}),
    ("empty_prompt_single_token", {}, {P: 1, D: 1}, [(0.5, 0, 1)], {0: (0.5, 0.5, -1)}),
    ("empty_prompt_decodes", {}, {P: 1, D: 1}, [(0.5, 0, 3)], {0: (0.5, 0.52, 1)}),
    ("two_gpus_prefill_twice_as_fast", {"prefill_engine_num_gpu": 2}, {P: 1, D: 1},
     [(0.0, 2000, 1)], {0: (1.0, 1.0, 0)}),
    ("time_scale_slows_everything", {"time_scale": 2.0}, {P: 1, D: 1},
     [(0.0, 1000, 2)], {0: (2.0, 2.02, 1)}),
]


@pytest.mark.parametrize("cls", [ReferenceCluster, SimCluster], ids=["reference", "kernel"])
@pytest.mark.parametrize(("opts", "initial", "arrivals", "expected"),
                         [c[1:] for c in TIMINGS], ids=[c[0] for c in TIMINGS])
def test_hand_checked_timings(cls: Any, opts: dict[str, Any], initial: dict[Pool, int],
                              arrivals: list[Arrival], expected: dict[int, tuple[float, float, int]]
                              ) -> None:
    rec, _ = play(simple(*const(**opts), initial, arrivals, until=5.0), cls)
    got = outcomes(rec)
    assert set(got) == set(expected)
    for trace, (first, done, engine) in expected.items():
        r = got[trace]
        assert r[K.D_STATUS] == K.STATUS_OK
        assert (r[K.D_FIRST], r[K.D_DONE]) == pytest.approx((first, done), rel=1e-12)
        assert r[K.D_ENGINE] == engine


TIES = [
    # id, scenario (constant perf), trace, engine its outcome names under the documented order
    # At 1.0 engine 0 ends A's prefill (0 queued) as C (trace 2) arrives; engine 1 is idle after
    # B. End first: tie at 0 queued -> engine 0. Arrival first: engine 0 still holds A's 1000.
    ("iteration_end_before_arrival",
     Scenario(*const(), {P: 2, D: 1}, [(0.0, 1000, 1), (0.0, 800, 1), (1.0, 500, 1)],
              [1.0, 2.0, 5.0], {}), 2, 0),
    # A's prefill ends at 1.0 as decode slot 2 (added at 0.0, 1 s delay) becomes ready; slot 1
    # holds B. End first: A goes to slot 1, the only ready decode engine; ready first: empty slot 2.
    ("iteration_end_before_readiness",
     Scenario(*const(startup_delay_s=1.0), {P: 1, D: 1}, [(0.0, 1000, 10), (0.0, 0, 500)],
              [0.0, 1.0, 2.0, 10.0], {0: {D: 2}}), 0, 1),
    # A's transfer lands at 1.5 as B (ISL 0) arrives; both need a decode engine, two are empty.
    # Transfer first: A takes slot 1 and B slot 2.
    ("transfer_before_arrival",
     Scenario(*const(transfer_s=0.5), {P: 1, D: 2}, [(0.0, 1000, 100), (1.5, 0, 100)],
              [1.0, 2.0, 5.0], {}), 0, 1),
]


@pytest.mark.parametrize("cls", [ReferenceCluster, SimCluster], ids=["reference", "kernel"])
@pytest.mark.parametrize(("sc", "trace", "engine"), [c[1:] for c in TIES], ids=[c[0] for c in TIES])
def test_tie_order(cls: Any, sc: Scenario, trace: int, engine: int) -> None:
    rec, _ = play(sc, cls)
    assert outcomes(rec)[trace][K.D_ENGINE] == engine


BOUNDARIES = [
    # id, settings, perf max_kv, arrivals, what to check, expected
    ("kv_need_equal_to_capacity_runs", {}, 1000, [(0.0, 900, 100)], "statuses", [K.STATUS_OK]),
    ("kv_need_one_over_is_rejected", {}, 1000, [(0.0, 900, 101)], "statuses",
     [K.STATUS_REJECTED_TOO_LONG]),
    ("disagg_rejects_after_prefill", {}, 1000, [(0.0, 900, 101)], "first_tokens", 1),
    ("agg_rejects_before_prefill", {"mode": "agg"}, 1000, [(0.0, 900, 101)], "first_tokens", 0),
    ("two_reservations_fit_exactly", {}, 1000, [(0.0, 10, 490), (0.0, 10, 490)],
     "max_running", 2),
    ("second_reservation_one_over_waits", {}, 1000, [(0.0, 10, 490), (0.0, 10, 491)],
     "max_running", 1),
    ("max_num_seqs_caps_the_batch", {"max_num_seqs": 1}, 10_000, [(0.0, 10, 5), (0.0, 10, 5)],
     "max_running", 1),
    ("prompt_equal_to_budget_one_iteration", {"max_num_batched_tokens": 1000}, 10_000,
     [(0.0, 1000, 1)], "prefill_iterations", 1),
    ("prompt_one_over_budget_two_iterations", {"max_num_batched_tokens": 1000}, 10_000,
     [(0.0, 1001, 1)], "prefill_iterations", 2),
]


@pytest.mark.parametrize(("opts", "max_kv", "arrivals", "check", "expected"),
                         [c[1:] for c in BOUNDARIES], ids=[c[0] for c in BOUNDARIES])
def test_boundaries(opts: dict[str, Any], max_kv: int, arrivals: list[Arrival], check: str,
                    expected: object) -> None:
    cfg = SimSettings(**opts)
    initial = {A: 1} if cfg.mode == "agg" else {P: 1, D: 1}
    sc = simple(constant_perf(max_kv=max_kv), cfg, initial, arrivals, until=60.0, step=5.0)
    rec, _ = play(sc, ReferenceCluster)
    done, fpm = rec.done_rows(), rec.fpm_rows()
    is_first = done[:, K.D_STATUS] == K.STATUS_FIRST_TOKEN
    measured = {
        "statuses": lambda: done[~is_first][:, K.D_STATUS].astype(int).tolist(),
        "first_tokens": lambda: int(is_first.sum()),
        "max_running": lambda: int(fpm[:, K.F_S_NDEC].max()),
        "prefill_iterations": lambda: int((fpm[:, K.F_S_NPRE] > 0).sum()),
    }[check]()
    assert measured == expected


@pytest.mark.parametrize(("until", "expected_rows"), [(0.999, 0), (1.0, 1), (2.5, 2)],
                         ids=["just_under_period", "exactly_one_period", "two_periods"])
def test_heartbeat_after_a_silent_period(until: float, expected_rows: int) -> None:
    perf, cfg = const(heartbeat_s=1.0)
    c = ReferenceCluster(perf, cfg, {P: 1, D: 0})
    empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    t = 0.0
    while t < until:
        t = min(t + 0.5, until)
        c.advance(t, empty_f, empty_i, empty_i, empty_i, lambda: None)
    rows = c.take_fpm()
    assert rows.shape[0] == expected_rows
    assert not rows[:, K.F_WALL:].any()


def test_removal_order_slot_reuse_and_failure_records() -> None:
    perf, cfg = const(startup_delay_s=10.0, drain_timeout_s=0.0)
    c = ReferenceCluster(perf, cfg, {P: 1, D: 2})
    c.advance(1.0, np.array([0.5, 0.5]), np.array([100, 100]), np.array([500, 500]),
              np.array([7, 8]), lambda: None)
    c.set_targets({D: 4})  # slots 3 and 4 start (ready at 11 s)
    events = c.set_targets({D: 1})  # both starting ones (newest first), then ready slot 2
    assert [e.worker_id for e in events] == ["decode-4", "decode-3", "decode-2"]
    assert [e.failed_requests for e in events] == [0, 0, 1]
    failed = c.take_done()
    failed = failed[failed[:, K.D_STATUS] == K.STATUS_FAILED_REMOVED]
    assert failed[:, K.D_ENGINE].tolist() == [2.0] and failed[:, K.D_TRACE].tolist() == [8.0]
    added = c.set_targets({D: 2, P: 2})  # lowest dead slot first
    assert [c.worker_id(e) for e in range(c.n_engines)] == [
        "prefill-0", "decode-1", "decode-5", "prefill-6", "decode-4"]
    assert [e.ready_at_s for e in added] == [11.0, 11.0]


def test_frontend_holds_requests_until_an_engine_is_ready() -> None:
    perf, cfg = const(startup_delay_s=120.0)
    sc = Scenario(perf, cfg, {P: 0, D: 1}, [(1.0, 1000, 1)], [float(t) for t in range(5, 135, 5)],
                  {0: {P: 1}})
    for cls in (ReferenceCluster, SimCluster):
        rec, states = play(sc, cls)
        assert [s["frontend"] for s in states[:2]] == [1, 1]
        assert outcomes(rec)[0][K.D_FIRST] == pytest.approx(126.0)  # ready at 5 + 120, 1 s prefill


# ------------------------------------------------------------- documented SimCluster defects
ZERO_DELAY = Scenario(*const(startup_delay_s=0.0), {P: 0, D: 1}, [(1.0, 1000, 1)],
                      [2.0, 3.0, 10.0], {0: {P: 1}})
AGG_EMPTY_PROMPT = Scenario(*const(mode="agg"), {A: 1}, [(1.0, 0, 5)], [2.0, 10.0], {})


def test_engine_ready_at_once_takes_frontend_requests() -> None:
    rec, _ = play(ZERO_DELAY, ReferenceCluster)
    assert outcomes(rec)[0][K.D_FIRST] == pytest.approx(3.0)  # routed at 2.0 s, 1 s of prefill


def test_agg_request_with_empty_prompt_is_decoded() -> None:
    rec, _ = play(AGG_EMPTY_PROMPT, ReferenceCluster)
    r = outcomes(rec)[0]
    assert (r[K.D_STATUS], r[K.D_FIRST], r[K.D_DONE]) == pytest.approx((K.STATUS_OK, 1.0, 1.04))


def test_kernel_zero_delay_engine_takes_frontend_requests() -> None:
    run_both(ZERO_DELAY)


def test_kernel_agg_empty_prompt_is_decoded() -> None:
    run_both(AGG_EMPTY_PROMPT)


# ----------------------------------------------------------------------------- bad input
def _cluster() -> ReferenceCluster:
    return ReferenceCluster(*const(), {P: 1, D: 1})


def _advance(t_end: float, t: list[float], isl: list[int] | None = None,
             osl: list[int] | None = None) -> Callable[[ReferenceCluster], None]:
    def go(c: ReferenceCluster) -> None:
        n = len(t)
        c.advance(t_end, np.array(t, dtype=np.float64), np.array(isl or [10] * n),
                  np.array(osl or [1] * n), np.arange(len(t)), lambda: None)
    return go


def _finish_then_advance(c: ReferenceCluster) -> None:
    c.finish()
    _advance(2.0, [])(c)


BAD_INPUT = [
    ("unsorted_arrivals", _advance(5.0, [2.0, 1.0]), SimulationError, r"arr_t\[1\] = 1.0"),
    ("arrival_after_t_end", _advance(5.0, [5.5]), SimulationError, r"arr_t\[0\] = 5.5"),
    ("arrival_nan", _advance(5.0, [math.nan]), SimulationError, r"arr_t\[0\] = nan"),
    ("negative_isl", _advance(5.0, [1.0], isl=[-1]), SimulationError, r"arr_isl\[0\] = -1"),
    ("lengths_differ", _advance(5.0, [1.0], isl=[1, 2]), SimulationError, "one length"),
    ("t_end_nan", _advance(math.nan, []), SimulationError, "t_end must be finite"),
    ("after_finish", _finish_then_advance, SimulationError, "after finish"),
    ("unknown_pool", lambda c: c.set_targets({A: 1}), SimulationError, "pool agg does not exist"),
    ("negative_target", lambda c: c.set_targets({D: -1}), SimulationError, "must be >= 0"),
]


@pytest.mark.parametrize(("action", "error", "match"), [b[1:] for b in BAD_INPUT],
                         ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_named(action: Callable[[ReferenceCluster], None], error: type[Exception],
                            match: str) -> None:
    with pytest.raises(error, match=match):
        action(_cluster())


def test_going_back_in_time_and_bad_initial_pools_are_refused() -> None:
    c = _cluster()
    _advance(3.0, [])(c)
    with pytest.raises(SimulationError, match=r"arr_t\[0\] = 2.0"):
        _advance(4.0, [2.0])(c)
    with pytest.raises(ValueError, match="t_end must be finite and >= now"):
        _advance(2.0, [])(c)
    with pytest.raises(ValueError, match="initial engines: agg=1"):
        ReferenceCluster(*const(), {A: 1})
