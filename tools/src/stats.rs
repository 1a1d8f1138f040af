//! Small statistics of the benchmark records: percentiles, medians, slopes, rounding.

/// Nearest-rank-interpolated percentile (linear between closest ranks); sorts `v`.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let r = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
}

pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// Least-squares slope of y over x (0 with fewer than 2 points).
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for i in 0..n {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
    }
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

pub fn round(v: f64, digits: u32) -> f64 {
    let f = 10f64.powi(digits as i32);
    (v * f).round() / f
}
