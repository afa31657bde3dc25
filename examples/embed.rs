//! Embedding Kiln: host functions, a typed call in a loop, globals, and a runtime error that
//! leaves the engine usable. Run with `cargo run --example embed`.

use kiln::{Config, Engine, Error, TrapKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const SCRIPT: &str = r#"
const GRAVITY: float = -9.81;
global bounces: int = 0;
global heights: [float; 8];

// Advances a falling ball by `dt` seconds; returns its new height.
fn step(i: int, height: float, speed: float, dt: float) -> float {
    let h = height + speed * dt + 0.5 * GRAVITY * dt * dt;
    if h < 0.0 {
        bounces += 1;
        report_bounce(i);
        return -h;
    }
    heights[i % len(heights)] = h;
    return h;
}

fn average_height() -> float {
    let sum = 0.0;
    for i in 0..len(heights) {
        sum += heights[i];
    }
    return sum / len(heights) as float;
}

fn ratio(a: int, b: int) -> int {
    return a / b;
}
"#;

fn main() -> Result<(), Error> {
    let mut engine = Engine::new(Config::default())?;

    // A host function is any Rust closure over i64/f64/bool.
    let last_bounce = Arc::new(AtomicI64::new(-1));
    let seen = last_bounce.clone();
    engine.register("report_bounce", move |frame: i64| {
        seen.store(frame, Ordering::Relaxed);
    })?;

    let module = engine.load_str("ball.kl", SCRIPT)?;
    let step = module.typed::<(i64, f64, f64, f64), f64>("step")?;

    let (mut height, mut speed) = (10.0, 0.0);
    for frame in 0..120 {
        let next = step.call((frame, height, speed, 1.0 / 30.0))?;
        speed = (next - height) * 30.0;
        height = next;
    }
    println!("height after 4 s: {height:.3} m");
    println!("bounces: {}", module.global::<i64>("bounces")?);
    println!(
        "last bounce at frame {}",
        last_bounce.load(Ordering::Relaxed)
    );
    let avg = module.typed::<(), f64>("average_height")?.call(())?;
    println!("average of the last heights: {avg:.3} m");

    // Runtime errors are values; the module stays usable.
    let ratio = module.typed::<(i64, i64), i64>("ratio")?;
    match ratio.call((1, 0)) {
        Err(Error::Runtime(e)) if e.kind == TrapKind::DivisionByZero => {
            println!("caught: {e}");
        }
        other => println!("unexpected: {other:?}"),
    }
    println!("7 / 2 = {}", ratio.call((7, 2))?);
    Ok(())
}
