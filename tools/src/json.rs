//! JSON records of the benchmark binaries: objects with keys in a given order.

pub use serde_json::Value;

pub fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub fn obj_owned(pairs: Vec<(String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect())
}

pub fn to_string_compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Top-level keys in the given order, one per line; nested values compact.
pub fn to_string_pretty_ordered(rec: &[(String, Value)]) -> String {
    let mut s = String::from("{\n");
    for (i, (k, v)) in rec.iter().enumerate() {
        s += &format!(
            "  {}: {}{}\n",
            serde_json::to_string(k).unwrap(),
            to_string_compact(v),
            if i + 1 < rec.len() { "," } else { "" }
        );
    }
    s += "}";
    s
}
