//! Sliding-window ordinary least squares with intercept, on time-bucketed sufficient statistics.
//!
//! Each bucket keeps a count, the means and the co-moment matrix of `(x_1, .., x_k, y)`,
//! updated per sample with Welford's recurrence (O(1)) and merged across buckets with Chan's
//! parallel formula at fit time. Centred statistics keep large token counts (x ~ 1e6, x^2 ~ 1e12)
//! from cancelling the way raw sums of squares would. The Python reference
//! (`sla_planner.kernels.regression_ref`) performs the same operations in the same order, so
//! both give the same coefficients.

use crate::ArgumentError;

/// Most features a model takes (decode: running requests and KV tokens).
pub const MAX_FEATURES: usize = 2;
/// Largest accepted number of buckets (`ceil(window_s / bucket_s)`).
pub const MAX_BUCKETS: usize = 1_000_000;
/// A feature is constant (singular) when its co-moment is below this share of its raw second
/// moment `sxx + n * mean^2`.
pub const FEATURE_RTOL: f64 = 1e-12;
/// Two features are collinear (singular) when `det <= COLLINEAR_RTOL * sxx_1 * sxx_2`.
pub const COLLINEAR_RTOL: f64 = 1e-10;
/// Bucket indices must stay below this magnitude (`|t_s / bucket_s| < 2^62`).
const MAX_BUCKET_INDEX: f64 = 4_611_686_018_427_387_904.0;

const DIM: usize = MAX_FEATURES + 1;

/// Why the last `fit` returned no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Fewer than `min_observations` samples in the window.
    Insufficient,
    /// A feature is (nearly) constant, features are collinear, or the result is not finite.
    Singular,
    /// A slope coefficient is negative (more load cannot make an iteration faster).
    NegativeSlope,
}

impl Rejection {
    /// Stable name (`"insufficient"`, `"singular"`, `"negative_slope"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Rejection::Insufficient => "insufficient",
            Rejection::Singular => "singular",
            Rejection::NegativeSlope => "negative_slope",
        }
    }
}

/// Count, means and co-moments of `d = k + 1` variables (features first, `y` last).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Moments {
    n: u64,
    mean: [f64; DIM],
    comoment: [[f64; DIM]; DIM],
}

// Index loops on purpose: they spell out the same operation order as the Python reference.
#[allow(clippy::needless_range_loop)]
impl Moments {
    #[inline]
    fn add(&mut self, z: &[f64; DIM], d: usize) {
        self.n += 1;
        let n = self.n as f64;
        let mut delta = [0.0; DIM];
        for j in 0..d {
            delta[j] = z[j] - self.mean[j];
        }
        for j in 0..d {
            self.mean[j] += delta[j] / n;
        }
        for a in 0..d {
            for b in a..d {
                self.comoment[a][b] += delta[a] * (z[b] - self.mean[b]);
            }
        }
    }

    fn merge(&mut self, other: &Moments, d: usize) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let na = self.n as f64;
        let nb = other.n as f64;
        let n = na + nb;
        let mut delta = [0.0; DIM];
        for j in 0..d {
            delta[j] = other.mean[j] - self.mean[j];
        }
        let f = na * nb / n;
        for a in 0..d {
            for b in a..d {
                self.comoment[a][b] =
                    self.comoment[a][b] + other.comoment[a][b] + delta[a] * delta[b] * f;
            }
        }
        for j in 0..d {
            self.mean[j] += delta[j] * nb / n;
        }
        self.n += other.n;
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    index: i64,
    moments: Moments,
}

const EMPTY_BUCKET: Bucket = Bucket {
    index: i64::MIN,
    moments: Moments {
        n: 0,
        mean: [0.0; DIM],
        comoment: [[0.0; DIM]; DIM],
    },
};

/// A fitted model: `[intercept, b_1, .., b_k]` and the number of samples behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub coefficients: Vec<f64>,
    pub samples: u64,
}

/// Time-bucketed sliding-window OLS with intercept over 1 or 2 features.
#[derive(Debug, Clone)]
pub struct SlidingRegression {
    n_features: usize,
    window_s: f64,
    bucket_s: f64,
    min_observations: u64,
    buckets: Vec<Bucket>,
    last_rejection: Option<Rejection>,
    dropped_invalid: u64,
    dropped_late: u64,
}

fn bucket_index(t_s: f64, bucket_s: f64) -> Option<i64> {
    let q = t_s / bucket_s;
    if q.abs() < MAX_BUCKET_INDEX {
        Some(q.floor() as i64)
    } else {
        None
    }
}

impl SlidingRegression {
    /// A model over `n_features` (1 or 2) features, fitted on the last `window_s` seconds
    /// (bucket granularity `bucket_s`), needing `min_observations` samples to fit.
    pub fn new(
        n_features: usize,
        window_s: f64,
        bucket_s: f64,
        min_observations: u64,
    ) -> Result<Self, ArgumentError> {
        if !(1..=MAX_FEATURES).contains(&n_features) {
            return Err(ArgumentError(format!(
                "n_features must be 1 or 2, got {n_features}"
            )));
        }
        if !(window_s.is_finite() && window_s > 0.0) {
            return Err(ArgumentError(format!(
                "window_s must be finite and > 0, got {window_s}"
            )));
        }
        if !(bucket_s.is_finite() && bucket_s > 0.0 && bucket_s <= window_s) {
            return Err(ArgumentError(format!(
                "bucket_s must be finite, > 0 and <= window_s ({window_s}), got {bucket_s}"
            )));
        }
        let n_buckets = (window_s / bucket_s).ceil();
        if n_buckets > MAX_BUCKETS as f64 {
            return Err(ArgumentError(format!(
                "window_s / bucket_s must be <= {MAX_BUCKETS} buckets, got {n_buckets}"
            )));
        }
        if min_observations == 0 {
            return Err(ArgumentError(
                "min_observations must be >= 1, got 0".to_string(),
            ));
        }
        Ok(SlidingRegression {
            n_features,
            window_s,
            bucket_s,
            min_observations,
            buckets: vec![EMPTY_BUCKET; n_buckets as usize],
            last_rejection: None,
            dropped_invalid: 0,
            dropped_late: 0,
        })
    }

    /// Add one sample `(x, y)` observed at `t_s`. `x` must hold `n_features` values (checked by
    /// the caller; extra values are ignored, missing ones read as 0). Non-finite samples are
    /// dropped and counted in `dropped_invalid`; samples older than the ring are `dropped_late`.
    #[inline]
    pub fn add(&mut self, t_s: f64, x: &[f64], y: f64) {
        let k = self.n_features;
        let mut z = [0.0; DIM];
        for (dst, &v) in z.iter_mut().zip(x.iter().take(k)) {
            *dst = v;
        }
        z[k] = y;
        if !t_s.is_finite() || !z[..=k].iter().all(|v| v.is_finite()) {
            self.dropped_invalid += 1;
            return;
        }
        let Some(b) = bucket_index(t_s, self.bucket_s) else {
            self.dropped_invalid += 1;
            return;
        };
        let nb = self.buckets.len() as i64;
        let slot = b.rem_euclid(nb) as usize;
        let Some(bucket) = self.buckets.get_mut(slot) else {
            return;
        };
        if bucket.index < b {
            *bucket = Bucket {
                index: b,
                moments: Moments::default(),
            };
        } else if bucket.index > b {
            self.dropped_late += 1;
            return;
        }
        bucket.moments.add(&z, k + 1);
    }

    /// Add samples `t_s[i]`, `x[i * k .. (i + 1) * k]`, `y[i]`; lengths are checked.
    pub fn add_many(&mut self, t_s: &[f64], x: &[f64], y: &[f64]) -> Result<(), ArgumentError> {
        let k = self.n_features;
        if t_s.len() != y.len() || x.len() != t_s.len() * k {
            return Err(ArgumentError(format!(
                "add_many needs len(t) == len(y) == rows of X with {k} columns; got t={}, X values={}, y={}",
                t_s.len(),
                x.len(),
                y.len()
            )));
        }
        for (i, (&t, &yi)) in t_s.iter().zip(y.iter()).enumerate() {
            self.add(t, &x[i * k..(i + 1) * k], yi);
        }
        Ok(())
    }

    /// OLS with intercept over the buckets inside the window ending at `now_s`:
    /// `[intercept, b_1, .., b_k]` and the sample count, or `None` (see `last_rejection`).
    pub fn fit(&mut self, now_s: f64) -> Result<Option<Fit>, ArgumentError> {
        let Some(cur) = (if now_s.is_finite() {
            bucket_index(now_s, self.bucket_s)
        } else {
            None
        }) else {
            return Err(ArgumentError(format!(
                "now_s must be finite and within range, got {now_s}"
            )));
        };
        let d = self.n_features + 1;
        let nb = self.buckets.len() as i64;
        let mut m = Moments::default();
        for idx in (cur - nb + 1)..=cur {
            let slot = idx.rem_euclid(nb) as usize;
            if let Some(bucket) = self.buckets.get(slot) {
                if bucket.index == idx {
                    m.merge(&bucket.moments, d);
                }
            }
        }
        let result = self.solve(&m);
        Ok(match result {
            Ok(coefficients) => {
                self.last_rejection = None;
                Some(Fit {
                    coefficients,
                    samples: m.n,
                })
            }
            Err(r) => {
                self.last_rejection = Some(r);
                None
            }
        })
    }

    fn solve(&self, m: &Moments) -> Result<Vec<f64>, Rejection> {
        if m.n < self.min_observations {
            return Err(Rejection::Insufficient);
        }
        let n = m.n as f64;
        let c = &m.comoment;
        let constant = |j: usize| c[j][j] <= FEATURE_RTOL * (c[j][j] + n * m.mean[j] * m.mean[j]);
        let coef = if self.n_features == 1 {
            if constant(0) {
                return Err(Rejection::Singular);
            }
            let b1 = c[0][1] / c[0][0];
            vec![m.mean[1] - b1 * m.mean[0], b1]
        } else {
            if constant(0) || constant(1) {
                return Err(Rejection::Singular);
            }
            let (a, b, cc) = (c[0][0], c[0][1], c[1][1]);
            let det = a * cc - b * b;
            if det <= COLLINEAR_RTOL * a * cc {
                return Err(Rejection::Singular);
            }
            let b1 = (cc * c[0][2] - b * c[1][2]) / det;
            let b2 = (a * c[1][2] - b * c[0][2]) / det;
            vec![m.mean[2] - b1 * m.mean[0] - b2 * m.mean[1], b1, b2]
        };
        if !coef.iter().all(|v| v.is_finite()) {
            return Err(Rejection::Singular);
        }
        if coef[1..].iter().any(|&v| v < 0.0) {
            return Err(Rejection::NegativeSlope);
        }
        Ok(coef)
    }

    /// Why the last `fit` returned `None` (`None` after a successful fit or before any fit).
    pub fn last_rejection(&self) -> Option<Rejection> {
        self.last_rejection
    }

    /// Number of features (1 or 2).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Window length in seconds.
    pub fn window_s(&self) -> f64 {
        self.window_s
    }

    /// Bucket length in seconds.
    pub fn bucket_s(&self) -> f64 {
        self.bucket_s
    }

    /// Number of buckets in the ring.
    pub fn n_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Samples needed for a fit.
    pub fn min_observations(&self) -> u64 {
        self.min_observations
    }

    /// Samples dropped for NaN/inf values or an out-of-range time.
    pub fn dropped_invalid(&self) -> u64 {
        self.dropped_invalid
    }

    /// Samples dropped because their bucket had already rotated out of the ring.
    pub fn dropped_late(&self) -> u64 {
        self.dropped_late
    }
}

/// `coef[0] + sum_j x[i, j] * coef[j + 1]` for each row of row-major `x` with `k = coef.len() - 1`
/// columns.
pub fn estimate_many(coef: &[f64], x: &[f64]) -> Result<Vec<f64>, ArgumentError> {
    let k = coef.len().saturating_sub(1);
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(ArgumentError(format!(
            "estimate_many needs coef of length k + 1 >= 2 and X with k columns; got coef={}, X values={}",
            coef.len(),
            x.len()
        )));
    }
    Ok(x.chunks_exact(k)
        .map(|row| {
            let mut acc = coef[0];
            for (xj, cj) in row.iter().zip(&coef[1..]) {
                acc += xj * cj;
            }
            acc
        })
        .collect())
}
