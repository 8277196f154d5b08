"""The simulator's per-event engine loop, compiled with numba.

State lives in a handful of numpy arrays (column layouts below) so the loop runs without Python
objects. ``advance`` plays events in time order until ``t_end`` (or until an output buffer is
nearly full, returning early so the caller can drain it). Events: an engine's iteration ends, an
engine becomes ready, a request arrives, a KV transfer completes. Ties are processed in that
order, engines by index. The plain-Python twin is :mod:`sla_planner.sim.reference`.

Semantics (shared with the reference):

* Prefill engine: FIFO queue; an iteration takes up to ``max_num_batched_tokens`` prompt tokens from
  the head (chunked prefill); a chunk of ``c`` tokens of a request with ISL ``L`` costs
  ``c / rate(L)`` seconds, ``rate(L) = thpt_per_gpu(L) * gpus / time_scale`` (so a lone request
  takes exactly its profiled TTFT). The first token is emitted when the last chunk finishes.
* Decode engine: continuous batching; admission (FIFO, at iteration start) needs
  ``reserved + ISL + OSL <= max_kv_tokens`` and fewer than ``max_num_seqs`` running; an iteration
  generates one token per running request and lasts ``ITL(kv_usage, mean context) * time_scale``.
* Aggregated engine: both in one iteration: the decode step plus a prefill chunk of up to
  ``max_num_batched_tokens - running`` tokens; prefilled requests join the same engine's decode
  queue.
* Routing: arrivals to the ready prefill (or agg) engine with the fewest queued prompt tokens;
  after ``transfer_s``, to the ready decode engine with the most unreserved KV (running and
  waiting reservations both count). With no ready engine a request waits at the frontend until
  one is ready. A request whose ISL + OSL exceeds ``max_kv_tokens`` can never run: rejected.
* Idle engines emit an all-zero heartbeat FPM every ``heartbeat_s`` (see ``emit_heartbeats``).
* Draining (a scale-down that lets work finish): a draining engine gets no new requests, keeps
  serving what it holds, and retires as soon as it holds nothing (checked whenever it would start
  an iteration); at its deadline whatever it still holds fails and it retires. Retired engines
  are marked ``EI_DRAINING = DRAIN_RETIRED`` (time in ``EF_DRAIN_AT``, requests failed at the
  deadline in ``EI_DRAIN_FAILED``) until the cluster reports them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._lookup import bilinear_nb, hermite_nb

# ---- pools
POOL_PREFILL = 0
POOL_DECODE = 1
POOL_AGG = 2

# ---- engine float columns
EF_READY_AT = 0
EF_ITER_END = 1
EF_ITER_START = 2
EF_Q_TOKENS = 3  # prompt tokens queued and not yet prefilled
EF_KV = 4  # KV tokens held by running requests
EF_RESERVED = 5  # KV reserved by running + waiting requests
EF_LAST_FPM = 6
EF_ITER_DUR = 7
EF_ADDED_AT = 8
EF_WAIT_RES = 9  # KV reserved by waiting (not yet admitted) decode requests
EF_DRAIN_AT = 10  # draining: the deadline; retired: when it retired
N_EF = 11

# ---- engine int columns
EI_POOL = 0
EI_ALIVE = 1
EI_READY = 2
EI_BUSY = 3
EI_VERSION = 4
EI_Q_HEAD = 5
EI_Q_TAIL = 6
EI_Q_COUNT = 7
EI_RUN_HEAD = 8
EI_RUN_COUNT = 9
EI_WAIT_HEAD = 10
EI_WAIT_TAIL = 11
EI_WAIT_COUNT = 12
EI_ITERS = 13
EI_DIRTY = 14  # 1 while on the to-kick list
EI_DIRTY_NEXT = 15
EI_DRAINING = 16  # DRAIN_NONE / DRAIN_ACTIVE / DRAIN_RETIRED
EI_DRAIN_FAILED = 17  # requests failed at the drain deadline
N_EI = 18

# drain states
DRAIN_NONE = 0
DRAIN_ACTIVE = 1
DRAIN_RETIRED = 2

# ---- request float columns
RF_ARRIVAL = 0
RF_FIRST = 1
RF_PREFILLED = 2
RF_CHUNK = 3
RF_RATE = 4
N_RF = 5

# ---- request int columns
RI_TRACE = 0
RI_ISL = 1
RI_OSL = 2
RI_DECODED = 3  # tokens generated after the first
RI_NEXT = 4
RI_STATE = 5
RI_ENGINE = 6
N_RI = 7

# request states
RS_FREE = 0
RS_FRONTEND = 1
RS_PREFILL = 2
RS_TRANSFER = 3
RS_WAIT = 4
RS_RUN = 5

# ---- global int scalars
G_FREE_HEAD = 0
G_HEAP_N = 1
G_TR_HEAD = 2
G_TR_TAIL = 3
G_FQ_HEAD = 4
G_FQ_TAIL = 5
G_FPM_N = 6
G_DONE_N = 7
G_IN_FLIGHT = 8
G_ARR_CURSOR = 9
G_FQ_COUNT = 10
G_DIRTY_HEAD = 11
N_G = 12

# ---- params (float)
P_TIME_SCALE = 0
P_PREFILL_GPUS = 1
P_MAX_BATCHED = 2
P_MAX_SEQS = 3
P_MAX_KV = 4
P_KV_MIN = 5
P_KV_STEP = 6
P_CTX_MIN = 7  # log(context tokens) of the first decode grid column
P_CTX_STEP = 8  # step of the decode grid columns in log(context tokens)
P_TRANSFER_S = 9
P_HEARTBEAT_S = 10
P_AGG = 11
N_P = 12

# heap event kinds
EV_ITER_END = 0
EV_READY = 1
EV_DRAIN_DEADLINE = 2

# ---- FPM record columns
F_ENGINE = 0
F_TIME = 1
F_WALL = 2
F_S_NPRE = 3
F_S_PRE_TOK = 4
F_S_PRE_VAR = 5
F_S_PRE_KV = 6
F_S_NDEC = 7
F_S_DEC_KV = 8
F_S_DEC_VAR = 9
F_Q_NPRE = 10
F_Q_PRE_TOK = 11
F_Q_PRE_VAR = 12
F_Q_NDEC = 13
F_Q_DEC_KV = 14
F_Q_DEC_VAR = 15
N_F = 16

# ---- completion record columns
D_TRACE = 0
D_ARRIVAL = 1
D_FIRST = 2
D_DONE = 3
D_ISL = 4
D_OSL = 5
D_STATUS = 6
D_ENGINE = 7
N_D = 8

STATUS_OK = 0
STATUS_FAILED_REMOVED = 1
STATUS_REJECTED_TOO_LONG = 2
STATUS_UNFINISHED = 3
STATUS_FIRST_TOKEN = 4  # not an outcome: the request's first token (for the TTFT histogram)

# advance() return codes
ADV_DONE = 0
ADV_BUFFER_FULL = 1
ADV_NO_SLOTS = 2


# ----------------------------------------------------------------------------------- heap
@njit(cache=True)
def _heap_push(ht, he, hk, hv, g, t, e, k, v):  # pragma: no cover - jitted
    i = g[G_HEAP_N]
    g[G_HEAP_N] = i + 1
    ht[i] = t
    he[i] = e
    hk[i] = k
    hv[i] = v
    while i > 0:
        p = (i - 1) >> 1
        # order: time, then kind (iteration ends before readiness), then engine index
        if ht[p] < ht[i] or (
            ht[p] == ht[i] and (hk[p] < hk[i] or (hk[p] == hk[i] and he[p] <= he[i]))
        ):
            break
        ht[p], ht[i] = ht[i], ht[p]
        he[p], he[i] = he[i], he[p]
        hk[p], hk[i] = hk[i], hk[p]
        hv[p], hv[i] = hv[i], hv[p]
        i = p


@njit(cache=True)
def _heap_less(ht, he, hk, a, b):  # pragma: no cover - jitted
    if ht[a] != ht[b]:
        return ht[a] < ht[b]
    if hk[a] != hk[b]:
        return hk[a] < hk[b]
    return he[a] < he[b]


@njit(cache=True)
def _heap_pop(ht, he, hk, hv, g):  # pragma: no cover - jitted
    n = g[G_HEAP_N] - 1
    g[G_HEAP_N] = n
    ht[0] = ht[n]
    he[0] = he[n]
    hk[0] = hk[n]
    hv[0] = hv[n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        c = left
        if left + 1 < n and _heap_less(ht, he, hk, left + 1, left):
            c = left + 1
        if _heap_less(ht, he, hk, c, i):
            ht[c], ht[i] = ht[i], ht[c]
            he[c], he[i] = he[i], he[c]
            hk[c], hk[i] = hk[i], hk[c]
            hv[c], hv[i] = hv[i], hv[c]
            i = c
        else:
            break


# ------------------------------------------------------------------------------ requests
@njit(cache=True)
def _finish(rf, ri, g, done, r, t, status, engine):  # pragma: no cover - jitted
    n = g[G_DONE_N]
    done[n, D_TRACE] = ri[r, RI_TRACE]
    done[n, D_ARRIVAL] = rf[r, RF_ARRIVAL]
    done[n, D_FIRST] = rf[r, RF_FIRST]
    done[n, D_DONE] = t
    done[n, D_ISL] = ri[r, RI_ISL]
    done[n, D_OSL] = ri[r, RI_OSL]
    done[n, D_STATUS] = status
    done[n, D_ENGINE] = engine
    g[G_DONE_N] = n + 1
    ri[r, RI_STATE] = RS_FREE
    ri[r, RI_NEXT] = g[G_FREE_HEAD]
    g[G_FREE_HEAD] = r
    g[G_IN_FLIGHT] -= 1


@njit(cache=True)
def _record_first(rf, ri, g, done, r, t, engine):  # pragma: no cover - jitted
    rf[r, RF_FIRST] = t
    n = g[G_DONE_N]
    done[n, D_TRACE] = ri[r, RI_TRACE]
    done[n, D_ARRIVAL] = rf[r, RF_ARRIVAL]
    done[n, D_FIRST] = t
    done[n, D_DONE] = t
    done[n, D_ISL] = ri[r, RI_ISL]
    done[n, D_OSL] = ri[r, RI_OSL]
    done[n, D_STATUS] = STATUS_FIRST_TOKEN
    done[n, D_ENGINE] = engine
    g[G_DONE_N] = n + 1


@njit(cache=True)
def _append(ei, ri, e, head_col, tail_col, count_col, r):  # pragma: no cover - jitted
    ri[r, RI_NEXT] = -1
    if ei[e, head_col] < 0:
        ei[e, head_col] = r
    else:
        ri[ei[e, tail_col], RI_NEXT] = r
    if tail_col >= 0:
        ei[e, tail_col] = r
    ei[e, count_col] += 1


@njit(cache=True)
def _mark(ei, g, e):  # pragma: no cover - jitted
    """Put engine e on the list of engines to (re)consider starting an iteration."""
    if ei[e, EI_DIRTY] == 0:
        ei[e, EI_DIRTY] = 1
        ei[e, EI_DIRTY_NEXT] = g[G_DIRTY_HEAD]
        g[G_DIRTY_HEAD] = e


# ------------------------------------------------------------------------------- routing
@njit(cache=True)
def _route_prefill(ef, ei, n_engines, want_pool):  # pragma: no cover - jitted
    best = -1
    best_tokens = 0.0
    for e in range(n_engines):
        if (
            ei[e, EI_ALIVE] == 1
            and ei[e, EI_READY] == 1
            and ei[e, EI_POOL] == want_pool
            and ei[e, EI_DRAINING] == DRAIN_NONE
        ):
            q = ef[e, EF_Q_TOKENS]
            if best < 0 or q < best_tokens:
                best = e
                best_tokens = q
    return best


@njit(cache=True)
def _route_decode(ef, ei, n_engines, want_pool):  # pragma: no cover - jitted
    best = -1
    best_free = 0.0
    for e in range(n_engines):
        if (
            ei[e, EI_ALIVE] == 1
            and ei[e, EI_READY] == 1
            and ei[e, EI_POOL] == want_pool
            and ei[e, EI_DRAINING] == DRAIN_NONE
        ):
            free = -(ef[e, EF_RESERVED] + ef[e, EF_WAIT_RES])
            if best < 0 or free > best_free:
                best = e
                best_free = free
    return best


@njit(cache=True)
def _enqueue_prefill(ef, ei, rf, ri, g, e, r):  # pragma: no cover - jitted
    _mark(ei, g, e)
    ri[r, RI_STATE] = RS_PREFILL
    ri[r, RI_ENGINE] = e
    _append(ei, ri, e, EI_Q_HEAD, EI_Q_TAIL, EI_Q_COUNT, r)
    ef[e, EF_Q_TOKENS] += ri[r, RI_ISL] - rf[r, RF_PREFILLED]


@njit(cache=True)
def _enqueue_decode(ef, ei, ri, g, e, r):  # pragma: no cover - jitted
    _mark(ei, g, e)
    ri[r, RI_STATE] = RS_WAIT
    ri[r, RI_ENGINE] = e
    _append(ei, ri, e, EI_WAIT_HEAD, EI_WAIT_TAIL, EI_WAIT_COUNT, r)
    ef[e, EF_WAIT_RES] += ri[r, RI_ISL] + ri[r, RI_OSL]


@njit(cache=True)
def _frontend_push(ri, g, r):  # pragma: no cover - jitted
    ri[r, RI_STATE] = RS_FRONTEND
    ri[r, RI_NEXT] = -1
    if g[G_FQ_HEAD] < 0:
        g[G_FQ_HEAD] = r
    else:
        ri[g[G_FQ_TAIL], RI_NEXT] = r
    g[G_FQ_TAIL] = r
    g[G_FQ_COUNT] += 1


@njit(cache=True)
def _handoff_to_decode(ef, ei, rf, ri, g, done, n_engines, params, r, t):  # pragma: no cover
    need = ri[r, RI_ISL] + ri[r, RI_OSL]
    if need > params[P_MAX_KV]:
        _finish(rf, ri, g, done, r, t, STATUS_REJECTED_TOO_LONG, -1)
        return
    e = _route_decode(ef, ei, n_engines, POOL_AGG if params[P_AGG] > 0.0 else POOL_DECODE)
    if e < 0:
        _frontend_push(ri, g, r)
        return
    _enqueue_decode(ef, ei, ri, g, e, r)


@njit(cache=True)
def _route_new(ef, ei, rf, ri, g, done, n_engines, params, agg, r, t):  # pragma: no cover
    """Route a request that has not been prefilled (arrival or frontend retry)."""
    if agg and ri[r, RI_ISL] + ri[r, RI_OSL] > params[P_MAX_KV]:
        _finish(rf, ri, g, done, r, t, STATUS_REJECTED_TOO_LONG, -1)
        return
    e = _route_prefill(ef, ei, n_engines, POOL_AGG if agg else POOL_PREFILL)
    if e < 0:
        _frontend_push(ri, g, r)
        return
    _enqueue_prefill(ef, ei, rf, ri, g, e, r)


@njit(cache=True)
def _drain_frontend(ef, ei, rf, ri, g, done, n_engines, params, agg, t):  # pragma: no cover
    """Retry every request waiting at the frontend, in arrival order."""
    r = g[G_FQ_HEAD]
    g[G_FQ_HEAD] = -1
    g[G_FQ_TAIL] = -1
    g[G_FQ_COUNT] = 0
    while r >= 0:
        nxt = ri[r, RI_NEXT]
        if rf[r, RF_FIRST] >= 0.0:
            _handoff_to_decode(ef, ei, rf, ri, g, done, n_engines, params, r, t)
        else:
            _route_new(ef, ei, rf, ri, g, done, n_engines, params, agg, r, t)
        r = nxt


# ---------------------------------------------------------------------------- iterations
@njit(cache=True)
def _decode_time(ef, ei, params, z_itl, e):  # pragma: no cover - jitted
    n = ei[e, EI_RUN_COUNT]
    if n == 0:
        return 0.0
    kv = ef[e, EF_KV]
    usage = kv / params[P_MAX_KV]
    log_ctx = np.log(max(kv / n, 1.0))  # the grid's context axis is uniform in log(tokens)
    itl_ms = bilinear_nb(
        z_itl, params[P_KV_MIN], params[P_KV_STEP], params[P_CTX_MIN], params[P_CTX_STEP], usage, log_ctx
    )
    return itl_ms * 1e-3 * params[P_TIME_SCALE]


@njit(cache=True)
def _admit_decode(ef, ei, ri, params, e):  # pragma: no cover - jitted
    """Move waiting requests to running (FIFO) while KV and max_num_seqs allow."""
    while ei[e, EI_WAIT_HEAD] >= 0 and ei[e, EI_RUN_COUNT] < params[P_MAX_SEQS]:
        r = ei[e, EI_WAIT_HEAD]
        need = ri[r, RI_ISL] + ri[r, RI_OSL]
        if ef[e, EF_RESERVED] + need > params[P_MAX_KV]:
            break
        ef[e, EF_WAIT_RES] -= need
        ef[e, EF_RESERVED] += need
        ei[e, EI_WAIT_HEAD] = ri[r, RI_NEXT]
        if ei[e, EI_WAIT_HEAD] < 0:
            ei[e, EI_WAIT_TAIL] = -1
        ei[e, EI_WAIT_COUNT] -= 1
        ri[r, RI_STATE] = RS_RUN
        ri[r, RI_NEXT] = ei[e, EI_RUN_HEAD]
        ei[e, EI_RUN_HEAD] = r
        ei[e, EI_RUN_COUNT] += 1
        ef[e, EF_KV] += ri[r, RI_ISL] + ri[r, RI_DECODED]


@njit(cache=True)
def _var(s, s2, n):  # pragma: no cover - jitted
    if n <= 0:
        return 0.0
    m = s / n
    v = s2 / n - m * m
    return v if v > 0.0 else 0.0


@njit(cache=True)
def _start_iteration(ef, ei, rf, ri, g, params, z_itl, fpm, e, t):  # pragma: no cover
    """Schedule an iteration on engine e at time t if it has work; record its FPM. True if started."""
    pool = ei[e, EI_POOL]
    dur = 0.0
    n_dec = 0
    dec_kv = 0.0
    dec_kv2 = 0.0
    if pool != POOL_PREFILL:
        _admit_decode(ef, ei, ri, params, e)
        n_dec = ei[e, EI_RUN_COUNT]
        r = ei[e, EI_RUN_HEAD]
        while r >= 0:
            c = ri[r, RI_ISL] + ri[r, RI_DECODED]
            dec_kv += c
            dec_kv2 += c * c
            r = ri[r, RI_NEXT]
        dur += _decode_time(ef, ei, params, z_itl, e)
    n_pre = 0
    pre_tok = 0.0
    pre_len = 0.0
    pre_len2 = 0.0
    pre_kv = 0.0
    if pool != POOL_DECODE:
        budget = params[P_MAX_BATCHED] - n_dec
        r = ei[e, EI_Q_HEAD]
        while r >= 0 and budget > 0:
            remaining = ri[r, RI_ISL] - rf[r, RF_PREFILLED]
            c = remaining if remaining < budget else budget
            rf[r, RF_CHUNK] = c
            budget -= c
            pre_tok += c
            pre_kv += rf[r, RF_PREFILLED]
            L = float(ri[r, RI_ISL])
            pre_len += L
            pre_len2 += L * L
            n_pre += 1
            if c > 0:
                dur += c / rf[r, RF_RATE]
            r = ri[r, RI_NEXT]
    if n_pre == 0 and n_dec == 0:
        return False
    if dur <= 0.0:
        dur = 1e-6
    ei[e, EI_BUSY] = 1
    ei[e, EI_ITERS] += 1
    ef[e, EF_ITER_START] = t
    ef[e, EF_ITER_END] = t + dur
    ef[e, EF_ITER_DUR] = dur
    # queued (not scheduled) load at iteration start
    q_npre = ei[e, EI_Q_COUNT] - n_pre
    q_pre_tok = ef[e, EF_Q_TOKENS] - pre_tok
    q_len = 0.0
    q_len2 = 0.0
    rr = ei[e, EI_Q_HEAD]
    k = 0
    while rr >= 0:
        if k >= n_pre:
            L = float(ri[rr, RI_ISL])
            q_len += L
            q_len2 += L * L
        k += 1
        rr = ri[rr, RI_NEXT]
    q_ndec = ei[e, EI_WAIT_COUNT]
    q_dec_kv = 0.0
    q_dec_kv2 = 0.0
    rr = ei[e, EI_WAIT_HEAD]
    while rr >= 0:
        c = float(ri[rr, RI_ISL] + ri[rr, RI_DECODED])
        q_dec_kv += c
        q_dec_kv2 += c * c
        rr = ri[rr, RI_NEXT]
    n = g[G_FPM_N]
    fpm[n, F_ENGINE] = e
    fpm[n, F_TIME] = t + dur
    fpm[n, F_WALL] = dur
    fpm[n, F_S_NPRE] = n_pre
    fpm[n, F_S_PRE_TOK] = pre_tok
    fpm[n, F_S_PRE_VAR] = _var(pre_len, pre_len2, n_pre)
    fpm[n, F_S_PRE_KV] = pre_kv
    fpm[n, F_S_NDEC] = n_dec
    fpm[n, F_S_DEC_KV] = dec_kv
    fpm[n, F_S_DEC_VAR] = _var(dec_kv, dec_kv2, n_dec)
    fpm[n, F_Q_NPRE] = q_npre
    fpm[n, F_Q_PRE_TOK] = q_pre_tok
    fpm[n, F_Q_PRE_VAR] = _var(q_len, q_len2, q_npre)
    fpm[n, F_Q_NDEC] = q_ndec
    fpm[n, F_Q_DEC_KV] = q_dec_kv
    fpm[n, F_Q_DEC_VAR] = _var(q_dec_kv, q_dec_kv2, q_ndec)
    g[G_FPM_N] = n + 1
    ef[e, EF_LAST_FPM] = t + dur
    return True


@njit(cache=True)
def _end_iteration(ef, ei, rf, ri, g, done, tr_t, tr_r, n_engines, params, e, t):  # pragma: no cover
    """Apply the effects of engine e's iteration that ends at t."""
    ei[e, EI_BUSY] = 0
    _mark(ei, g, e)
    pool = ei[e, EI_POOL]
    agg = pool == POOL_AGG
    # decode step: one token per running request
    if pool != POOL_PREFILL:
        prev = -1
        r = ei[e, EI_RUN_HEAD]
        while r >= 0:
            nxt = ri[r, RI_NEXT]
            ri[r, RI_DECODED] += 1
            ef[e, EF_KV] += 1.0
            if 1 + ri[r, RI_DECODED] >= ri[r, RI_OSL]:
                if prev < 0:
                    ei[e, EI_RUN_HEAD] = nxt
                else:
                    ri[prev, RI_NEXT] = nxt
                ei[e, EI_RUN_COUNT] -= 1
                ef[e, EF_KV] -= ri[r, RI_ISL] + ri[r, RI_DECODED]
                ef[e, EF_RESERVED] -= ri[r, RI_ISL] + ri[r, RI_OSL]
                _finish(rf, ri, g, done, r, t, STATUS_OK, e)
            else:
                prev = r
            r = nxt
    # prefill chunks: the scheduled requests are a prefix of the queue
    if pool != POOL_DECODE:
        r = ei[e, EI_Q_HEAD]
        while r >= 0 and rf[r, RF_CHUNK] > 0:
            nxt = ri[r, RI_NEXT]
            c = rf[r, RF_CHUNK]
            rf[r, RF_CHUNK] = 0.0
            rf[r, RF_PREFILLED] += c
            ef[e, EF_Q_TOKENS] -= c
            if rf[r, RF_PREFILLED] >= ri[r, RI_ISL]:
                # pop from the queue head (r is always the head here)
                ei[e, EI_Q_HEAD] = nxt
                if nxt < 0:
                    ei[e, EI_Q_TAIL] = -1
                ei[e, EI_Q_COUNT] -= 1
                _record_first(rf, ri, g, done, r, t, e)
                if ri[r, RI_OSL] <= 1:
                    _finish(rf, ri, g, done, r, t, STATUS_OK, e)
                elif agg:
                    _enqueue_decode(ef, ei, ri, g, e, r)
                elif params[P_TRANSFER_S] > 0.0:
                    ri[r, RI_STATE] = RS_TRANSFER
                    k = g[G_TR_TAIL]
                    tr_t[k] = t + params[P_TRANSFER_S]
                    tr_r[k] = r
                    g[G_TR_TAIL] = (k + 1) % tr_t.shape[0]
                else:
                    _handoff_to_decode(ef, ei, rf, ri, g, done, n_engines, params, r, t)
            r = nxt


@njit(cache=True)
def _kick(ef, ei, rf, ri, g, params, z_itl, fpm, ht, he, hk, hv, n_engines, t):  # pragma: no cover
    """Start an iteration on every marked idle ready engine that has work."""
    e = g[G_DIRTY_HEAD]
    g[G_DIRTY_HEAD] = -1
    while e >= 0:
        nxt = ei[e, EI_DIRTY_NEXT]
        ei[e, EI_DIRTY] = 0
        if ei[e, EI_ALIVE] == 1 and ei[e, EI_READY] == 1 and ei[e, EI_BUSY] == 0:
            if _start_iteration(ef, ei, rf, ri, g, params, z_itl, fpm, e, t):
                _heap_push(ht, he, hk, hv, g, ef[e, EF_ITER_END], e, EV_ITER_END, ei[e, EI_VERSION])
            elif ei[e, EI_DRAINING] == DRAIN_ACTIVE and holds_nothing(ei, e):
                retire_engine(ef, ei, e, t)
        e = nxt


@njit(cache=True)
def holds_nothing(ei, e):  # pragma: no cover - jitted
    """Engine e holds no request (queued, waiting or running)."""
    return ei[e, EI_Q_COUNT] == 0 and ei[e, EI_RUN_COUNT] == 0 and ei[e, EI_WAIT_COUNT] == 0


@njit(cache=True)
def retire_engine(ef, ei, e, t):  # pragma: no cover - jitted
    """A drained engine leaves at t (it holds nothing); the cluster reports it later."""
    ei[e, EI_ALIVE] = 0
    ei[e, EI_READY] = 0
    ei[e, EI_BUSY] = 0
    ei[e, EI_VERSION] += 1
    ei[e, EI_DRAINING] = DRAIN_RETIRED
    ef[e, EF_DRAIN_AT] = t


@njit(cache=True)
def advance(
    ef, ei, rf, ri, g, params, px, py, pd, z_itl,
    ht, he, hk, hv, tr_t, tr_r, fpm, done,
    arr_t, arr_isl, arr_osl, arr_idx,
    n_engines, t_now, t_end,
):  # pragma: no cover - jitted
    """Play events in (t_now, t_end]; returns (code, time reached)."""
    fpm_cap = fpm.shape[0] - n_engines - 2
    done_cap = done.shape[0] - 2 * ri.shape[0] - 2
    agg = params[P_AGG] > 0.0
    t = t_now
    while True:
        if g[G_FPM_N] >= fpm_cap or g[G_DONE_N] >= done_cap:
            return ADV_BUFFER_FULL, t
        # next candidate times
        t_heap = ht[0] if g[G_HEAP_N] > 0 else np.inf
        cur = g[G_ARR_CURSOR]
        t_arr = arr_t[cur] if cur < arr_t.shape[0] else np.inf
        t_tr = tr_t[g[G_TR_HEAD]] if g[G_TR_HEAD] != g[G_TR_TAIL] else np.inf
        t_next = min(t_heap, t_arr, t_tr)
        if t_next > t_end:
            return ADV_DONE, t_end
        t = t_next
        if t_heap == t_next:
            e = he[0]
            k = hk[0]
            v = hv[0]
            _heap_pop(ht, he, hk, hv, g)
            if ei[e, EI_ALIVE] == 0 or v != ei[e, EI_VERSION]:
                continue
            if k == EV_ITER_END:
                _end_iteration(ef, ei, rf, ri, g, done, tr_t, tr_r, n_engines, params, e, t)
            elif k == EV_DRAIN_DEADLINE:
                if ei[e, EI_DRAINING] == DRAIN_ACTIVE:
                    before = g[G_DONE_N]
                    remove_engine(ef, ei, rf, ri, g, done, e, t)
                    ei[e, EI_DRAIN_FAILED] = g[G_DONE_N] - before
                    ei[e, EI_DRAINING] = DRAIN_RETIRED
                    ef[e, EF_DRAIN_AT] = t
            else:
                ei[e, EI_READY] = 1
                _mark(ei, g, e)
                _drain_frontend(ef, ei, rf, ri, g, done, n_engines, params, agg, t)
        elif t_tr == t_next:
            k = g[G_TR_HEAD]
            r = tr_r[k]
            g[G_TR_HEAD] = (k + 1) % tr_t.shape[0]
            if ri[r, RI_STATE] == RS_TRANSFER:
                _handoff_to_decode(ef, ei, rf, ri, g, done, n_engines, params, r, t)
        else:
            r = g[G_FREE_HEAD]
            if r < 0:
                return ADV_NO_SLOTS, t
            g[G_FREE_HEAD] = ri[r, RI_NEXT]
            g[G_ARR_CURSOR] = cur + 1
            g[G_IN_FLIGHT] += 1
            L = arr_isl[cur]
            ri[r, RI_TRACE] = arr_idx[cur]
            ri[r, RI_ISL] = L
            ri[r, RI_OSL] = arr_osl[cur]
            ri[r, RI_DECODED] = 0
            ri[r, RI_ENGINE] = -1
            rf[r, RF_ARRIVAL] = t
            rf[r, RF_FIRST] = -1.0
            rf[r, RF_PREFILLED] = 0.0
            rf[r, RF_CHUNK] = 0.0
            rate = hermite_nb(px, py, pd, float(L)) * params[P_PREFILL_GPUS] / params[P_TIME_SCALE]
            rf[r, RF_RATE] = rate if rate > 0.0 else 1.0
            if L <= 0:
                # nothing to prefill: first token at arrival
                _record_first(rf, ri, g, done, r, t, -1)
                if arr_osl[cur] <= 1:
                    _finish(rf, ri, g, done, r, t, STATUS_OK, -1)
                else:
                    _handoff_to_decode(ef, ei, rf, ri, g, done, n_engines, params, r, t)
            else:
                _route_new(ef, ei, rf, ri, g, done, n_engines, params, agg, r, t)
        _kick(ef, ei, rf, ri, g, params, z_itl, fpm, ht, he, hk, hv, n_engines, t)


@njit(cache=True)
def remove_engine(ef, ei, rf, ri, g, done, e, t):  # pragma: no cover - jitted
    """Remove engine e at time t: every request it holds fails."""
    for head_col in (EI_Q_HEAD, EI_WAIT_HEAD, EI_RUN_HEAD):
        r = ei[e, head_col]
        while r >= 0:
            nxt = ri[r, RI_NEXT]
            _finish(rf, ri, g, done, r, t, STATUS_FAILED_REMOVED, e)
            r = nxt
    ei[e, EI_ALIVE] = 0
    ei[e, EI_READY] = 0
    ei[e, EI_BUSY] = 0
    ei[e, EI_VERSION] += 1
    ei[e, EI_Q_HEAD] = -1
    ei[e, EI_Q_TAIL] = -1
    ei[e, EI_Q_COUNT] = 0
    ei[e, EI_RUN_HEAD] = -1
    ei[e, EI_RUN_COUNT] = 0
    ei[e, EI_WAIT_HEAD] = -1
    ei[e, EI_WAIT_TAIL] = -1
    ei[e, EI_WAIT_COUNT] = 0
    ef[e, EF_Q_TOKENS] = 0.0
    ef[e, EF_KV] = 0.0
    ef[e, EF_RESERVED] = 0.0
    ef[e, EF_WAIT_RES] = 0.0


@njit(cache=True)
def fail_all_in_flight(rf, ri, g, done, t):  # pragma: no cover - jitted
    """End of replay: every request still in flight is recorded as unfinished."""
    for r in range(ri.shape[0]):
        if ri[r, RI_STATE] != RS_FREE:
            _finish(rf, ri, g, done, r, t, STATUS_UNFINISHED, ri[r, RI_ENGINE])


@njit(cache=True)
def emit_heartbeats(ef, ei, g, params, fpm, n_engines, t):  # pragma: no cover - jitted
    """Idle heartbeat (all-zero FPM, wall_time 0) for every ready, idle engine silent for a period."""
    period = params[P_HEARTBEAT_S]
    for e in range(n_engines):
        if ei[e, EI_ALIVE] == 1 and ei[e, EI_READY] == 1 and ei[e, EI_BUSY] == 0:
            if t - ef[e, EF_LAST_FPM] >= period:
                n = g[G_FPM_N]
                for c in range(N_F):
                    fpm[n, c] = 0.0
                fpm[n, F_ENGINE] = e
                fpm[n, F_TIME] = t
                g[G_FPM_N] = n + 1
                ef[e, EF_LAST_FPM] = t


@njit(cache=True)
def compact_heap(ht, he, hk, hv, g, ei):  # pragma: no cover - jitted
    """Drop stale heap entries (removed engines, superseded versions) and re-heapify."""
    n = g[G_HEAP_N]
    m = 0
    for i in range(n):
        e = he[i]
        if ei[e, EI_ALIVE] == 1 and hv[i] == ei[e, EI_VERSION]:
            ht[m] = ht[i]
            he[m] = he[i]
            hk[m] = hk[i]
            hv[m] = hv[i]
            m += 1
    g[G_HEAP_N] = 0
    for i in range(m):
        _heap_push(ht, he, hk, hv, g, ht[i], he[i], hk[i], hv[i])
