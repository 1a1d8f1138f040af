//! Minimum-cost assignment of tracks to detections (Hungarian method, shortest augmenting
//! paths with potentials, O(n²·m)), with gating: pairs marked forbidden are never
//! reported as matches. All working memory lives in [`Assignment`] and is reused from one
//! call to the next, so the steady state allocates nothing.

/// Cost of a forbidden pair (class mismatch, IoU below the threshold).
pub const FORBIDDEN: f64 = f64::INFINITY;

/// Reusable solver: a cost matrix plus the solver's scratch vectors.
#[derive(Debug, Default)]
pub struct Assignment {
    rows: usize,
    cols: usize,
    cost: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    p: Vec<usize>,
    way: Vec<usize>,
    minv: Vec<f64>,
    used: Vec<bool>,
    matches: Vec<(usize, usize)>,
}

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
        let (rows, cols) = (self.rows, self.cols);
        let cost = &self.cost;
        let at = |i: usize, j: usize| {
            let c = if transposed {
                cost[j * cols + i]
            } else {
                cost[i * cols + j]
            };
            if c.is_finite() {
                c
            } else {
                big
            }
        };
        debug_assert_eq!(cost.len(), rows * cols);
        for vec in [&mut self.u, &mut self.v, &mut self.minv] {
            vec.clear();
        }
        self.u.resize(n + 1, 0.0);
        self.v.resize(m + 1, 0.0);
        self.minv.resize(m + 1, 0.0);
        self.p.clear();
        self.p.resize(m + 1, 0);
        self.way.clear();
        self.way.resize(m + 1, 0);
        self.used.clear();
        self.used.resize(m + 1, false);
        let (u, v, p, way, minv, used) = (
            &mut self.u,
            &mut self.v,
            &mut self.p,
            &mut self.way,
            &mut self.minv,
            &mut self.used,
        );
        for i in 1..=n {
            p[0] = i;
            let mut j0 = 0usize;
            minv.fill(f64::INFINITY);
            used.fill(false);
            loop {
                used[j0] = true;
                let i0 = p[j0];
                let mut delta = f64::INFINITY;
                let mut j1 = 0usize;
                for j in 1..=m {
                    if !used[j] {
                        let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                        if cur < minv[j] {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                        if minv[j] < delta {
                            delta = minv[j];
                            j1 = j;
                        }
                    }
                }
                if j1 == 0 {
                    // Cannot happen with finite costs and n ≤ m; bail out rather than loop.
                    break;
                }
                for j in 0..=m {
                    if used[j] {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
                if p[j0] == 0 {
                    break;
                }
            }
            while j0 != 0 {
                let j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
            }
        }
        for (j, &i) in p.iter().enumerate().skip(1) {
            if i == 0 {
                continue;
            }
            let (row, col) = if transposed {
                (j - 1, i - 1)
            } else {
                (i - 1, j - 1)
            };
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
