//! Anthropic's native structured outputs (`output_config.format`, constrained decoding on the
//! API's side): which models have it, and the schema as the API takes it.
//!
//! The API guarantees the structure (types, required keys, enums, `$ref`) but takes no
//! numeric or length bounds and wants every object closed; those bounds are stripped from what
//! is sent and still checked on the answer (the adapter validates against the original schema).

use serde_json::{Map, Value};

/// Whether `model` takes `output_config.format`: Claude models of version 4.5 and later
/// (`claude-<family>-<major>-<minor>[-date]`, e.g. `claude-sonnet-4-5-20250929`). Older ids
/// (`claude-3-5-sonnet-…`, `claude-opus-4-1`) get the forced tool call instead.
pub fn has_native_structured_output(model: &str) -> bool {
    let Some(rest) = model.strip_prefix("claude-") else {
        return false;
    };
    let mut parts = rest.split('-');
    let family = parts.next().unwrap_or_default();
    if family.is_empty() || !family.chars().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    // A version part is short; an 8-digit date is not a minor version.
    let mut version = parts
        .take_while(|p| p.len() <= 2)
        .map_while(|p| p.parse::<u32>().ok());
    match (version.next(), version.next()) {
        (Some(major), minor) => (major, minor.unwrap_or(0)) >= (4, 5),
        (None, _) => false,
    }
}

/// Keywords the API refuses in a schema: numeric and length bounds.
const BOUNDS: &[&str] = &[
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "maxItems",
];

/// The schema as `output_config.format` takes it, or `None` when an object is explicitly open
/// (`additionalProperties` true or a schema), which the API cannot express: the caller then
/// uses the forced tool call.
pub fn native_schema(schema: &Value) -> Option<Value> {
    let Value::Object(map) = schema else {
        return Some(schema.clone());
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            k if BOUNDS.contains(&k) => {}
            // The API takes only 0 or 1 as a lower bound on items.
            "minItems" if value.as_u64().is_some_and(|n| n > 1) => {}
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                let Value::Object(children) = value else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                let mut mapped = Map::new();
                for (name, child) in children {
                    mapped.insert(name.clone(), native_schema(child)?);
                }
                out.insert(key.clone(), Value::Object(mapped));
            }
            "items" | "not" | "additionalItems" => {
                out.insert(key.clone(), native_schema(value)?);
            }
            "anyOf" | "allOf" | "oneOf" | "prefixItems" => {
                let Value::Array(children) = value else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                let mapped = children.iter().map(native_schema).collect::<Option<_>>()?;
                out.insert(key.clone(), Value::Array(mapped));
            }
            "additionalProperties" if *value != Value::Bool(false) => return None,
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    let is_object =
        out.get("type").and_then(Value::as_str) == Some("object") || out.contains_key("properties");
    if is_object {
        out.entry("additionalProperties")
            .or_insert(Value::Bool(false));
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claude_4_5_and_later_have_it_and_older_ids_do_not() {
        for yes in [
            "claude-sonnet-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5-20251001",
            "claude-opus-4-6",
            "claude-sonnet-5",
            "claude-opus-5-1-20270101",
        ] {
            assert!(has_native_structured_output(yes), "{yes}");
        }
        for no in [
            "claude-3-5-sonnet-20241022",
            "claude-3-haiku-20240307",
            "claude-opus-4-1",
            "claude-sonnet-4-20250514",
            "claude-opus-4-1-20250805",
            "claude-mythos-preview",
            "gpt-4o",
            "claude-",
        ] {
            assert!(!has_native_structured_output(no), "{no}");
        }
    }

    #[test]
    fn bounds_are_stripped_objects_closed_and_open_objects_refused() {
        let schema = json!({
            "$defs": {"step": {"type": "object", "properties": {
                "title": {"type": "string", "maxLength": 20}}}},
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/step"},
                          "minItems": 3, "maxItems": 5},
                "kind": {"enum": ["a", "b"]},
                "n": {"type": "integer", "minimum": 1}
            },
            "required": ["steps"]
        });
        assert_eq!(
            native_schema(&schema).unwrap(),
            json!({
                "$defs": {"step": {"type": "object", "properties": {
                    "title": {"type": "string"}}, "additionalProperties": false}},
                "type": "object",
                "properties": {
                    "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
                    "kind": {"enum": ["a", "b"]},
                    "n": {"type": "integer"}
                },
                "required": ["steps"],
                "additionalProperties": false
            })
        );
        let open = json!({"type": "object", "properties": {"m": {"type": "object",
            "additionalProperties": {"type": "string"}}}});
        assert_eq!(native_schema(&open), None);
    }
}
