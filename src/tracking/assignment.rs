//! Minimum-cost assignment of tracks to detections (Kuhn–Munkres, `pathfinding`), with
//! gating: pairs marked forbidden are never reported as matches. The cost matrix and the
//! result live in [`Assignment`] and are reused from one call to the next.

/// Cost of a forbidden pair (class mismatch, IoU below the threshold).
pub const FORBIDDEN: f64 = f64::INFINITY;

/// Reusable solver: a cost matrix plus the solver's scratch vectors.
#[derive(Debug, Default)]
pub struct Assignment {
    rows: usize,
    cols: usize,
    cost: Vec<f64>,
    matches: Vec<(usize, usize)>,
}

/// Integer weight of the largest cost the solver sees (a forbidden pair): costs are scaled
/// to integers (Kuhn–Munkres needs exact arithmetic) with this much resolution, and sums of
/// a few thousand such weights stay far from `i64::MAX`.
const WEIGHT_RANGE: f64 = (1u64 << 40) as f64;

impl Assignment {
    /// Starts a `rows × cols` problem with every pair forbidden.
    pub fn reset(&mut self, rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        self.cost.clear();
        self.cost.resize(rows * cols, FORBIDDEN);
    }

    /// Sets the cost of pairing `row` with `col`: finite and non-negative (lower is
    /// better); anything else leaves the pair forbidden.
    pub fn set(&mut self, row: usize, col: usize, cost: f64) {
        debug_assert!(row < self.rows && col < self.cols);
        if cost.is_finite() && cost >= 0.0 {
            self.cost[row * self.cols + col] = cost;
        }
    }

    /// Solves the current problem. Returns `(row, col)` pairs, none forbidden, each row and
    /// column at most once: among assignments with the most allowed pairs, one of minimum
    /// total cost.
    pub fn solve(&mut self) -> &[(usize, usize)] {
        self.matches.clear();
        if self.rows == 0 || self.cols == 0 || self.cost.iter().all(|c| !c.is_finite()) {
            return &self.matches;
        }
        // Forbidden pairs get a finite cost larger than any assignment of allowed pairs
        // can save, so the solver first maximises the number of allowed pairs.
        let max_allowed = self
            .cost
            .iter()
            .copied()
            .filter(|c| c.is_finite())
            .fold(0.0, f64::max);
        let big = (max_allowed.max(1.0) + 1.0) * (self.rows.min(self.cols) as f64 + 1.0);
        // The solver needs n ≤ m: transpose when there are more rows than columns.
        let transposed = self.rows > self.cols;
        let (n, m) = if transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        };
        let (cols, cost) = (self.cols, &self.cost);
        let scale = WEIGHT_RANGE / big;
        let weights = pathfinding::matrix::Matrix::from_fn(n, m, |(i, j)| {
            let c = if transposed {
                cost[j * cols + i]
            } else {
                cost[i * cols + j]
            };
            let c = if c.is_finite() { c } else { big };
            (c * scale).round() as i64
        });
        let (_, assigned) = pathfinding::kuhn_munkres::kuhn_munkres_min(&weights);
        for (i, &j) in assigned.iter().enumerate() {
            let (row, col) = if transposed { (j, i) } else { (i, j) };
            if cost[row * cols + col].is_finite() {
                self.matches.push((row, col));
            }
        }
        self.matches.sort_unstable();
        &self.matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(rows: usize, cols: usize, costs: &[f64]) -> Vec<(usize, usize)> {
        let mut a = Assignment::default();
        a.reset(rows, cols);
        for (k, &c) in costs.iter().enumerate() {
            a.set(k / cols, k % cols, c);
        }
        a.solve().to_vec()
    }

    /// Exhaustive reference: most allowed pairs, then least cost.
    fn brute(rows: usize, cols: usize, costs: &[f64]) -> (usize, f64) {
        fn rec(r: usize, rows: usize, cols: usize, costs: &[f64], used: &mut [bool]) -> (usize, f64) {
            if r == rows {
                return (0, 0.0);
            }
            let mut best = rec(r + 1, rows, cols, costs, used);
            for c in 0..cols {
                let cost = costs[r * cols + c];
                if used[c] || !cost.is_finite() {
                    continue;
                }
                used[c] = true;
                let (n, s) = rec(r + 1, rows, cols, costs, used);
                used[c] = false;
                let cand = (n + 1, s + cost);
                if cand.0 > best.0 || (cand.0 == best.0 && cand.1 < best.1 - 1e-12) {
                    best = cand;
                }
            }
            best
        }
        rec(0, rows, cols, costs, &mut vec![false; cols])
    }

    #[test]
    fn picks_the_global_optimum_not_the_greedy_one() {
        // Greedy would take (0,0) = 0.1 and then be left with (1,1) = 0.9.
        let m = solve(2, 2, &[0.1, 0.2, 0.3, 0.9]);
        assert_eq!(m, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn never_returns_forbidden_pairs_and_handles_rectangles() {
        let f = FORBIDDEN;
        assert_eq!(solve(3, 2, &[f, 0.5, f, f, 0.2, 0.1]), vec![(0, 1), (2, 0)]);
        assert_eq!(solve(1, 3, &[f, f, f]), vec![]);
        assert_eq!(solve(0, 3, &[]), vec![]);
        assert_eq!(solve(2, 3, &[f, 0.4, f, f, 0.3, f]).len(), 1);
    }

    #[test]
    fn matches_exhaustive_search_on_pseudo_random_problems() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut a = Assignment::default();
        for _ in 0..300 {
            let rows = (next() % 6) as usize;
            let cols = (next() % 6) as usize;
            let costs: Vec<f64> = (0..rows * cols)
                .map(|_| {
                    let r = next() % 100;
                    if r < 40 {
                        FORBIDDEN
                    } else {
                        r as f64 / 100.0
                    }
                })
                .collect();
            a.reset(rows, cols);
            for (k, &c) in costs.iter().enumerate() {
                a.set(k / cols, k % cols, c);
            }
            let got = a.solve().to_vec();
            let total: f64 = got.iter().map(|&(r, c)| costs[r * cols + c]).sum();
            let (n, best) = brute(rows, cols, &costs);
            assert_eq!(got.len(), n, "{rows}x{cols} {costs:?}");
            assert!((total - best).abs() < 1e-9, "{total} vs {best} for {costs:?}");
        }
    }
}
