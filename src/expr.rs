//! The expression language of `when`, `changed_when`, `failed_when` and
//! `until`. (API fixed; body being written.)

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// 1-based column in the expression text, when known.
    pub col: Option<usize>,
    pub msg: String,
    /// The undefined variable, when that is the cause.
    pub var: Option<String>,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub src: String,
}

/// Parses an expression (parse time: syntax errors before anything runs).
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    Ok(Expr {
        src: src.to_string(),
    })
}

/// Evaluates to a value.
pub fn eval(_e: &Expr, _vars: &Value) -> Result<Value, ExprError> {
    Ok(Value::Bool(true))
}

/// Evaluates to a boolean with Ansible/Jinja truthiness.
pub fn eval_bool(e: &Expr, vars: &Value) -> Result<bool, ExprError> {
    Ok(truthy(&eval(e, vars)?))
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
