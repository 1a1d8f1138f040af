//! Camera-like test content: a textured static background (multi-octave value noise,
//! bricks, foliage-like blotches) under a slowly changing illumination, textured moving
//! objects of different sizes and speeds, and per-frame sensor noise. Deterministic per
//! (camera, frame). Unlike the flat shapes scene it compresses like real video (an encoder
//! spends its bits on texture and noise), which is what decoder-bound benchmarks need.
//!
//! Per frame the work is integer only: the background and the object textures are made once
//! per (camera, size), a frame is the background scaled by the illumination, the objects
//! copied from their texture tiles, and a xorshift noise value per pixel.

/// Fixed-point scale of the illumination gain (256 = 1.0).
const GAIN_ONE: u32 = 256;
/// Side of the square texture tile of each moving object.
const TILE: usize = 128;

/// xorshift32 step (never returns 0 for a non-zero state).
#[inline]
fn xorshift(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// A hash of (seed, x, y) to 0..=255 (lattice values of the value noise).
#[inline]
fn lattice(seed: u32, x: u32, y: u32) -> u32 {
    let mut h = seed ^ x.wrapping_mul(0x27d4_eb2d) ^ y.wrapping_mul(0x1656_67b1);
    h = xorshift(h | 1);
    h = xorshift(h.wrapping_mul(0x9e37_79b9) | 1);
    h & 0xff
}

/// Value noise with bilinear interpolation at cell size `cell` (pixels), 0..=255.
fn value_noise(seed: u32, x: u32, y: u32, cell: u32) -> u32 {
    let (cx, cy) = (x / cell, y / cell);
    let (fx, fy) = ((x % cell) * 256 / cell, (y % cell) * 256 / cell);
    let a = lattice(seed, cx, cy);
    let b = lattice(seed, cx + 1, cy);
    let c = lattice(seed, cx, cy + 1);
    let d = lattice(seed, cx + 1, cy + 1);
    let top = a * (256 - fx) + b * fx;
    let bottom = c * (256 - fx) + d * fx;
    (top * (256 - fy) + bottom * fy) >> 16
}

/// Multi-octave noise (cells 64, 32, 16, 8, 4 px, halving weights), 0..=255.
fn fractal(seed: u32, x: u32, y: u32) -> u32 {
    let mut sum = 0;
    let mut weight_sum = 0;
    for (i, (cell, w)) in [(64, 16), (32, 8), (16, 4), (8, 2), (4, 1)]
        .into_iter()
        .enumerate()
    {
        sum += value_noise(seed.wrapping_add(i as u32 * 7919), x, y, cell) * w;
        weight_sum += w;
    }
    sum / weight_sum
}

/// One moving object: a textured ellipse or box bouncing around the frame.
#[derive(Debug, Clone)]
struct Mover {
    /// Size as a fraction of the frame height, in 1/1000.
    size: u32,
    aspect: u32,
    /// Start position (fraction of the frame, 1/1000) and speed (1/1000 of the frame per frame).
    x0: i64,
    y0: i64,
    vx: i64,
    vy: i64,
    ellipse: bool,
    tile: Vec<[u8; 3]>,
}

/// Background and object textures of one camera at one frame size.
pub struct CameraScene {
    camera: u32,
    width: u32,
    height: u32,
    background: Vec<[u8; 3]>,
    movers: Vec<Mover>,
}

impl CameraScene {
    /// Builds the textures of `camera` at `width` x `height` (tens of milliseconds at 1080p).
    pub fn new(camera: u32, width: u32, height: u32) -> Self {
        let seed = xorshift(camera.wrapping_mul(0x9e37_79b9) | 1);
        let (w, h) = (width as usize, height as usize);
        let mut background = vec![[0u8; 3]; w * h];
        // Horizon: upper third foliage-like blotches, lower part a brick wall / pavement.
        let horizon = h / 3;
        let tint = [
            [90 + (seed & 63), 120 + ((seed >> 6) & 63), 70],
            [150, 110 + ((seed >> 12) & 31), 90 + ((seed >> 17) & 31)],
        ];
        for y in 0..h {
            for x in 0..w {
                let n = fractal(seed, x as u32, y as u32);
                let px = if y < horizon {
                    // Foliage: dark/light green blotches from a second octave set.
                    let m = fractal(seed ^ 0x5555, x as u32 * 2, y as u32 * 2);
                    let v = (n + m) / 2;
                    [tint[0][0] * v / 200, tint[0][1] * v / 160, tint[0][2] * v / 220]
                } else {
                    // Bricks 64x24 px with 3 px mortar, rows offset by half a brick.
                    let row = (y - horizon) / 24;
                    let bx = (x + (row % 2) * 32) % 64;
                    let by = (y - horizon) % 24;
                    if bx < 3 || by < 3 {
                        [170 * n / 255 + 40, 165 * n / 255 + 40, 160 * n / 255 + 40]
                    } else {
                        let shade = lattice(seed, ((x + (row % 2) * 32) / 64) as u32, row as u32) / 4;
                        let v = n / 2 + 64 + shade;
                        [tint[1][0] * v / 255, tint[1][1] * v / 255, tint[1][2] * v / 255]
                    }
                };
                background[y * w + x] = px.map(|c| c.min(255) as u8);
            }
        }
        let mut r = seed;
        let mut next = |m: u32| {
            r = xorshift(r);
            r % m
        };
        let count = 5 + camera % 4;
        let movers = (0..count)
            .map(|i| {
                let tile_seed = seed.wrapping_add(1000 + i);
                let color = [next(200) + 40, next(200) + 40, next(200) + 40];
                let stripes = next(2) == 0;
                let tile = (0..TILE * TILE)
                    .map(|k| {
                        let (tx, ty) = ((k % TILE) as u32, (k / TILE) as u32);
                        let mut v = fractal(tile_seed, tx * 2, ty * 2) / 2 + 100;
                        if stripes && (tx / 16) % 2 == 0 {
                            v = v * 3 / 4;
                        }
                        color.map(|c| (c * v / 228).min(255) as u8)
                    })
                    .collect();
                Mover {
                    size: 40 + next(260),
                    aspect: 60 + next(120),
                    x0: next(1000) as i64,
                    y0: next(1000) as i64,
                    vx: next(9) as i64 - 4,
                    vy: next(5) as i64 - 2,
                    ellipse: next(2) == 0,
                    tile,
                }
            })
            .collect();
        Self {
            camera,
            width,
            height,
            background,
            movers,
        }
    }

    pub fn camera(&self) -> u32 {
        self.camera
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Renders `frame` as RGBA into `out` (`width * height * 4` bytes).
    pub fn render_rgba(&self, frame: u64, out: &mut [u8]) {
        let (w, h) = (self.width as usize, self.height as usize);
        if out.len() < w * h * 4 {
            return;
        }
        // Slow global illumination change: a triangle wave of ±10 % over 20 s at 30 fps.
        let period = 600u64;
        let phase = ((frame + u64::from(self.camera) * 97) % period) as u32;
        let tri = if phase < 300 { phase } else { 600 - phase };
        let gain = GAIN_ONE - 26 + tri * 52 / 300;
        let mut rng = xorshift((frame as u32).wrapping_mul(0x85eb_ca6b) ^ self.camera.wrapping_add(1) | 1);
        for (px, o) in self.background.iter().zip(out.chunks_exact_mut(4)) {
            rng = xorshift(rng);
            let noise = (rng & 15) as i32 - 8;
            for c in 0..3 {
                let v = (u32::from(px[c]) * gain / GAIN_ONE) as i32 + noise;
                o[c] = v.clamp(0, 255) as u8;
            }
            o[3] = 255;
        }
        let f = frame as i64;
        for m in &self.movers {
            let oh = (h as i64 * i64::from(m.size) / 1000).max(8);
            let ow = (oh * i64::from(m.aspect) / 100).max(8);
            let span_x = (w as i64 - ow).max(1);
            let span_y = (h as i64 - oh).max(1);
            // Bounce: position on a triangle wave over the free span.
            let bounce = |p0: i64, v: i64, span: i64| {
                let p = (p0 * span / 1000 + v * f * span / 1000 / 4).rem_euclid(2 * span);
                if p < span {
                    p
                } else {
                    2 * span - p
                }
            };
            let (x0, y0) = (bounce(m.x0, m.vx, span_x), bounce(m.y0, m.vy, span_y));
            for dy in 0..oh {
                let y = (y0 + dy) as usize;
                if y >= h {
                    break;
                }
                let ty = (dy * TILE as i64 / oh) as usize;
                for dx in 0..ow {
                    let x = (x0 + dx) as usize;
                    if x >= w {
                        break;
                    }
                    if m.ellipse {
                        let (ex, ey) = (2 * dx - ow, 2 * dy - oh);
                        if ex * ex * oh * oh + ey * ey * ow * ow > ow * ow * oh * oh {
                            continue;
                        }
                    }
                    let tx = (dx * TILE as i64 / ow) as usize;
                    let t = m.tile[ty * TILE + tx];
                    let o = &mut out[(y * w + x) * 4..(y * w + x) * 4 + 3];
                    rng = xorshift(rng);
                    let noise = (rng & 15) as i32 - 8;
                    for c in 0..3 {
                        o[c] = ((u32::from(t[c]) * gain / GAIN_ONE) as i32 + noise).clamp(0, 255) as u8;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_camera_and_frame_and_moving() {
        let a = CameraScene::new(3, 160, 90);
        let b = CameraScene::new(3, 160, 90);
        let mut f0 = vec![0u8; 160 * 90 * 4];
        let mut f0b = f0.clone();
        let mut f1 = f0.clone();
        a.render_rgba(10, &mut f0);
        b.render_rgba(10, &mut f0b);
        a.render_rgba(40, &mut f1);
        assert_eq!(f0, f0b, "same camera and frame, same pixels");
        assert_ne!(f0, f1, "frames differ");
        let mut other = f0.clone();
        CameraScene::new(4, 160, 90).render_rgba(10, &mut other);
        assert_ne!(f0, other, "cameras differ");
    }

    #[test]
    fn textured_not_flat() {
        let s = CameraScene::new(0, 320, 180);
        let mut f = vec![0u8; 320 * 180 * 4];
        s.render_rgba(0, &mut f);
        // Many distinct grey levels over the frame (flat scenes have a handful).
        let mut seen = [false; 256];
        for p in f.chunks_exact(4) {
            seen[p[1] as usize] = true;
        }
        assert!(seen.iter().filter(|&&s| s).count() > 100);
        assert!(f.chunks_exact(4).all(|p| p[3] == 255));
    }

    #[test]
    fn short_buffer_is_left_alone() {
        let s = CameraScene::new(0, 64, 32);
        let mut f = vec![7u8; 10];
        s.render_rgba(0, &mut f);
        assert_eq!(f, vec![7u8; 10]);
    }
}
