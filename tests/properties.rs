//! Enumerated properties are GEnum types: introspection lists their values (as
//! gst-inspect-1.0 does), gst-launch descriptions refuse a misspelt value, and model
//! configs refuse one with a sentence naming the file, the key and the accepted values.

mod common;

use gst::glib;
use gst::prelude::*;

/// Every enumerated property of the plugin's elements: its default and its nicks, in order.
const ENUMS: &[(&str, &str, &str, &[&str])] = &[
    ("trtpreprocess", "dtype", "f32", &["f32", "f16"]),
    ("trtpreprocess", "resize", "letterbox", &["letterbox", "stretch"]),
    ("trtpreprocess", "color-order", "rgb", &["rgb", "bgr"]),
    ("trtpreprocess", "device", "auto", &["auto", "cpu"]),
    (
        "trtinfer",
        "backend",
        "config",
        &[
            "config",
            "onnxruntime-cpu",
            "onnxruntime-cuda",
            "onnxruntime-tensorrt",
            "tensorrt",
        ],
    ),
    (
        "trtinfer",
        "parser",
        "config",
        &["config", "yolo", "yolo-seg", "detr", "raw", "dense", "landmarks"],
    ),
    ("trtinfer", "operate-on", "frames", &["frames", "objects"]),
    ("trtinfer", "route", "c", &["a", "b", "c", "seed"]),
    (
        "trtoverlay",
        "dense-colormap",
        "none",
        &["none", "turbo", "jet", "gray"],
    ),
    ("trtoverlay", "device", "auto", &["auto", "cpu"]),
    ("trttiler", "device", "auto", &["auto", "cpu"]),
];

/// String properties that hold free text (paths, names, lists), not one of a fixed set.
const FREE_TEXT: &[(&str, &str)] = &[
    ("trtjsonexport", "location"),
    ("trtpreprocess", "config-file"),
    ("trtpreprocess", "model-name"),
    ("trtpreprocess", "input-name"),
    ("trtpreprocess", "mean"),
    ("trtpreprocess", "std"),
    ("trtpreprocess", "sources"),
    ("trtinfer", "model"),
    ("trtinfer", "model-name"),
    ("trtinfer", "labels"),
    ("trtinfer", "engine-cache-dir"),
    ("trtinfer", "operate-on-model"),
    ("trtinfer", "operate-on-classes"),
    ("trtinfer", "backend-in-use"),
    ("trtoverlay", "dense-model"),
    ("trtoverlay", "dense-range"),
    ("trttiler", "cpu-reason"),
    ("trtcamsrc", "uri"),
    ("trtcamsrc", "camera-id"),
    ("trtcamsrc", "user-id"),
    ("trtcamsrc", "user-pw"),
    ("trtcamsrc", "record-dir"),
    ("trtcamsrc", "record-file-prefix"),
    ("trtrecordrule", "label"),
    ("trtrecordrule", "zone-file"),
    ("trtrecordrule", "zone"),
    ("trtmsgbroker", "uri"),
    ("trtmsgbroker", "pipeline-id"),
    ("trtmsgbroker", "spool-dir"),
    ("trtmsgbroker", "username"),
    ("trtmsgbroker", "password"),
    ("trtmsgbroker", "tls-ca-file"),
    ("trtmsgbroker", "tls-cert-file"),
    ("trtmsgbroker", "tls-key-file"),
    ("trtanalytics", "config-file"),
];

fn nicks(pspec: &glib::ParamSpec) -> Option<Vec<String>> {
    let e = pspec.downcast_ref::<glib::ParamSpecEnum>()?;
    Some(
        e.enum_class()
            .values()
            .iter()
            .map(|v| v.nick().to_string())
            .collect(),
    )
}

#[test]
fn enumerated_properties_are_genums_with_described_values() {
    common::init();
    for (factory, name, default, expected) in ENUMS {
        let e = gst::ElementFactory::make(factory).build().expect(factory);
        let pspec = e
            .find_property(name)
            .unwrap_or_else(|| panic!("{factory} has no property {name}"));
        let got = nicks(&pspec).unwrap_or_else(|| panic!("{factory}::{name} is not a GEnum"));
        assert_eq!(got, *expected, "{factory}::{name}");
        let class = pspec.downcast_ref::<glib::ParamSpecEnum>().unwrap().enum_class();
        assert!(
            class.type_().name().starts_with("GstTrt"),
            "{factory}::{name}: {}",
            class.type_().name()
        );
        for v in class.values() {
            assert!(
                v.name().len() > v.nick().len() && !v.name().starts_with(char::is_lowercase),
                "{factory}::{name} value {} needs a description, got '{}'",
                v.nick(),
                v.name()
            );
        }
        assert_eq!(
            common::enum_nick(&e, name),
            default.to_string(),
            "{factory}::{name}"
        );
        // Every nick is accepted and read back.
        for nick in *expected {
            e.set_property_from_str(name, nick);
            assert_eq!(common::enum_nick(&e, name), nick.to_string(), "{factory}::{name}");
        }
    }
}

#[test]
fn no_string_property_takes_a_fixed_set_of_values() {
    common::init();
    let plugin = gst::Registry::get()
        .find_plugin("trtvision")
        .expect("plugin registered");
    let features = gst::Registry::get().features_by_plugin(plugin.plugin_name().as_str());
    let mut elements = 0;
    for f in features {
        let Some(factory) = f.downcast_ref::<gst::ElementFactory>() else {
            continue;
        };
        elements += 1;
        let e = factory.create().build().expect("element builds");
        for pspec in e.list_properties() {
            if pspec.owner_type() != e.type_() || pspec.value_type() != glib::Type::STRING {
                continue;
            }
            let key = (factory.name().to_string(), pspec.name().to_string());
            assert!(
                FREE_TEXT.iter().any(|(f, n)| key == (f.to_string(), n.to_string())),
                "{}::{} is a new string property: make it a GEnum if its values are a fixed set, else list it in FREE_TEXT",
                key.0,
                key.1
            );
        }
    }
    assert!(elements >= 10, "only {elements} elements found");
}

#[test]
fn misspelt_value_in_a_launch_line_is_refused() {
    common::init();
    for (desc, property) in [
        ("trtpreprocess resize=strech", "resize"),
        ("trtpreprocess dtype=f64", "dtype"),
        ("trtinfer route=d", "route"),
        ("trtinfer operate-on=crops", "operate-on"),
        ("trtinfer backend=onnx", "backend"),
        ("trtoverlay dense-colormap=viridis", "dense-colormap"),
        ("trttiler device=gpu0", "device"),
    ] {
        let full = format!("videotestsrc num-buffers=1 ! trtmux ! {desc} ! fakesink");
        let err = match gst::parse::launch(&full) {
            Ok(_) => panic!("'{desc}' was accepted"),
            Err(e) => e,
        };
        assert!(
            err.matches(gst::ParseError::CouldNotSetProperty),
            "'{desc}': {err:?}"
        );
        assert!(err.message().contains(property), "'{desc}': {}", err.message());
    }
    // The accepted spelling parses.
    gst::parse::launch("videotestsrc num-buffers=1 ! trtmux ! trtpreprocess resize=stretch ! fakesink")
        .expect("valid value");
}

#[test]
fn misspelt_value_in_a_model_config_names_file_key_and_values() {
    let template = std::fs::read_to_string(common::cfg("shapes-yolo.toml"))
        .expect("engines/shapes-yolo.toml")
        .replace(
            "\"models/",
            &format!("\"{}/", common::engines_dir().join("models").display()),
        )
        .replace(
            "\"shapes.txt\"",
            &format!("\"{}\"", common::engines_dir().join("shapes.txt").display()),
        );
    for (from, to, key, accepted) in [
        (
            "resize = \"letterbox\"",
            "resize = \"strech\"",
            "resize",
            "letterbox or stretch",
        ),
        ("dtype = \"f32\"", "dtype = \"u8\"", "dtype", "f32 or f16"),
        ("color = \"rgb\"", "color = \"rbg\"", "color", "rgb or bgr"),
    ] {
        assert!(template.contains(from), "{from}");
        let path = common::temp_path("properties", &format!("bad-{key}.toml"));
        std::fs::write(&path, template.replace(from, to)).expect("temp config");
        let err = gsttrtvision::config::ModelConfig::from_file(&path)
            .expect_err("bad value refused")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(&format!("[input] {key}")), "{err}");
        assert!(err.contains(accepted), "{err}");
    }
}
