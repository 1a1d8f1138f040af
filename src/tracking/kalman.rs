//! Constant-velocity Kalman filter on a box: state `(cx, cy, w, h, vx, vy, vw, vh)`.
//!
//! The motion model (`position += velocity` each frame), the measurement model (the
//! detector measures `cx, cy, w, h`) and the noise covariances (diagonal) never couple two
//! coordinates, so the 8×8 covariance stays block diagonal: the filter is exactly four
//! independent 2-state filters (position, velocity), one per coordinate. That is what is
//! implemented — no matrices, no allocation, a few dozen flops per frame and track.
//!
//! Noise follows ByteTrack / BoT-SORT: every standard deviation is proportional to the
//! box size along the coordinate's axis (width for `cx`, `w`; height for `cy`, `h`), with
//! `1/20` of the size for positions and `1/160` for velocities, so the filter behaves the
//! same at every scale.

use crate::geometry::BoxF;

/// Position noise, relative to the box size.
const STD_POSITION: f64 = 1.0 / 20.0;
/// Velocity noise, relative to the box size.
const STD_VELOCITY: f64 = 1.0 / 160.0;
/// Smallest size (pixels) used to scale the noise and returned as a predicted side, so
/// that degenerate boxes never make a covariance vanish.
const MIN_SIDE: f64 = 1.0;

/// One coordinate: position `x`, velocity `v`, covariance `[[p00, p01], [p01, p11]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    x: f64,
    v: f64,
    p00: f64,
    p01: f64,
    p11: f64,
}

impl Axis {
    /// New coordinate measured at `x`, velocity unknown (0 with a wide variance).
    fn new(x: f64, scale: f64) -> Self {
        let sp = 2.0 * STD_POSITION * scale;
        let sv = 10.0 * STD_VELOCITY * scale;
        Self {
            x,
            v: 0.0,
            p00: sp * sp,
            p01: 0.0,
            p11: sv * sv,
        }
    }

    /// One frame of constant-velocity motion: `x += v`, `P = F P Fᵀ + Q`.
    fn predict(&mut self, scale: f64) {
        let qp = (STD_POSITION * scale).powi(2);
        let qv = (STD_VELOCITY * scale).powi(2);
        self.x += self.v;
        self.p00 += 2.0 * self.p01 + self.p11 + qp;
        self.p01 += self.p11;
        self.p11 += qv;
    }

    /// Measurement `z` of the position with variance `r`.
    fn update(&mut self, z: f64, r: f64) {
        let s = self.p00 + r;
        if s <= 0.0 || !s.is_finite() {
            return;
        }
        let (k0, k1) = (self.p00 / s, self.p01 / s);
        let y = z - self.x;
        self.x += k0 * y;
        self.v += k1 * y;
        let (p00, p01, p11) = (self.p00, self.p01, self.p11);
        self.p00 = (1.0 - k0) * p00;
        self.p01 = (1.0 - k0) * p01;
        self.p11 = p11 - k1 * p01;
    }
}

/// Kalman filter of one tracked box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxKalman {
    cx: Axis,
    cy: Axis,
    w: Axis,
    h: Axis,
}

impl BoxKalman {
    /// Filter started on a first measurement, velocities 0 (uncertain).
    pub fn new(b: &BoxF) -> Self {
        let (cx, cy, w, h) = cxcywh(b);
        let (sw, sh) = (w.max(MIN_SIDE), h.max(MIN_SIDE));
        Self {
            cx: Axis::new(cx, sw),
            cy: Axis::new(cy, sh),
            w: Axis::new(w, sw),
            h: Axis::new(h, sh),
        }
    }

    fn scales(&self) -> (f64, f64) {
        (self.w.x.max(MIN_SIDE), self.h.x.max(MIN_SIDE))
    }

    /// Advances the state by one frame. A size that would shrink below one pixel stops
    /// shrinking (its velocity is zeroed), as in SORT.
    pub fn predict(&mut self) {
        let (sw, sh) = self.scales();
        self.cx.predict(sw);
        self.cy.predict(sh);
        self.w.predict(sw);
        self.h.predict(sh);
        for a in [&mut self.w, &mut self.h] {
            if a.x < MIN_SIDE {
                a.x = MIN_SIDE;
                a.v = 0.0;
            }
        }
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, b: &BoxF) {
        let (cx, cy, w, h) = cxcywh(b);
        let (sw, sh) = (w.max(MIN_SIDE), h.max(MIN_SIDE));
        let (rw, rh) = ((STD_POSITION * sw).powi(2), (STD_POSITION * sh).powi(2));
        self.cx.update(cx, rw);
        self.cy.update(cy, rh);
        self.w.update(w, rw);
        self.h.update(h, rh);
    }

    /// Stops the size from drifting while the track has no measurement (ByteTrack zeroes
    /// the size velocity of lost tracks); the centre keeps its velocity.
    pub fn freeze_size(&mut self) {
        self.w.v = 0.0;
        self.h.v = 0.0;
    }

    /// Current box estimate, frame pixels.
    pub fn bbox(&self) -> BoxF {
        BoxF::from_cxcywh(
            self.cx.x as f32,
            self.cy.x as f32,
            self.w.x.max(MIN_SIDE) as f32,
            self.h.x.max(MIN_SIDE) as f32,
        )
    }

    /// Current velocity of the centre, pixels per frame.
    pub fn velocity(&self) -> (f32, f32) {
        (self.cx.v as f32, self.cy.v as f32)
    }
}

fn cxcywh(b: &BoxF) -> (f64, f64, f64, f64) {
    let (w, h) = (b.width() as f64, b.height() as f64);
    (b.x0 as f64 + w / 2.0, b.y0 as f64 + h / 2.0, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moving(t: f32) -> BoxF {
        BoxF::new(100.0 + 5.0 * t, 50.0 - 2.0 * t, 140.0 + 5.0 * t, 80.0 - 2.0 * t)
    }

    #[test]
    fn learns_constant_velocity_and_extrapolates() {
        let mut kf = BoxKalman::new(&moving(0.0));
        for t in 1..20 {
            kf.predict();
            kf.update(&moving(t as f32));
        }
        let (vx, vy) = kf.velocity();
        assert!(
            (vx - 5.0).abs() < 0.2 && (vy + 2.0).abs() < 0.2,
            "velocity {vx} {vy}"
        );
        // Ten frames without measurement: the prediction follows the motion.
        for _ in 0..10 {
            kf.predict();
        }
        let iou = kf.bbox().iou(&moving(29.0));
        assert!(iou > 0.85, "predicted {:?}, IoU {iou}", kf.bbox());
    }

    #[test]
    fn static_box_stays_put_and_size_never_collapses() {
        let b = BoxF::new(10.0, 10.0, 12.0, 11.0);
        let mut kf = BoxKalman::new(&b);
        for _ in 0..5 {
            kf.predict();
            kf.update(&b);
        }
        assert!(kf.bbox().iou(&b) > 0.95);
        // A shrinking box followed by a long prediction keeps at least one pixel per side.
        let mut kf = BoxKalman::new(&BoxF::new(0.0, 0.0, 10.0, 10.0));
        for t in 1..6 {
            kf.predict();
            let s = 10.0 - 1.8 * t as f32;
            kf.update(&BoxF::new(0.0, 0.0, s, s));
        }
        for _ in 0..50 {
            kf.predict();
        }
        let p = kf.bbox();
        assert!(p.width() >= 1.0 && p.height() >= 1.0 && p.x0.is_finite());
    }
}
