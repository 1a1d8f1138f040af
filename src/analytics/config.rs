//! trtanalytics configuration file (TOML), documented in docs/analytics.md.

use serde::Deserialize;
use std::path::Path;

/// Which point of a box stands for an object without mask (zones) and for every tracked
/// object (lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    #[default]
    BottomCentre,
    Centre,
    TopCentre,
    TopLeft,
    BottomLeft,
}

impl Anchor {
    pub fn point(self, b: &crate::geometry::BoxF) -> (f32, f32) {
        let cx = (b.x0 + b.x1) / 2.0;
        match self {
            Anchor::BottomCentre => (cx, b.y1),
            Anchor::Centre => (cx, (b.y0 + b.y1) / 2.0),
            Anchor::TopCentre => (cx, b.y0),
            Anchor::TopLeft => (b.x0, b.y0),
            Anchor::BottomLeft => (b.x0, b.y1),
        }
    }
}

/// A polygon zone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    /// Vertices in frame pixels, at least 3.
    pub polygon: Vec<[f32; 2]>,
    /// Labels counted (all when absent).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Occupancy events when the number of objects reaches / falls below this.
    #[serde(default)]
    pub occupancy_threshold: Option<u32>,
    /// A `dwell` event when a tracked object has been inside this long (seconds).
    #[serde(default)]
    pub dwell_threshold_s: Option<f64>,
}

/// A directed line (crossings are `forward` from its left-hand to its right-hand side,
/// seen along `from` -> `to` on screen).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Line {
    pub name: String,
    pub from: [f32; 2],
    pub to: [f32; 2],
    #[serde(default)]
    pub classes: Option<Vec<String>>,
}

/// Rules of one camera (trtmux sink pad index).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Camera {
    pub id: u32,
    #[serde(default, rename = "zone")]
    pub zones: Vec<Zone>,
    #[serde(default, rename = "line")]
    pub lines: Vec<Line>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// An object with a mask is in a zone when at least this fraction of its mask is.
    #[serde(default = "default_fraction")]
    pub min_mask_fraction: f64,
    /// Box point used without a mask, and for line crossings.
    #[serde(default)]
    pub anchor: Anchor,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<Camera>,
}

fn default_fraction() -> f64 {
    0.5
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_mask_fraction: default_fraction(),
            anchor: Anchor::default(),
            cameras: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and checks a configuration; the error is a sentence naming the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if !(0.0..=1.0).contains(&c.min_mask_fraction) || c.min_mask_fraction == 0.0 {
            return Err(format!(
                "min-mask-fraction must be in (0, 1], not {}",
                c.min_mask_fraction
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for cam in &c.cameras {
            if !ids.insert(cam.id) {
                return Err(format!("camera {} is configured twice", cam.id));
            }
            let mut names = std::collections::HashSet::new();
            for z in &cam.zones {
                if z.polygon.len() < 3 {
                    return Err(format!(
                        "zone '{}' of camera {}: polygon needs at least 3 points",
                        z.name, cam.id
                    ));
                }
                if z.polygon.iter().flatten().any(|v| !v.is_finite()) {
                    return Err(format!(
                        "zone '{}' of camera {}: polygon has a non-finite point",
                        z.name, cam.id
                    ));
                }
                if !names.insert(z.name.clone()) {
                    return Err(format!(
                        "zone name '{}' is used twice in camera {}",
                        z.name, cam.id
                    ));
                }
            }
            for l in &cam.lines {
                if l.from == l.to || l.from.iter().chain(&l.to).any(|v| !v.is_finite()) {
                    return Err(format!(
                        "line '{}' of camera {}: from and to must be two different finite points",
                        l.name, cam.id
                    ));
                }
                if !names.insert(l.name.clone()) {
                    return Err(format!("name '{}' is used twice in camera {}", l.name, cam.id));
                }
            }
        }
        Ok(c)
    }

    /// Reads and parses `path`; the error names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read the analytics config '{}': {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("analytics config '{}': {e}", path.display()))
    }

    pub fn camera(&self, id: u32) -> Option<&Camera> {
        self.cameras.iter().find(|c| c.id == id)
    }
}

/// Whether `label` passes a class filter.
pub fn accepts(classes: &Option<Vec<String>>, label: &str) -> bool {
    classes.as_ref().is_none_or(|c| c.iter().any(|l| l == label))
}
