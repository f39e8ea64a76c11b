//! Handlebars rendering, strict: an undefined variable is an error naming it.
//! (API fixed; body being written.)

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// The undefined variable, when that is the cause.
    pub var: Option<String>,
    pub msg: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// True when the string holds `{{`.
pub fn has_template(s: &str) -> bool {
    s.contains("{{")
}

/// Checks a template's syntax without rendering it (parse time).
pub fn check_syntax(_tpl: &str) -> Result<(), TemplateError> {
    Ok(())
}

/// Renders a template string against the variables.
pub fn render_str(tpl: &str, _vars: &Value) -> Result<String, TemplateError> {
    Ok(tpl.to_string())
}

/// Renders every string inside a value; a string that is exactly one
/// `{{ path }}` becomes the value at that path, its type kept.
pub fn render_value(v: &Value, _vars: &Value) -> Result<Value, TemplateError> {
    Ok(v.clone())
}
