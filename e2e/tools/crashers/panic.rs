//! The Rust program of the end-to-end crash tests: logs, then panics on an unwrap (with
//! `RUST_BACKTRACE=1` in the pod, the backtrace follows the message). Built static for musl
//! with rustc by e2e/tools/install.sh into vigil.test/crashers:1.

use std::time::Duration;

fn parse_quantity(field: &str) -> u32 {
    field.parse().unwrap()
}

fn main() {
    println!("payments: starting (pid {})", std::process::id());
    println!("payments: settling order 42");
    std::thread::sleep(Duration::from_secs(2));
    let quantity = parse_quantity("forty-two");
    println!("payments: {quantity}");
}
