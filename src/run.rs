//! CLI arguments to an exit code.

pub fn main() -> i32 {
    0
}
