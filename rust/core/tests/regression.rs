//! Sliding-window regression: exact fits, window rotation, rejections, invalid samples.

use sla_planner_core::regression::{estimate_many, Rejection, SlidingRegression};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + b.abs())
}

#[test]
fn recovers_an_exact_line() {
    let mut r = SlidingRegression::new(1, 60.0, 1.0, 5).expect("valid");
    for i in 0..50 {
        let x = 1000.0 + 100.0 * i as f64;
        r.add(i as f64, &[x], 5.0 + 0.002 * x);
    }
    let fit = r.fit(49.0).expect("ok").expect("fits");
    assert!(
        close(fit.coefficients[0], 5.0) && close(fit.coefficients[1], 0.002),
        "{fit:?}"
    );
    assert_eq!(fit.samples, 50);
}

#[test]
fn recovers_an_exact_plane() {
    let mut r = SlidingRegression::new(2, 60.0, 1.0, 5).expect("valid");
    for i in 0..40 {
        let (x1, x2) = (i as f64, ((i * 7) % 11) as f64 * 1000.0);
        r.add(i as f64, &[x1, x2], 3.0 + 0.5 * x1 + 0.001 * x2);
    }
    let c = r.fit(39.0).expect("ok").expect("fits").coefficients;
    assert!(
        close(c[0], 3.0) && close(c[1], 0.5) && close(c[2], 0.001),
        "{c:?}"
    );
}

#[test]
fn old_buckets_leave_the_window() {
    let mut r = SlidingRegression::new(1, 10.0, 1.0, 3).expect("valid");
    for i in 0..5 {
        r.add(i as f64, &[i as f64], 100.0 - i as f64);
    }
    for i in 20..25 {
        r.add(i as f64, &[i as f64], 2.0 * i as f64);
    }
    let fit = r.fit(24.5).expect("ok").expect("fits");
    assert_eq!(fit.samples, 5);
    assert!(close(fit.coefficients[1], 2.0));
}

#[test]
fn min_observations_boundary() {
    let mut r = SlidingRegression::new(1, 60.0, 1.0, 5).expect("valid");
    for i in 0..4 {
        r.add(i as f64, &[i as f64], i as f64);
    }
    assert!(r.fit(4.0).expect("ok").is_none());
    assert_eq!(r.last_rejection(), Some(Rejection::Insufficient));
    r.add(4.0, &[4.0], 4.0);
    assert!(r.fit(4.0).expect("ok").is_some());
    assert_eq!(r.last_rejection(), None);
}

#[test]
fn rejects_singular_and_negative_slopes() {
    let mut r = SlidingRegression::new(1, 60.0, 1.0, 2).expect("valid");
    for i in 0..6 {
        r.add(i as f64, &[7.0], i as f64);
    }
    assert!(r.fit(6.0).expect("ok").is_none());
    assert_eq!(r.last_rejection(), Some(Rejection::Singular));
    let mut r = SlidingRegression::new(1, 60.0, 1.0, 2).expect("valid");
    for i in 0..6 {
        r.add(i as f64, &[i as f64], 10.0 - i as f64);
    }
    assert!(r.fit(6.0).expect("ok").is_none());
    assert_eq!(r.last_rejection(), Some(Rejection::NegativeSlope));
    let mut r = SlidingRegression::new(2, 60.0, 1.0, 2).expect("valid");
    for i in 0..6 {
        r.add(i as f64, &[i as f64, 2.0 * i as f64], i as f64);
    }
    assert!(r.fit(6.0).expect("ok").is_none());
    assert_eq!(r.last_rejection(), Some(Rejection::Singular));
}

#[test]
fn invalid_and_late_samples_are_counted_and_dropped() {
    let mut r = SlidingRegression::new(1, 5.0, 1.0, 1).expect("valid");
    r.add(f64::NAN, &[1.0], 1.0);
    r.add(1.0, &[f64::INFINITY], 1.0);
    r.add(1.0, &[1.0], f64::NAN);
    r.add(1e300, &[1.0], 1.0);
    r.add(10.0, &[1.0], 1.0);
    r.add(5.0, &[1.0], 1.0);
    assert_eq!((r.dropped_invalid(), r.dropped_late()), (4, 1));
}

#[test]
fn add_many_matches_add() {
    let mut a = SlidingRegression::new(2, 30.0, 2.0, 3).expect("valid");
    let mut b = a.clone();
    let t: Vec<f64> = (0..20).map(|i| i as f64 * 0.7).collect();
    let x: Vec<f64> = (0..40).map(|i| ((i * 13) % 17) as f64).collect();
    let y: Vec<f64> = (0..20).map(|i| 1.0 + i as f64).collect();
    a.add_many(&t, &x, &y).expect("shapes");
    for i in 0..20 {
        b.add(t[i], &x[2 * i..2 * i + 2], y[i]);
    }
    assert_eq!(a.fit(14.0).expect("ok"), b.fit(14.0).expect("ok"));
    assert!(a.add_many(&t, &x[1..], &y).is_err());
}

#[test]
fn estimate_many_is_intercept_plus_dot() {
    let out = estimate_many(&[1.0, 2.0, 3.0], &[1.0, 1.0, 0.0, 2.0]).expect("shapes");
    assert_eq!(out, vec![6.0, 7.0]);
    assert!(estimate_many(&[1.0, 2.0, 3.0], &[1.0]).is_err());
    assert!(estimate_many(&[1.0], &[1.0]).is_err());
}

#[test]
fn rejects_bad_arguments() {
    assert!(SlidingRegression::new(0, 10.0, 1.0, 5).is_err());
    assert!(SlidingRegression::new(3, 10.0, 1.0, 5).is_err());
    assert!(SlidingRegression::new(1, 10.0, 11.0, 5).is_err());
    assert!(SlidingRegression::new(1, 10.0, 0.0, 5).is_err());
    assert!(SlidingRegression::new(1, 1e9, 1e-3, 5).is_err());
    assert!(SlidingRegression::new(1, 10.0, 1.0, 0).is_err());
    let mut r = SlidingRegression::new(1, 10.0, 1.0, 5).expect("valid");
    assert!(r.fit(f64::NAN).is_err());
}
