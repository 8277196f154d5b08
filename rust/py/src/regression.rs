//! `SlidingRegression` and `estimate_many`: float64 arrays in, GIL released for bulk work.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use sla_planner_core::regression::{self, SlidingRegression as CoreRegression};

use sla_planner_core::table::HotRow;

use crate::errors::{argument, NativeResult};

/// Which FPM numbers are a pool's regression features (`FpmIngestor.feed_regression`).
#[derive(Debug, Clone, Copy)]
pub enum Features {
    /// Scheduled prefill tokens.
    Prefill,
    /// Scheduled decode requests and decode KV tokens.
    Decode,
    /// Scheduled prefill tokens and decode KV tokens.
    Agg,
    /// Scheduled decode KV tokens (the decode pool's one-feature fallback model).
    DecodeKv,
}

impl Features {
    /// "prefill", "decode" or "agg".
    pub fn parse(name: &str) -> NativeResult<Self> {
        match name {
            "prefill" => Ok(Features::Prefill),
            "decode" => Ok(Features::Decode),
            "agg" => Ok(Features::Agg),
            "decode_kv" => Ok(Features::DecodeKv),
            _ => Err(argument(format!(
                "features must be \"prefill\", \"decode\", \"agg\" or \"decode_kv\", got {name:?}"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Features::Prefill => "prefill",
            Features::Decode => "decode",
            Features::Agg => "agg",
            Features::DecodeKv => "decode_kv",
        }
    }

    pub fn n_features(&self) -> usize {
        match self {
            Features::Prefill | Features::DecodeKv => 1,
            Features::Decode | Features::Agg => 2,
        }
    }

    /// The feature values of one engine's hot row (the second is unused for one feature).
    #[inline]
    pub fn of_hot(&self, h: &HotRow) -> [f64; 2] {
        let [prefill, dec_req, dec_kv] = h.scheduled.map(|v| v as f64);
        match self {
            Features::Prefill => [prefill, 0.0],
            Features::Decode => [dec_req, dec_kv],
            Features::Agg => [prefill, dec_kv],
            Features::DecodeKv => [dec_kv, 0.0],
        }
    }
}

/// A flattened contiguous float64 array and the original shape.
type FlatArray<'py> = (Bound<'py, PyArray1<f64>>, Vec<usize>);

/// `np.ascontiguousarray(obj, dtype=float64)` with its shape, or a KernelError naming `name`.
fn float_array<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> NativeResult<FlatArray<'py>> {
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("ascontiguousarray", (obj, np.getattr("float64")?))
        .map_err(|e| {
            argument(format!(
                "{name} must be convertible to a float64 array: {e}"
            ))
        })?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let flat = arr
        .call_method1("reshape", (-1,))?
        .cast_into::<PyArray1<f64>>()
        .map_err(PyErr::from)?;
    Ok((flat, shape))
}

/// Rows of X as a (rows, columns) pair: 1-D X is one column.
fn matrix_shape(shape: &[usize], name: &str) -> NativeResult<(usize, usize)> {
    match shape {
        [n] => Ok((*n, 1)),
        [n, k] => Ok((*n, *k)),
        _ => Err(argument(format!(
            "{name} must be 1-D or 2-D, got {} dimensions",
            shape.len()
        ))),
    }
}

/// Time-bucketed sliding-window OLS with intercept over 1 or 2 features.
#[pyclass(module = "sla_planner._native")]
pub struct SlidingRegression {
    pub(crate) inner: CoreRegression,
}

#[pymethods]
impl SlidingRegression {
    #[new]
    #[pyo3(
        signature = (n_features, window_s, bucket_s, min_observations = None),
        text_signature = "(n_features, window_s, bucket_s, min_observations=5)"
    )]
    fn new(
        n_features: &Bound<'_, PyAny>,
        window_s: f64,
        bucket_s: f64,
        min_observations: Option<&Bound<'_, PyAny>>,
    ) -> NativeResult<Self> {
        let k = crate::errors::int_in(n_features, "n_features", 1, 2)
            .map_err(|_| argument(format!("n_features must be 1 or 2, got {n_features}")))?
            as usize;
        let m = match min_observations {
            Some(v) => crate::errors::int_in(v, "min_observations", 1, i64::MAX)? as u64,
            None => 5,
        };
        Ok(SlidingRegression {
            inner: CoreRegression::new(k, window_s, bucket_s, m)?,
        })
    }

    /// Add one sample: `x` is a float (1 feature) or a sequence of `n_features` floats.
    fn add(&mut self, t_s: f64, x: &Bound<'_, PyAny>, y: f64) -> NativeResult<()> {
        let k = self.inner.n_features();
        let xs: Vec<f64> = match x.extract::<f64>() {
            Ok(v) => vec![v],
            Err(_) => x
                .extract::<Vec<f64>>()
                .map_err(|_| argument(format!("x must be a float or a sequence of {k} floats")))?,
        };
        if xs.len() != k {
            return Err(argument(format!(
                "x must have {k} values, got {}",
                xs.len()
            )));
        }
        self.inner.add(t_s, &xs, y);
        Ok(())
    }

    /// Add samples: `t` (n,), `X` (n, n_features) or (n,) for one feature, `y` (n,).
    #[allow(non_snake_case)]
    fn add_many(
        &mut self,
        py: Python<'_>,
        t: &Bound<'_, PyAny>,
        X: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
    ) -> NativeResult<()> {
        let k = self.inner.n_features();
        let (t, t_shape) = float_array(py, t, "t")?;
        let (xa, x_shape) = float_array(py, X, "X")?;
        let (ya, y_shape) = float_array(py, y, "y")?;
        let (rows, cols) = matrix_shape(&x_shape, "X")?;
        if t_shape.len() != 1
            || y_shape.len() != 1
            || cols != k
            || t_shape[0] != rows
            || y_shape[0] != rows
        {
            return Err(argument(format!(
                "add_many needs t (n,), X (n, {k}) and y (n,); got t {t_shape:?}, X {x_shape:?}, y {y_shape:?}"
            )));
        }
        let (t, xa, ya) = (t.readonly(), xa.readonly(), ya.readonly());
        let (ts, xs, ys) = (t.as_slice()?, xa.as_slice()?, ya.as_slice()?);
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.add_many(ts, xs, ys))?)
    }

    /// `(coefficients [intercept, b1, (b2)], sample count)` over the window ending at `now_s`,
    /// or None (see `last_rejection`).
    fn fit<'py>(
        &mut self,
        py: Python<'py>,
        now_s: f64,
    ) -> NativeResult<Option<Bound<'py, PyTuple>>> {
        let fit = self.inner.fit(now_s)?;
        match fit {
            None => Ok(None),
            Some(f) => Ok(Some(PyTuple::new(
                py,
                [
                    PyArray1::from_vec(py, f.coefficients).into_any(),
                    f.samples.into_pyobject(py).map_err(PyErr::from)?.into_any(),
                ],
            )?)),
        }
    }

    /// Why the last fit returned None: "insufficient", "singular", "negative_slope" (else None).
    #[getter]
    fn last_rejection(&self) -> Option<&'static str> {
        self.inner.last_rejection().map(|r| r.as_str())
    }

    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }

    #[getter]
    fn window_s(&self) -> f64 {
        self.inner.window_s()
    }

    #[getter]
    fn bucket_s(&self) -> f64 {
        self.inner.bucket_s()
    }

    #[getter]
    fn n_buckets(&self) -> usize {
        self.inner.n_buckets()
    }

    #[getter]
    fn min_observations(&self) -> u64 {
        self.inner.min_observations()
    }

    /// Samples dropped for NaN/inf values or an out-of-range time.
    #[getter]
    fn dropped_invalid(&self) -> u64 {
        self.inner.dropped_invalid()
    }

    /// Samples dropped because their bucket had already left the ring.
    #[getter]
    fn dropped_late(&self) -> u64 {
        self.inner.dropped_late()
    }
}

/// Predictions `coef[0] + X @ coef[1:]` for every row of X ((n, k), or (n,) when k == 1).
#[pyfunction]
#[allow(non_snake_case)]
pub fn estimate_many<'py>(
    py: Python<'py>,
    coef: &Bound<'py, PyAny>,
    X: &Bound<'py, PyAny>,
) -> NativeResult<Bound<'py, PyArray1<f64>>> {
    let (c, c_shape) = float_array(py, coef, "coef")?;
    let (xa, x_shape) = float_array(py, X, "X")?;
    let (rows, cols) = matrix_shape(&x_shape, "X")?;
    if c_shape.len() != 1 || c_shape[0] != cols + 1 {
        return Err(argument(format!(
            "estimate_many needs coef of shape ({},) for X of shape {x_shape:?}; got coef {c_shape:?}",
            cols + 1
        )));
    }
    let (c, xa) = (c.readonly(), xa.readonly());
    let (cs, xs) = (c.as_slice()?, xa.as_slice()?);
    let out = if cols == 0 {
        vec![cs[0]; rows]
    } else {
        py.detach(|| regression::estimate_many(cs, xs))?
    };
    Ok(PyArray1::from_vec(py, out))
}
