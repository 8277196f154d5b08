"""Load predictors: the shared input rules, each model's behaviour, the factory.

ARIMA and Prophet fits are the slow part; the tables keep them to a handful of short series.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TypeVar

import numpy as np
import pytest

from sla_planner.errors import PredictorError
from sla_planner.kernels import KalmanBankRef
from sla_planner.predict import (
    PREDICTOR_NAMES,
    ArimaPredictor,
    BasePredictor,
    ConstantPredictor,
    Forecast,
    KalmanPredictor,
    LinearPredictor,
    LoadPredictor,
    LoadPredictors,
    make_predictor,
    predictors_from_config,
    sanitize_value,
)
from sla_planner.predict import arima as arima_module
from sla_planner.predict.prophet_predictor import ProphetPredictor
from sla_planner.types import TrafficForecast

NAN, INF = math.nan, math.inf

Builder = Callable[[], BasePredictor]


def _prophet() -> ProphetPredictor:
    pytest.importorskip("prophet")
    return ProphetPredictor(window_size=50)


BUILDERS: dict[str, Builder] = {
    "constant": lambda: ConstantPredictor(),
    "linear": lambda: LinearPredictor(window_size=10),
    "kalman": lambda: KalmanPredictor(min_points=3),
    "arima": lambda: ArimaPredictor(),
    "prophet": _prophet,
}


P = TypeVar("P", bound=BasePredictor)


def fed(predictor: P, values: Sequence[float]) -> P:
    for v in values:
        predictor.add_data_point(v)
    return predictor


# --- shared rules, every predictor -------------------------------------------------------------

# (id, values, expected forecast, expected stored history); none of these reaches a model fit
# except "constant series", whose fits must return the constant.
COMMON_CASES = [
    ("empty", [], 0.0, ()),
    ("one point", [7.0], 7.0, (7.0,)),
    ("all zeros", [0.0, 0.0, 0.0], 0.0, ()),
    ("leading zeros then data", [0.0, 0.0, 5.0], 5.0, (5.0,)),
    ("nan and inf lead like zeros", [NAN, INF, -INF, 4.0], 4.0, (4.0,)),
    ("negative leads like zero", [-3.0, 4.0], 4.0, (4.0,)),
    ("nan after data is zero", [4.0, NAN], 0.0, (4.0, 0.0)),
    ("negative after data is zero", [4.0, -9.0], 0.0, (4.0, 0.0)),
]


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize(
    ("values", "expected", "history"),
    [c[1:] for c in COMMON_CASES],
    ids=[c[0] for c in COMMON_CASES],
)
def test_shared_input_rules(
    name: str, values: list[float], expected: float, history: tuple[float, ...]
) -> None:
    p = fed(BUILDERS[name](), values)
    maxlen = p._window.maxlen or len(history)
    assert p.history() == history[-maxlen:]  # constant and kalman keep one point
    assert p.num_points == len(history)
    assert p.predict_next() == expected
    assert p.get_last_value() == (sanitize_value(values[-1]) if values else 0.0)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_constant_series_forecasts_the_constant(name: str) -> None:
    p = fed(BUILDERS[name](), [5.0] * 12)
    assert p.ready
    assert p.predict_next() == pytest.approx(5.0, rel=1e-6)


@pytest.mark.parametrize("name", ["constant", "linear", "kalman", "arima"])
def test_forecast_never_negative_on_a_falling_series(name: str) -> None:
    p = fed(BUILDERS[name](), [100.0, 70.0, 40.0, 10.0, -20.0, -50.0])
    forecast = p.predict_next()
    assert forecast >= 0.0 and math.isfinite(forecast)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_predictor_satisfies_the_protocol(name: str) -> None:
    p = BUILDERS[name]()
    assert isinstance(p, LoadPredictor)
    assert p.name == name


@pytest.mark.parametrize(
    "value", ["5", None, True, b"1", [1.0]], ids=["str", "none", "bool", "bytes", "list"]
)
def test_a_non_number_is_rejected_by_name(value: object) -> None:
    with pytest.raises(PredictorError, match="real number"):
        ConstantPredictor().add_data_point(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3.5, 3.5), (np.float32(2.0), 2.0), (np.int64(4), 4.0), (0, 0.0), (-1e-300, 0.0),
     (NAN, 0.0), (INF, 0.0), (-INF, 0.0)],
    ids=["float", "np.float32", "np.int64", "zero", "tiny negative", "nan", "inf", "-inf"],
)
def test_sanitize_value(value: float, expected: float) -> None:
    assert sanitize_value(value) == expected


# --- constant and linear -----------------------------------------------------------------------


def test_constant_ignores_log1p() -> None:
    assert fed(ConstantPredictor(log1p=True), [3.0, 8.0]).predict_next() == 8.0


@pytest.mark.parametrize(
    ("values", "ready", "expected"),
    [([9.0], False, 9.0), ([9.0, 10.0], True, 11.0), ([0.0, 9.0, 10.0], True, 11.0)],
    ids=["1 point: last value", "2 points: line", "leading zero not a point"],
)
def test_linear_min_points_gate(values: list[float], ready: bool, expected: float) -> None:
    p = fed(LinearPredictor(), values)
    assert p.ready is ready
    assert p.predict_next() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("window", "values", "expected"),
    [
        (10, [3.0 * i for i in range(1, 31)], 93.0),
        (3, [50.0, 1.0, 2.0, 3.0], 4.0),  # only the last 3 points count
        (4, [10.0, 8.0, 6.0, 4.0], 2.0),
        (4, [10.0, 8.0, 6.0, 4.0, 2.0], 0.0),  # would be 0.0 exactly
        (4, [10.0, 7.0, 4.0, 1.0], 0.0),  # would be -2: clamped
    ],
    ids=["ramp exact", "window slides", "falling", "falling to zero", "falling below zero"],
)
def test_linear_least_squares_one_step_ahead(
    window: int, values: list[float], expected: float
) -> None:
    p = fed(LinearPredictor(window_size=window), values)
    assert p.predict_next() == pytest.approx(expected)


def test_linear_log1p_fits_exponential_growth_exactly() -> None:
    values = [math.expm1(0.3 * i) for i in range(1, 20)]
    nxt = math.expm1(0.3 * 20)
    assert fed(LinearPredictor(log1p=True), values).predict_next() == pytest.approx(nxt)
    assert fed(LinearPredictor(log1p=False), values).predict_next() < 0.8 * nxt


@pytest.mark.parametrize("window", [1, 0, -3])
def test_linear_window_too_small(window: int) -> None:
    with pytest.raises(PredictorError, match="window_size must be >= 2"):
        LinearPredictor(window_size=window)


# --- kalman ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "ready"), [(2, False), (3, True)], ids=["just below min", "at min"]
)
def test_kalman_min_points_gate(points: int, ready: bool) -> None:
    values = [10.0, 12.0, 14.0][:points]
    p = fed(KalmanPredictor(min_points=3), [0.0, *values])
    assert p.ready is ready
    bank = KalmanBankRef(1, 0.1, 0.01, 1.0)
    for v in values:
        bank.update(np.array([v]))
    expected = float(bank.predict()[0]) if ready else values[-1]
    assert p.predict_next() == pytest.approx(expected)


@pytest.mark.parametrize("log1p", [False, True], ids=["raw", "log1p"])
def test_kalman_matches_the_reference_bank_without_double_transform(log1p: bool) -> None:
    values = [5.0, 9.0, 4.0, 20.0, 18.0, 0.0, 30.0, 25.0, 40.0, 35.0, 50.0]
    p = fed(KalmanPredictor(log1p=log1p, q_level=0.2, q_trend=0.05, r=2.0, min_points=1), values)
    bank = KalmanBankRef(1, 0.2, 0.05, 2.0, log1p=log1p)
    for v in values:
        bank.update(np.array([v]))
    assert p.predict_next() == pytest.approx(float(bank.predict()[0]), rel=1e-12)


def test_kalman_approaches_a_ramp() -> None:
    p = fed(KalmanPredictor(), [3.0 * i for i in range(1, 31)])
    assert p.predict_next() == pytest.approx(93.0, rel=0.01)


def test_kalman_log1p_follows_exponential_growth() -> None:
    values = [math.expm1(0.3 * i) for i in range(20)]
    nxt = math.expm1(0.3 * 20)
    on = fed(KalmanPredictor(log1p=True), values).predict_next()
    off = fed(KalmanPredictor(log1p=False), values).predict_next()
    assert abs(on - nxt) < 0.01 * nxt < abs(off - nxt)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"r": -1.0}, "r must be"), ({"q_level": NAN}, "q_level must be"),
     ({"q_level": 0.0, "q_trend": 0.0, "r": 0.0}, "cannot all be"),
     ({"min_points": 0}, "min_points must be >= 1")],
    ids=["negative r", "nan q_level", "all zero", "min_points 0"],
)
def test_kalman_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(PredictorError, match=match):
        KalmanPredictor(**kwargs)  # type: ignore[arg-type]


# --- arima -------------------------------------------------------------------------------------

SINE = [100.0 + 30.0 * math.sin(i / 3.0) for i in range(40)]
RANDOM_WALK = list(100.0 + np.cumsum(np.random.default_rng(0).normal(0.0, 5.0, 20)))


@pytest.mark.parametrize(
    ("points", "ready"), [(4, False), (5, True)], ids=["just below 5", "at 5"]
)
def test_arima_min_points_gate(points: int, ready: bool) -> None:
    p = fed(ArimaPredictor(), [10.0, 14.0, 11.0, 16.0, 12.0][:points])
    assert p.ready is ready
    forecast = p.predict_next()
    if ready:
        assert p.order is not None or p.last_error is not None
    else:
        assert forecast == 16.0 and p.order is None


def test_arima_structured_series_stays_in_raw_space() -> None:
    p = fed(ArimaPredictor(), SINE)
    forecast = p.predict_next()
    assert p.fit_space == "raw" and p.order is not None and p.order[0] + p.order[2] > 0
    assert p.last_error is None
    assert forecast == pytest.approx(100.0 + 30.0 * math.sin(40 / 3.0), rel=0.05)


def test_arima_random_walk_switches_to_log1p_space(monkeypatch: pytest.MonkeyPatch) -> None:
    best_orders: list[tuple[int, int, int]] = []
    real_best = ArimaPredictor._best_order

    def recording_best(self: ArimaPredictor, z: np.ndarray) -> tuple[tuple[int, int, int], object]:
        order, fit = real_best(self, z)
        best_orders.append(order)
        return order, fit

    monkeypatch.setattr(ArimaPredictor, "_best_order", recording_best)
    p = fed(ArimaPredictor(), RANDOM_WALK)
    forecast = p.predict_next()
    assert best_orders[0][0] == best_orders[0][2] == 0  # raw space: no AR, no MA terms
    assert len(best_orders) == 2 and (p.fit_space, p.order) == ("log1p", best_orders[1])
    assert p.last_error is None
    assert 0.0 < forecast < 2.0 * max(RANDOM_WALK)


@pytest.mark.parametrize(
    ("log1p", "raw_order", "log_order", "space", "order"),
    [
        (False, (1, 0, 0), (2, 0, 0), "raw", (1, 0, 0)),
        (False, (0, 1, 0), (1, 1, 0), "log1p", (1, 1, 0)),
        (False, (0, 0, 0), (0, 1, 0), "log1p", (0, 1, 0)),
        (True, (1, 0, 0), (2, 1, 1), "log1p", (2, 1, 1)),
    ],
    ids=["raw has AR", "raw p=q=0", "both p=q=0: log1p used", "log1p forced"],
)
def test_arima_space_selection(
    monkeypatch: pytest.MonkeyPatch,
    log1p: bool,
    raw_order: tuple[int, int, int],
    log_order: tuple[int, int, int],
    space: str,
    order: tuple[int, int, int],
) -> None:
    def fake_best(self: ArimaPredictor, z: np.ndarray) -> tuple[tuple[int, int, int], object]:
        is_log = bool(np.all(z < 10.0))  # the inputs below are all >= 50
        chosen = log_order if is_log else raw_order
        return chosen, arima_module._Fit(aic=0.0, params=np.zeros(1), forecast=float(z[-1]))

    monkeypatch.setattr(ArimaPredictor, "_best_order", fake_best)
    p = fed(ArimaPredictor(log1p=log1p), [50.0, 60.0, 55.0, 70.0, 65.0])
    assert p.predict_next() == pytest.approx(65.0)
    assert (p.fit_space, p.order) == (space, order)


@pytest.mark.parametrize(
    ("every", "expected_calls"),
    [
        (1, ["search@5", "search@6", "search@7", "search@8"]),
        (3, ["search@5", "refit@6", "refit@7", "search@8"]),
        (4, ["search@5", "refit@6", "refit@7", "refit@8"]),
    ],
    ids=["every point", "every 3: due at 8", "every 4: not yet due at 8"],
)
def test_arima_search_cadence_and_cache(
    monkeypatch: pytest.MonkeyPatch, every: int, expected_calls: list[str]
) -> None:
    calls: list[str] = []

    def fake_search(self: ArimaPredictor, y: np.ndarray) -> float:
        calls.append(f"search@{self.num_points}")
        self._points_at_search = self.num_points
        self.order, self.fit_space = (1, 0, 0), "raw"
        return 1.0

    def fake_refit(self: ArimaPredictor, y: np.ndarray) -> float:
        calls.append(f"refit@{self.num_points}")
        return 2.0

    monkeypatch.setattr(ArimaPredictor, "_search", fake_search)
    monkeypatch.setattr(ArimaPredictor, "_refit", fake_refit)
    p = fed(ArimaPredictor(order_search_every=every), [10.0, 12.0, 11.0, 13.0, 12.0])
    assert p.predict_next() == 1.0
    assert p.predict_next() == 1.0  # cached: no new data, no new fit
    for v in (14.0, 13.0, 15.0):
        p.add_data_point(v)
        p.predict_next()
    assert calls == expected_calls


def test_arima_fit_exception_falls_back_to_last_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsmodels.tsa.arima.model import ARIMA

    def broken_fit(self: object, *args: object, **kwargs: object) -> None:
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(ARIMA, "fit", broken_fit)
    p = fed(ArimaPredictor(), [10.0, 30.0, 20.0, 40.0, 25.0, 45.0])
    assert p.predict_next() == 45.0
    assert p.last_error is not None
    assert "no ARIMA order could be fitted" in p.last_error
    assert "LinAlgError: singular matrix" in p.last_error
    assert p.order is None


def test_arima_unexpected_error_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: ArimaPredictor, y: np.ndarray) -> float:
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(ArimaPredictor, "_search", explode)
    p = fed(ArimaPredictor(), [10.0, 30.0, 20.0, 40.0, 25.0])
    assert p.predict_next() == 25.0
    assert p.last_error == "LinAlgError: singular matrix"


def test_arima_non_convergence_falls_back_and_no_warning_escapes() -> None:
    p = fed(ArimaPredictor(max_iter=1), SINE[:12])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forecast = p.predict_next()
    assert forecast == SINE[11]
    assert p.last_error is not None
    assert "no ARIMA order could be fitted" in p.last_error and "did not converge" in p.last_error
    assert [w for w in caught if "statsmodels" in w.filename] == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window_size": 4}, "window_size must be >= 5"),
     ({"min_points": 4}, "min_points must be >= 5"),
     ({"order_search_every": 0}, "order_search_every"), ({"max_iter": 0}, "max_iter")],
    ids=["window", "min_points", "search every", "max_iter"],
)
def test_arima_bad_parameters(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(PredictorError, match=match):
        ArimaPredictor(**kwargs)  # type: ignore[arg-type]


# --- prophet -----------------------------------------------------------------------------------


def test_prophet_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prophet", None)  # makes `import prophet` raise ImportError
    with pytest.raises(PredictorError, match=r"pip install 'sla-planner\[prophet\]'"):
        make_predictor("prophet", log1p=True)


def test_prophet_follows_a_ramp() -> None:
    p = _prophet()
    fed(p, [3.0 * i for i in range(1, 21)])
    assert p.predict_next() == pytest.approx(63.0, rel=0.02)
    assert p.last_error is None


def test_prophet_fit_failure_falls_back_to_last_value() -> None:
    class Broken:
        def fit(self, df: object) -> None:
            raise RuntimeError("stan exploded")

    p = _prophet()
    p._prophet_cls = Broken
    fed(p, [5.0, 6.0, 7.0, 8.0, 9.0])
    assert p.predict_next() == 9.0
    assert p.last_error == "RuntimeError: stan exploded"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"interval_s": 0.0}, "interval_s"), ({"interval_s": NAN}, "interval_s"),
     ({"window_size": 4}, "window_size")],
    ids=["zero interval", "nan interval", "small window"],
)
def test_prophet_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    pytest.importorskip("prophet")
    with pytest.raises(PredictorError, match=match):
        ProphetPredictor(**kwargs)  # type: ignore[arg-type]


# --- factory and the bundle --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [("constant", ConstantPredictor), ("linear", LinearPredictor), ("kalman", KalmanPredictor),
     ("arima", ArimaPredictor), (" Linear ", LinearPredictor)],
    ids=["constant", "linear", "kalman", "arima", "case and spaces"],
)
def test_factory_builds_by_name(name: str, cls: type) -> None:
    p = make_predictor(name, log1p=True)
    assert type(p) is cls and p.log1p is True  # type: ignore[attr-defined]


def test_factory_passes_settings() -> None:
    lin = make_predictor("linear", log1p=False, linear_window_size=4)
    kal = make_predictor("kalman", log1p=False, kalman_min_points=7, kalman_r=3.0)
    assert lin.window_size == 4  # type: ignore[attr-defined]
    assert kal.min_points == 7 and kal._bank.r == 3.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["lstm", "", "kalman2"])
def test_factory_unknown_name_lists_the_allowed(name: str) -> None:
    with pytest.raises(PredictorError) as err:
        make_predictor(name, log1p=False)
    assert repr(name) in str(err.value)
    assert all(allowed in str(err.value) for allowed in PREDICTOR_NAMES)


def _config(**overrides: object) -> SimpleNamespace:
    fields: dict[str, object] = dict(
        load_predictor="linear", load_predictor_log1p=False, linear_window_size=3,
        prophet_window_size=300, kalman_q_level=0.1, kalman_q_trend=0.01, kalman_r=1.0,
        kalman_min_points=10, throughput_adjustment_interval=60,
        load_predictor_warmup_trace=None,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_predictors_from_config_builds_three_independent_predictors() -> None:
    preds = predictors_from_config(_config())
    assert len({id(preds.num_req), id(preds.isl), id(preds.osl)}) == 3
    assert not preds.ready
    for i in range(1, 4):
        preds.observe(10.0 * i, 1000.0 * i, 100.0 * i)
    assert preds.ready
    assert preds.forecast() == Forecast(num_req=40.0, isl=4000.0, osl=400.0)


def test_predictors_from_config_warms_up_from_the_trace(tmp_path: object) -> None:
    from pathlib import Path

    trace = Path(str(tmp_path)) / "t.jsonl"
    trace.write_text(
        '{"timestamp": 0, "input_length": 100, "output_length": 10}\n'
        '{"timestamp": 61000, "input_length": 300, "output_length": 30}\n'
        '{"timestamp": 62000, "input_length": 500, "output_length": 50}\n'
    )
    cfg = _config(load_predictor="constant", load_predictor_warmup_trace=str(trace))
    preds = predictors_from_config(cfg)
    assert preds.forecast() == Forecast(num_req=2.0, isl=400.0, osl=40.0)


def test_forecast_to_traffic() -> None:
    assert Forecast(3.0, 100.0, 10.0).to_traffic(60.0) == TrafficForecast(3.0, 100.0, 10.0, 60.0)


def test_load_predictors_accepts_any_protocol_implementation() -> None:
    class Fixed:
        name = "fixed"
        ready = True

        def add_data_point(self, value: float) -> None:
            pass

        def predict_next(self) -> float:
            return 1.5

        def get_last_value(self) -> float:
            return 0.0

    preds = LoadPredictors(num_req=Fixed(), isl=Fixed(), osl=Fixed())
    preds.observe(1.0, 2.0, 3.0)
    assert preds.forecast() == Forecast(1.5, 1.5, 1.5)
