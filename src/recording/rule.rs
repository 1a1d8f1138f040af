//! Detection rules that trigger event recordings: a class, a minimum confidence and an
//! optional zone (trtanalytics zone-file format), with a cooldown per camera.

use crate::analytics::config::{Anchor, Config as ZoneConfig};
use crate::analytics::geometry::in_zone;
use crate::results::Detection;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

fn default_confidence() -> f64 {
    0.5
}
fn default_before() -> f64 {
    5.0
}
fn default_after() -> f64 {
    5.0
}
fn default_cooldown() -> f64 {
    30.0
}

/// One rule, as `[[recording.rules]]` of trtvision-serve and the properties of
/// `trtrecordrule` give it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RuleConfig {
    /// Name in the trigger (`rule:<name>`).
    pub name: String,
    /// Detection label; absent: any label.
    #[serde(default)]
    pub label: Option<String>,
    /// Lowest confidence that triggers (default 0.5).
    #[serde(default = "default_confidence")]
    pub min_confidence: f64,
    /// trtanalytics config file with the zone (relative paths: to the service's file).
    #[serde(default)]
    pub zone_file: Option<PathBuf>,
    /// Zone name in `zone-file`: only objects in that zone of their camera trigger.
    #[serde(default)]
    pub zone: Option<String>,
    /// Seconds recorded before and after the detection (default 5 and 5).
    #[serde(default = "default_before")]
    pub before: f64,
    #[serde(default = "default_after")]
    pub after: f64,
    /// Seconds after a trigger before the same camera can trigger this rule again
    /// (default 30).
    #[serde(default = "default_cooldown")]
    pub cooldown: f64,
}

impl RuleConfig {
    /// A rule named `name` with the defaults.
    pub fn named(name: &str) -> Self {
        RuleConfig {
            name: name.to_owned(),
            label: None,
            min_confidence: default_confidence(),
            zone_file: None,
            zone: None,
            before: default_before(),
            after: default_after(),
            cooldown: default_cooldown(),
        }
    }

    /// Checks the values; the error is a sentence naming the rule.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty() {
            return Err("a recording rule needs a name".into());
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(format!(
                "recording rule '{n}': min-confidence must be from 0 to 1, not {}",
                self.min_confidence
            ));
        }
        for (key, v) in [
            ("before", self.before),
            ("after", self.after),
            ("cooldown", self.cooldown),
        ] {
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                return Err(format!(
                    "recording rule '{n}': {key} must be seconds from 0 to 3600, not {v}"
                ));
            }
        }
        if self.zone.is_some() != self.zone_file.is_some() {
            return Err(format!(
                "recording rule '{n}': zone and zone-file go together (the zone is looked up in the file)"
            ));
        }
        Ok(())
    }
}

/// A zone's polygon per camera (trtmux pad index) and how objects are placed in it.
#[derive(Debug, Clone)]
struct Zones {
    polygons: HashMap<u32, Vec<[f32; 2]>>,
    anchor: Anchor,
    min_mask_fraction: f64,
}

/// A rule ready to evaluate, with its cooldowns.
#[derive(Debug)]
pub struct Rule {
    pub config: RuleConfig,
    zones: Option<Zones>,
    /// Stream time (ns) of each camera's last trigger.
    last: HashMap<u32, u64>,
}

/// A recording to ask of a camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub camera: u32,
    pub trigger: String,
    pub before: f64,
    pub after: f64,
    /// Label and confidence of the detection that triggered.
    pub label: String,
    pub confidence: f32,
}

impl Rule {
    /// Validates `config` and loads its zone file.
    pub fn new(config: RuleConfig) -> Result<Self, String> {
        config.validate()?;
        let zones = match (&config.zone_file, &config.zone) {
            (Some(file), Some(zone)) => {
                let zc = ZoneConfig::load(file)?;
                let polygons: HashMap<u32, Vec<[f32; 2]>> = zc
                    .cameras
                    .iter()
                    .filter_map(|c| {
                        c.zones
                            .iter()
                            .find(|z| z.name == *zone)
                            .map(|z| (c.id, z.polygon.clone()))
                    })
                    .collect();
                if polygons.is_empty() {
                    return Err(format!(
                        "recording rule '{}': no camera of {} has a zone named '{zone}'",
                        config.name,
                        file.display()
                    ));
                }
                Some(Zones {
                    polygons,
                    anchor: zc.anchor,
                    min_mask_fraction: zc.min_mask_fraction,
                })
            }
            _ => None,
        };
        Ok(Rule {
            config,
            zones,
            last: HashMap::new(),
        })
    }

    /// The detection of `detections` that satisfies the rule on `camera`, if any.
    fn matching<'a>(&self, camera: u32, detections: &'a [Detection]) -> Option<&'a Detection> {
        let c = &self.config;
        let polygon = match &self.zones {
            Some(z) => Some((z.polygons.get(&camera)?, z)),
            None => None,
        };
        detections.iter().find(|d| {
            c.label.as_deref().is_none_or(|l| *d.label == *l)
                && f64::from(d.confidence) >= c.min_confidence
                && polygon.is_none_or(|(p, z)| in_zone(p, d, z.anchor, z.min_mask_fraction))
        })
    }

    /// Evaluates one frame of `camera` at stream time `time_ns`: a trigger when a detection
    /// satisfies the rule and the camera's cooldown has passed.
    pub fn evaluate(&mut self, camera: u32, time_ns: u64, detections: &[Detection]) -> Option<Trigger> {
        let d = self.matching(camera, detections)?;
        let cooldown = Duration::from_secs_f64(self.config.cooldown).as_nanos() as u64;
        if let Some(&t) = self.last.get(&camera) {
            // A camera whose timeline restarted (time went back) may trigger again.
            if time_ns >= t && time_ns - t < cooldown {
                return None;
            }
        }
        self.last.insert(camera, time_ns);
        Some(Trigger {
            camera,
            trigger: format!("rule:{}", self.config.name),
            before: self.config.before,
            after: self.config.after,
            label: d.label.to_string(),
            confidence: d.confidence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;
    use std::sync::Arc;

    fn det(label: &str, confidence: f32, x: f32) -> Detection {
        Detection::new(
            Arc::from("m"),
            0,
            Arc::from(label),
            confidence,
            BoxF::new(x, 10.0, x + 10.0, 20.0),
        )
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn class_confidence_and_cooldown() {
        let mut cfg = RuleConfig::named("person");
        cfg.label = Some("person".into());
        cfg.min_confidence = 0.6;
        cfg.cooldown = 10.0;
        let mut r = Rule::new(cfg).unwrap();
        assert_eq!(r.evaluate(0, 0, &[det("car", 0.9, 0.0)]), None);
        assert_eq!(r.evaluate(0, 0, &[det("person", 0.5, 0.0)]), None);
        let t = r.evaluate(0, S, &[det("person", 0.7, 0.0)]).unwrap();
        assert_eq!(t.trigger, "rule:person");
        assert_eq!((t.before, t.after), (5.0, 5.0));
        // Cooldown per camera.
        assert_eq!(r.evaluate(0, 5 * S, &[det("person", 0.7, 0.0)]), None);
        assert!(r.evaluate(1, 5 * S, &[det("person", 0.7, 0.0)]).is_some());
        assert!(r.evaluate(0, 11 * S, &[det("person", 0.7, 0.0)]).is_some());
        // A timeline that went back (camera restarted) triggers again.
        assert!(r.evaluate(0, 0, &[det("person", 0.7, 0.0)]).is_some());
    }

    #[test]
    fn zone_from_the_analytics_file() {
        let path = std::env::temp_dir().join(format!("trtvision-rule-zone-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "anchor = \"centre\"\n[[camera]]\nid = 1\n[[camera.zone]]\nname = \"door\"\npolygon = [[0, 0], [50, 0], [50, 50], [0, 50]]\n",
        )
        .unwrap();
        let mut cfg = RuleConfig::named("door");
        cfg.zone_file = Some(path.clone());
        cfg.zone = Some("door".into());
        let mut r = Rule::new(cfg.clone()).unwrap();
        assert!(r.evaluate(1, 0, &[det("car", 0.9, 100.0)]).is_none(), "outside");
        assert!(
            r.evaluate(0, 0, &[det("car", 0.9, 10.0)]).is_none(),
            "camera without the zone"
        );
        assert!(r.evaluate(1, 0, &[det("car", 0.9, 10.0)]).is_some(), "inside");
        cfg.zone = Some("gate".into());
        let e = Rule::new(cfg.clone()).unwrap_err();
        assert!(e.contains("gate"), "{e}");
        cfg.zone_file = None;
        assert!(Rule::new(cfg).unwrap_err().contains("go together"));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn values_are_checked() {
        let mut cfg = RuleConfig::named("x");
        cfg.min_confidence = 1.5;
        assert!(cfg.validate().unwrap_err().contains("min-confidence"));
        let mut cfg = RuleConfig::named("x");
        cfg.after = -1.0;
        assert!(cfg.validate().unwrap_err().contains("after"));
        let cfg: RuleConfig =
            toml::from_str("name = \"p\"\nlabel = \"person\"\nmin-confidence = 0.7").unwrap();
        assert_eq!(cfg.min_confidence, 0.7);
        assert!(toml::from_str::<RuleConfig>("name = \"p\"\nlable = \"x\"").is_err());
    }
}
