//! A small YAML writer for the generated parts of `template.yaml`: block mappings and
//! sequences, scalars plain when that is unambiguous, otherwise double-quoted (JSON string
//! syntax is valid YAML). Intrinsic functions are written in their long form (`Ref`,
//! `Fn::GetAtt`, `Fn::Sub`), which CloudFormation reads the same as the short tags.

use serde_json::Value;

/// `value` (a mapping) as block YAML, every line indented by `indent` spaces.
pub fn to_yaml(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, value, indent);
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                pad(out, indent);
                out.push_str(&scalar_string(key));
                out.push(':');
                write_nested(out, item, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                pad(out, indent);
                out.push('-');
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key goes on the dash's line, the rest under it.
                        let nested = to_yaml(item, indent + 2);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    _ => write_nested(out, item, indent),
                }
            }
        }
        scalar => {
            pad(out, indent);
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar on the same line, a collection on the next lines.
fn write_nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_value(out, value, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_value(out, value, indent + 2);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => scalar_string(s),
        other => other.to_string(),
    }
}

/// Plain when it cannot be read as anything but this string, else double-quoted.
fn scalar_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ':'))
        && !s.ends_with(':')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_yaml_with_quoted_ambiguous_scalars() {
        let value = json!({
            "A": {"Type": "AWS::X", "List": ["a", {"Ref": "B", "Other": 1}], "Empty": []},
            "C": {"Text": "has space", "Bool": "true", "Sub": "${X}/*", "Flag": true}
        });
        assert_eq!(
            to_yaml(&value, 2),
            "  A:\n    Empty: []\n    List:\n      - a\n      - Other: 1\n        Ref: B\n    Type: AWS::X\n  C:\n    Bool: \"true\"\n    Flag: true\n    Sub: \"${X}/*\"\n    Text: \"has space\"\n"
        );
    }
}
