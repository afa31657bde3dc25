//! The embedding API in process: host functions, typed and dynamic calls, globals, runtime
//! errors as values, interrupts and the call-depth limit (LANGUAGE.md sections 7 and 8).

use kiln::{Config, Engine, Error, Module, RuntimeError, TrapKind, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn engine() -> Engine {
    let config = Config {
        capture_output: true,
        ..Config::default()
    };
    Engine::new(config).expect("the default configuration works")
}

/// An engine like [`engine`] whose call depth limit is `max_call_depth`.
fn engine_with_call_depth(max_call_depth: u32) -> Engine {
    Engine::new(Config {
        max_call_depth,
        capture_output: true,
        ..Config::default()
    })
    .expect("the configuration works")
}

fn load(engine: &Engine, source: &str) -> Module {
    engine
        .load_str("game.kl", source)
        .unwrap_or_else(|e| panic!("does not compile:\n{e}"))
}

/// The runtime error of a failed call; anything else fails the test.
fn runtime_error<T: std::fmt::Debug>(result: Result<T, Error>) -> RuntimeError {
    match result {
        Err(Error::Runtime(e)) => e,
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

/// `game.kl:LINE:COL` of the first occurrence of `needle` in `source`.
fn location_of(source: &str, needle: &str) -> String {
    let at = source
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the source"));
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = source[..at].matches('\n').count() + 1;
    let col = source[line_start..at].chars().count() + 1;
    format!("game.kl:{line}:{col}")
}

#[test]
fn host_functions_over_every_scalar_type() {
    let mut engine = engine();
    let total = Arc::new(AtomicI64::new(0));
    let seen = total.clone();
    engine.register("add", |a: i64, b: i64| a + b).unwrap();
    engine.register("half", |x: f64| x / 2.0).unwrap();
    engine.register("flip", |b: bool| !b).unwrap();
    engine
        .register(
            "mix",
            |a: i64, x: f64, b: bool| if b { a as f64 * x } else { x },
        )
        .unwrap();
    engine
        .register("record", move |v: i64| {
            seen.fetch_add(v, Ordering::Relaxed);
        })
        .unwrap();
    engine.register("answer", || 42i64).unwrap();
    let src = "
        fn main() -> int {
            record(add(2, 3));
            record(answer());
            print(half(3.0));
            print(flip(false));
            print(mix(3, 1.5, true));
            print(mix(3, 1.5, false));
            return add(add(1, 2), answer());
        }
    ";
    let module = load(&engine, src);
    assert_eq!(module.call("main", &[]).unwrap(), Some(Value::Int(45)));
    assert_eq!(total.load(Ordering::Relaxed), 47);
    assert_eq!(module.take_output(), "1.5\ntrue\n4.5\n1.5\n");
    // Captured output is handed out once.
    assert_eq!(module.take_output(), "");
}

#[test]
fn host_functions_see_values_unchanged() {
    let mut engine = engine();
    engine.register("same", |x: f64| x).unwrap();
    engine.register("same_int", |x: i64| x).unwrap();
    let module = load(
        &engine,
        "
        fn f(x: float) -> float { return same(x); }
        fn g(x: int) -> int { return same_int(x); }
        ",
    );
    let f = module.typed::<(f64,), f64>("f").unwrap();
    assert!(f.call((f64::NAN,)).unwrap().is_nan());
    assert_eq!(f.call((-0.0,)).unwrap().to_bits(), (-0.0f64).to_bits());
    assert_eq!(f.call((f64::INFINITY,)).unwrap(), f64::INFINITY);
    let g = module.typed::<(i64,), i64>("g").unwrap();
    assert_eq!(g.call((i64::MIN,)).unwrap(), i64::MIN);
    assert_eq!(g.call((-1,)).unwrap(), -1);
}

#[test]
fn a_failing_host_function_is_a_host_error_at_its_call() {
    let mut engine = engine();
    engine
        .register("fail", |x: i64| -> Result<i64, String> {
            if x > 2 {
                Err(format!("{x} is too many"))
            } else {
                Ok(x)
            }
        })
        .unwrap();
    let src = "global progress: int = 0;

fn spawn(n: int) -> int {
    progress += 1;
    return fail(n) + 1;
}

fn main() -> int {
    print(spawn(1));
    return spawn(3);
}
";
    let module = load(&engine, src);
    let e = runtime_error(module.call("main", &[]));
    assert_eq!(e.kind, TrapKind::HostError);
    assert_eq!(e.function, "spawn");
    assert_eq!(e.location, location_of(src, "fail(n)"));
    assert_eq!(e.message.as_deref(), Some("3 is too many"));
    assert_eq!(module.take_output(), "2\n");
    assert_eq!(module.global::<i64>("progress").unwrap(), 2);
    // The module and the engine stay usable.
    let spawn = module.typed::<(i64,), i64>("spawn").unwrap();
    assert_eq!(spawn.call((2,)).unwrap(), 3);
    let again = load(&engine, "fn main() -> int { return fail(1); }");
    assert_eq!(again.call("main", &[]).unwrap(), Some(Value::Int(1)));
}

#[test]
fn a_panicking_host_function_is_a_host_error() {
    let mut engine = engine();
    engine
        .register("explode", |x: i64| -> i64 {
            if x == 0 {
                panic!("host function panicked on purpose");
            }
            x
        })
        .unwrap();
    let src = "fn main() -> int {\n    return explode(0);\n}\nfn fine() -> int {\n    return explode(5);\n}\n";
    let module = load(&engine, src);
    let e = runtime_error(module.call("main", &[]));
    assert_eq!(e.kind, TrapKind::HostError);
    assert_eq!(e.function, "main");
    assert_eq!(e.location, "game.kl:2:12");
    assert_eq!(module.call("fine", &[]).unwrap(), Some(Value::Int(5)));
    // The same host function keeps working in new modules too.
    let other = load(&engine, "fn main() -> int { return explode(7); }");
    assert_eq!(other.call("main", &[]).unwrap(), Some(Value::Int(7)));
}

#[test]
fn unregistered_and_clashing_host_names_are_compile_errors() {
    let mut engine = engine();
    let before = engine.load_str("game.kl", "fn main() { beep(1); }");
    match before {
        Err(Error::Compile(e)) => {
            assert!(!e.diagnostics().is_empty());
            assert!(e.to_string().contains("beep"), "{e}");
        }
        other => panic!("expected a compile error, got {:?}", other.map(|_| ())),
    }
    engine.register("beep", |_x: i64| {}).unwrap();
    load(&engine, "fn main() { beep(1); }");
    // A script item may not take a registered host function's name.
    let clash = engine.load_str("game.kl", "fn beep(x: int) {}\nfn main() {}");
    assert!(matches!(clash, Err(Error::Compile(_))));
    // Nor may a call pass the wrong types to one.
    let wrong = engine.load_str("game.kl", "fn main() { beep(1.0); }");
    assert!(matches!(wrong, Err(Error::Compile(_))));
}

#[test]
fn compile_errors_carry_diagnostics_with_locations() {
    let engine = engine();
    let src = "fn main() {\n    let x = 1;\n    x = 1.5;\n    print(nope);\n}\n";
    let Err(Error::Compile(e)) = engine.load_str("bad.kl", src) else {
        panic!("expected a compile error");
    };
    assert_eq!(e.diagnostics().len(), 2, "{e}");
    let text = e.to_string();
    assert!(text.contains("bad.kl:3:9"), "{text}");
    assert!(text.contains("bad.kl:4:11"), "{text}");
}

#[test]
fn typed_handles_check_signatures() {
    let engine = engine();
    let module = load(
        &engine,
        "
        fn step(i: int, x: float) -> float { return x + i as float; }
        fn tick() {}
        fn flag(b: bool) -> bool { return !b; }
        ",
    );
    let step = module.typed::<(i64, f64), f64>("step").unwrap();
    assert_eq!(step.call((1, 2.5)).unwrap(), 3.5);
    module.typed::<(), ()>("tick").unwrap().call(()).unwrap();
    assert!(
        module
            .typed::<(bool,), bool>("flag")
            .unwrap()
            .call((false,))
            .unwrap()
    );

    for result in [
        module.typed::<(f64, i64), f64>("step").map(|_| ()),
        module.typed::<(i64, f64), i64>("step").map(|_| ()),
        module.typed::<(i64,), f64>("step").map(|_| ()),
        module.typed::<(i64, f64), ()>("step").map(|_| ()),
        module.typed::<(), i64>("tick").map(|_| ()),
    ] {
        assert!(matches!(result, Err(Error::Signature { .. })), "{result:?}");
    }
    assert!(matches!(
        module.typed::<(), ()>("missing"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn dynamic_calls() {
    let engine = engine();
    let module = load(
        &engine,
        "
        fn add(a: int, b: int) -> int { return a + b; }
        fn scale(x: float) -> float { return x * 2.0; }
        fn not(b: bool) -> bool { return !b; }
        fn nothing() {}
        ",
    );
    assert_eq!(
        module
            .call("add", &[Value::Int(2), Value::Int(40)])
            .unwrap(),
        Some(Value::Int(42))
    );
    assert_eq!(
        module.call("scale", &[Value::Float(1.25)]).unwrap(),
        Some(Value::Float(2.5))
    );
    assert_eq!(
        module.call("not", &[Value::Bool(true)]).unwrap(),
        Some(Value::Bool(false))
    );
    assert_eq!(module.call("nothing", &[]).unwrap(), None);
    assert!(matches!(
        module.call("add", &[Value::Int(2)]),
        Err(Error::Signature { .. })
    ));
    assert!(matches!(
        module.call("add", &[Value::Int(2), Value::Float(1.0)]),
        Err(Error::Signature { .. })
    ));
    assert!(matches!(
        module.call("absent", &[]),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn globals_by_name_and_type() {
    let engine = engine();
    let module = load(
        &engine,
        "
        const N: int = 4;
        global score: int = N * 10;
        global speed: float = 1.5;
        global alive: bool = true;
        global grid: [float; N];
        global marks: [bool; 2];

        fn tick() {
            score += 1;
            speed *= 2.0;
            alive = !alive;
            grid[score % N] = speed;
        }

        fn sum() -> float {
            let s = 0.0;
            for i in 0..N {
                s += grid[i];
            }
            return s;
        }
        ",
    );
    assert_eq!(module.global::<i64>("score").unwrap(), 40);
    assert_eq!(module.global::<f64>("speed").unwrap(), 1.5);
    assert!(module.global::<bool>("alive").unwrap());
    assert_eq!(module.global_array::<f64>("grid").unwrap(), vec![0.0; 4]);
    assert_eq!(
        module.global_array::<bool>("marks").unwrap(),
        vec![false; 2]
    );

    module.typed::<(), ()>("tick").unwrap().call(()).unwrap();
    assert_eq!(module.global::<i64>("score").unwrap(), 41);
    assert_eq!(module.global::<f64>("speed").unwrap(), 3.0);
    assert!(!module.global::<bool>("alive").unwrap());
    assert_eq!(
        module.global_array::<f64>("grid").unwrap(),
        vec![0.0, 3.0, 0.0, 0.0]
    );

    // Writes from the host are what the script sees next.
    module.set_global("score", 2i64).unwrap();
    module.set_global("speed", 0.25f64).unwrap();
    module.set_global("alive", true).unwrap();
    module
        .set_global_array::<f64>("grid", &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    module
        .set_global_array::<bool>("marks", &[true, false])
        .unwrap();
    assert_eq!(
        module.typed::<(), f64>("sum").unwrap().call(()).unwrap(),
        10.0
    );
    module.typed::<(), ()>("tick").unwrap().call(()).unwrap();
    assert_eq!(module.global::<i64>("score").unwrap(), 3);
    assert_eq!(
        module.global_array::<f64>("grid").unwrap(),
        vec![1.0, 2.0, 3.0, 0.5]
    );
    assert!(!module.global::<bool>("alive").unwrap());
    assert_eq!(
        module.global_array::<bool>("marks").unwrap(),
        vec![true, false]
    );
}

#[test]
fn globals_of_the_wrong_type_or_name_are_errors() {
    let engine = engine();
    let module = load(
        &engine,
        "global score: int = 7;\nglobal grid: [int; 3];\nconst K: int = 1;\nfn f() {}\n",
    );
    let type_errors = [
        module.global::<f64>("score").map(|_| ()),
        module.global::<bool>("score").map(|_| ()),
        module.set_global("score", 1.0f64),
        module.global::<i64>("grid").map(|_| ()),
        module.global_array::<i64>("score").map(|_| ()),
        module.global_array::<f64>("grid").map(|_| ()),
        module.set_global_array::<i64>("grid", &[1, 2]),
        module.set_global_array::<i64>("grid", &[1, 2, 3, 4]),
    ];
    for result in type_errors {
        assert!(
            matches!(result, Err(Error::GlobalType { .. })),
            "{result:?}"
        );
    }
    for result in [
        module.global::<i64>("missing").map(|_| ()),
        module.global::<i64>("K").map(|_| ()),
        module.global::<i64>("f").map(|_| ()),
        module.set_global("missing", 1i64),
    ] {
        assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    }
    // Nothing was changed by the failed writes.
    assert_eq!(module.global::<i64>("score").unwrap(), 7);
    assert_eq!(module.global_array::<i64>("grid").unwrap(), vec![0, 0, 0]);
}

#[test]
fn runtime_errors_keep_globals_and_the_engine_usable() {
    let engine = engine();
    let src = "global count: int = 0;
global cells: [int; 3];

fn fill(n: int) {
    for i in 0..n {
        count += 1;
        cells[i] = i + 10;
    }
}

fn ratio(a: int, b: int) -> int {
    count += 100;
    return a / b;
}
";
    let module = load(&engine, src);
    let fill = module.typed::<(i64,), ()>("fill").unwrap();
    let e = runtime_error(fill.call((5,)));
    assert_eq!(e.kind, TrapKind::IndexOutOfBounds);
    assert_eq!(e.function, "fill");
    assert_eq!(e.location, location_of(src, "cells[i]"));
    assert_eq!(e.message, None);
    // The fourth iteration counted, then failed at its store.
    assert_eq!(module.global::<i64>("count").unwrap(), 4);
    assert_eq!(
        module.global_array::<i64>("cells").unwrap(),
        vec![10, 11, 12]
    );

    let ratio = module.typed::<(i64, i64), i64>("ratio").unwrap();
    let e = runtime_error(ratio.call((1, 0)));
    assert_eq!(e.kind, TrapKind::DivisionByZero);
    assert_eq!(e.function, "ratio");
    assert_eq!(e.location, location_of(src, "/ b"));
    assert_eq!(module.global::<i64>("count").unwrap(), 104);

    assert_eq!(ratio.call((7, 2)).unwrap(), 3);
    fill.call((2,)).unwrap();
    assert_eq!(module.global::<i64>("count").unwrap(), 206);
    let other = load(&engine, "fn main() -> int { return 5; }");
    assert_eq!(other.call("main", &[]).unwrap(), Some(Value::Int(5)));
}

#[test]
fn errors_display_kind_location_and_function() {
    let engine = engine();
    let module = load(
        &engine,
        "fn f() -> int {\n    let z = 0;\n    return 1 % z;\n}\n",
    );
    let e = runtime_error(module.call("f", &[]));
    let text = e.to_string();
    assert!(text.contains("division by zero"), "{text}");
    assert!(text.contains("game.kl:3:14"), "{text}");
    assert!(text.contains('f'), "{text}");
}

/// Runs `call` on its own thread, interrupts `module` from another after a short while, and
/// returns the call's error. A call that ignores the interrupt fails the test instead of hanging
/// it (its thread is left spinning until the test binary exits).
fn interrupt_during(
    module: &Module,
    call: impl FnOnce(Module) -> Result<(), Error> + Send + 'static,
) -> RuntimeError {
    let handle = module.interrupt_handle();
    let (done, result) = std::sync::mpsc::channel();
    let caller = module.clone();
    let started = Instant::now();
    thread::spawn(move || {
        let _ = done.send(call(caller));
    });
    thread::sleep(Duration::from_millis(200));
    handle.interrupt();
    let outcome = result
        .recv_timeout(Duration::from_secs(30))
        .expect("the interrupted call did not return within 30 s");
    assert!(started.elapsed() >= Duration::from_millis(200));
    runtime_error(outcome)
}

#[test]
fn interrupt_stops_an_infinite_loop_in_main() {
    let engine = engine();
    let src = "global spins: int = 0;

fn main() {
    while true {
        spins += 1;
    }
}

fn ok() -> int {
    return spins;
}
";
    let module = load(&engine, src);
    let e = interrupt_during(&module, |m| m.call("main", &[]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "main");
    let spins = module.global::<i64>("spins").unwrap();
    assert!(spins > 0);
    // The interrupt was used up: the next call runs normally.
    assert_eq!(module.call("ok", &[]).unwrap(), Some(Value::Int(spins)));
}

#[test]
fn an_interrupt_between_calls_stops_the_next_call_at_its_start() {
    let src = "global n: int = 0;\n\nfn bump() -> int {\n    n += 1;\n    return n;\n}\n";
    let module = load(&engine(), src);
    module.interrupt_handle().interrupt();
    let e = runtime_error(module.call("bump", &[]));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "bump");
    assert_eq!(
        module.global::<i64>("n").unwrap(),
        0,
        "stopped before its body"
    );
    assert_eq!(module.call("bump", &[]).unwrap(), Some(Value::Int(1)));
}

#[test]
fn interrupt_stops_an_empty_loop() {
    let engine = engine();
    let module = load(&engine, "fn main() {\n    while true {}\n}\n");
    let e = interrupt_during(&module, |m| m.call("main", &[]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "main");
}

#[test]
fn interrupt_stops_a_loop_inside_a_called_function() {
    let engine = engine();
    let src = "fn spin(x: float) -> float {
    let acc = x;
    while acc >= 0.0 {
        acc = acc * 0.5 + 1.0;
    }
    return acc;
}

fn count() -> int {
    let n = 0;
    for i in 0..9223372036854775807 {
        n += 1;
    }
    return n;
}

fn start() -> float {
    print(1);
    return spin(1.0);
}
";
    let module = load(&engine, src);
    let e = interrupt_during(&module, |m| m.call("start", &[]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "spin");
    assert_eq!(module.take_output(), "1\n");
    let e = interrupt_during(&module, |m| {
        m.typed::<(), i64>("count").unwrap().call(()).map(|_| ())
    });
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "count");
}

#[test]
fn interrupt_stops_a_loop_around_loops_that_do_not_poll() {
    // The inner loop has constant bounds and calls only an inlined function, so it runs its
    // 1000 iterations without polling; the loop around it polls.
    let src = "fn step(n: int, i: int) -> int {
    return (n + i) % 1000;
}

fn churn() -> int {
    let n = 0;
    while n >= 0 {
        for i in 0..1000 {
            n = step(n, i);
        }
    }
    return n;
}
";
    let module = load(&engine(), src);
    let e = interrupt_during(&module, |m| m.call("churn", &[]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert_eq!(e.function, "churn");
    assert_eq!(e.location, location_of(src, "while"));
}

/// Exponential-time recursion without a single loop: only polls at function entry stop it.
const SPLIT: &str = "fn split(n: int) -> int {
    if n == 0 {
        return 1;
    }
    return leaf(half(n)) + leaf(half(n));
}

fn half(n: int) -> int {
    return split(n - 1);
}

fn leaf(x: int) -> int {
    return x;
}
";

#[test]
fn interrupt_stops_recursion_without_loops() {
    let engine = engine();
    let module = load(&engine, SPLIT);
    let e = interrupt_during(&module, |m| m.call("split", &[Value::Int(60)]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
    assert!(e.function == "split" || e.function == "half", "{e}");
}

#[test]
fn interrupt_stops_recursion_a_reload_created() {
    // Before the reload nothing recurses, so `split` and `leaf` poll nowhere; the reload makes
    // `half` call `split` again, and `split` is relinked unchanged. The cycle still polls.
    let engine = engine();
    // (`half` calls `leaf`, so it is not inlined into `split`.)
    let bounded = SPLIT.replace("return split(n - 1);", "return leaf(n - 1);");
    let module = load(&engine, &bounded);
    assert_eq!(
        module.call("split", &[Value::Int(3)]).unwrap(),
        Some(Value::Int(4))
    );
    let report = module.reload_str(SPLIT).unwrap();
    assert_eq!(report.compiled(), 1, "only `half` changed: {report}");
    let e = interrupt_during(&module, |m| m.call("split", &[Value::Int(60)]).map(|_| ()));
    assert_eq!(e.kind, TrapKind::Interrupted);
}

const DOWN: &str = "fn down(n: int) -> int {
    if n == 0 {
        return 0;
    }
    return 1 + down(n - 1);
}
";

#[test]
fn call_depth_limit_is_configurable() {
    let module = load(&engine_with_call_depth(50), DOWN);
    let down = module.typed::<(i64,), i64>("down").unwrap();
    // The call from the host is depth 1: down(49) reaches depth 50.
    assert_eq!(down.call((49,)).unwrap(), 49);
    let e = runtime_error(down.call((50,)));
    assert_eq!(e.kind, TrapKind::StackOverflow);
    assert_eq!(e.function, "down");
    assert_eq!(e.location, location_of(DOWN, "down(n - 1)"));
    // Usable afterwards, up to the limit again.
    assert_eq!(down.call((49,)).unwrap(), 49);
}

/// `leaf` is inlined into `down`; its call still counts as a frame of the depth limit.
const DOWN_TO_LEAF: &str = "fn down(n: int) -> int {
    if n == 0 {
        return leaf(0);
    }
    return 1 + down(n - 1);
}

fn leaf(x: int) -> int {
    return x + 1;
}
";

#[test]
fn an_inlined_call_counts_toward_the_call_depth_limit() {
    let module = load(&engine_with_call_depth(50), DOWN_TO_LEAF);
    let down = module.typed::<(i64,), i64>("down").unwrap();
    // down(48) is 49 frames of `down` and one of `leaf`.
    assert_eq!(down.call((48,)).unwrap(), 49);
    let e = runtime_error(down.call((49,)));
    assert_eq!(e.kind, TrapKind::StackOverflow);
    assert_eq!(e.function, "down");
    assert_eq!(e.location, location_of(DOWN_TO_LEAF, "leaf(0)"));
    assert_eq!(down.call((48,)).unwrap(), 49);
}

/// At the depth limit, `leaf`'s frame check fails where its call is: in the first loop after
/// the `print` that comes before it, in the second before anything (the check is hoisted out
/// of that loop, and nothing observable happens before it).
const LOOP_TO_LEAF: &str = "fn down(n: int, printing: bool) -> int {
    if n > 0 {
        return down(n - 1, printing);
    }
    let s = 0;
    if printing {
        for i in 0..3 {
            print(i);
            s += leaf(i);
        }
    }
    for i in 0..3 {
        s += leaf(i) * 2;
    }
    return s;
}

fn leaf(x: int) -> int {
    return x + 1;
}
";

#[test]
fn an_inlined_call_in_a_loop_fails_its_frame_check_in_order() {
    let module = load(&engine_with_call_depth(50), LOOP_TO_LEAF);
    let down = module.typed::<(i64, bool), i64>("down").unwrap();
    assert_eq!(down.call((48, true)).unwrap(), 6 + 12);
    assert_eq!(module.take_output(), "0\n1\n2\n");
    let e = runtime_error(down.call((49, true)));
    assert_eq!(e.kind, TrapKind::StackOverflow);
    assert_eq!(e.location, location_of(LOOP_TO_LEAF, "leaf(i);"));
    assert_eq!(module.take_output(), "0\n", "the print before the call ran");
    let e = runtime_error(down.call((49, false)));
    assert_eq!(e.kind, TrapKind::StackOverflow);
    assert_eq!(e.location, location_of(LOOP_TO_LEAF, "leaf(i) * 2"));
    assert_eq!(module.take_output(), "");
}

#[test]
fn default_call_depth_is_ten_thousand() {
    let module = load(&engine(), DOWN);
    let down = module.typed::<(i64,), i64>("down").unwrap();
    assert_eq!(down.call((9_999,)).unwrap(), 9_999);
    let e = runtime_error(down.call((10_000,)));
    assert_eq!(e.kind, TrapKind::StackOverflow);
    assert_eq!(down.call((9_999,)).unwrap(), 9_999);
}

#[test]
fn output_goes_to_the_module_that_printed_it() {
    let engine = engine();
    let a = load(&engine, "fn main() { print(\"a\"); print(1.0); }");
    let b = load(&engine, "fn main() { print(\"b\"); }");
    a.call("main", &[]).unwrap();
    b.call("main", &[]).unwrap();
    a.call("main", &[]).unwrap();
    assert_eq!(a.take_output(), "a\n1.0\na\n1.0\n");
    assert_eq!(b.take_output(), "b\n");
}

#[test]
fn output_before_a_runtime_error_is_kept() {
    let engine = engine();
    let module = load(
        &engine,
        "fn main() {\n    print(\"before\");\n    let a: [int; 2];\n    a[2] = 1;\n}\n",
    );
    let e = runtime_error(module.call("main", &[]));
    assert_eq!(e.kind, TrapKind::IndexOutOfBounds);
    assert_eq!(e.location, "game.kl:4:5");
    assert_eq!(module.take_output(), "before\n");
}

#[test]
fn load_file_names_locations_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.kl");
    std::fs::write(
        &path,
        "fn f() -> int {\n    let a: [int; 1];\n    return a[1];\n}\n",
    )
    .unwrap();
    let engine = engine();
    let module = engine.load_file(&path).unwrap();
    let e = runtime_error(module.call("f", &[]));
    assert_eq!(e.kind, TrapKind::IndexOutOfBounds);
    assert_eq!(e.location, format!("{}:3:12", path.display()));

    let missing = dir.path().join("missing.kl");
    match engine.load_file(&missing) {
        Err(e @ Error::Io { .. }) => {
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot read {}: ", missing.display()))
            )
        }
        other => panic!("expected an I/O error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn registering_a_name_twice_is_refused() {
    let mut engine = engine();
    engine.register("tick", |x: i64| x).unwrap();
    assert!(matches!(
        engine.register("tick", |x: f64| x),
        Err(Error::Host { .. })
    ));
    // The first registration still stands.
    let module = load(&engine, "fn main() -> int { return tick(3); }");
    assert_eq!(module.call("main", &[]).unwrap(), Some(Value::Int(3)));
}

#[test]
fn calls_from_several_threads_do_not_interfere() {
    let engine = engine();
    let module = load(
        &engine,
        "global total: int = 0;
         fn add(x: int) -> int {
             let local: [int; 4];
             local[x % 4] = x;
             total += local[x % 4];
             return local[x % 4] * 2;
         }",
    );
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let module = module.clone();
            thread::spawn(move || {
                let add = module.typed::<(i64,), i64>("add").unwrap();
                for i in 0..1000 {
                    let x = t * 1000 + i;
                    assert_eq!(add.call((x,)).unwrap(), x * 2);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        module.global::<i64>("total").unwrap(),
        (0..4000).sum::<i64>()
    );
}

#[test]
fn array_memory_is_released_after_an_error() {
    let engine = engine();
    let src = "fn deep(n: int) -> int {
    let a: [int; 16777216];
    a[n] = n;
    return deep(n + 1) + a[n];
}

fn once() -> int {
    let a: [int; 16777216];
    let b: [int; 16777216];
    a[16777215] = 2;
    b[0] = 3;
    return a[16777215] * b[0];
}
";
    let module = load(&engine, src);
    let deep = module.typed::<(i64,), i64>("deep").unwrap();
    let once = module.typed::<(), i64>("once").unwrap();
    for _ in 0..3 {
        let e = runtime_error(deep.call((0,)));
        assert_eq!(e.kind, TrapKind::StackOverflow);
        assert_eq!(e.function, "deep");
        // The failed call's arrays are gone: two more of the largest size fit again.
        assert_eq!(once.call(()).unwrap(), 6);
    }
}

#[test]
fn an_engine_for_another_target_builds_but_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = kiln_cache::FileStore::open(dir.path().join("cache")).unwrap();
    let engine = Engine::new(Config {
        target: kiln::Target::Cross {
            triple: "aarch64-unknown-linux-gnu".into(),
            features: Vec::new(),
        },
        cache: Some(Arc::new(store)),
        ..Config::default()
    })
    .unwrap();
    let err = engine.load_str("device.kl", "fn f() {}").err().unwrap();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("aarch64-unknown-linux-gnu")),
        "{err}"
    );
    let script = dir.path().join("device.kl");
    std::fs::write(&script, "fn f() -> int { return 1; }").unwrap();
    let stats = engine
        .build_file(&script, &kiln::CheckOptions::default())
        .unwrap();
    assert_eq!((stats.functions, stats.cache.compiled), (1, 1));
    assert!(
        engine
            .build_file(&script, &kiln::CheckOptions::default())
            .unwrap()
            .cache
            .module_hit
    );
    // Building needs somewhere to store the result.
    let no_cache = Engine::new(Config::default()).unwrap();
    assert!(matches!(
        no_cache.build_file(&script, &kiln::CheckOptions::default()),
        Err(Error::Config(_))
    ));
}

#[test]
fn limits_for_untrusted_scripts_are_clear_errors() {
    let limited = |config: Config| Engine::new(config).unwrap();
    let three = "fn a() {} fn b() {} fn c() {}";
    let limit_message = |result: Result<Module, Error>| match result {
        Err(Error::Limit(message)) => message,
        other => panic!("expected a limit error, got {:?}", other.map(|_| ())),
    };

    let small = limited(Config {
        max_source_bytes: 16,
        ..Config::default()
    });
    let message = limit_message(small.load_str("big.kl", three));
    assert_eq!(
        message,
        "the script is 29 bytes; this engine accepts at most 16 (Config::max_source_bytes)"
    );
    let module = small.load_str("ok.kl", "fn a() {}").unwrap();
    assert!(matches!(module.reload_str(three), Err(Error::Limit(_))));
    assert_eq!(module.generation(), 0, "the refused reload changed nothing");

    let few = limited(Config {
        max_functions: 2,
        ..Config::default()
    });
    let message = limit_message(few.load_str("many.kl", three));
    assert!(message.contains("defines 3 functions") && message.contains("max_functions"));

    let hurried = limited(Config {
        compile_time_limit: Some(Duration::ZERO),
        ..Config::default()
    });
    let message = limit_message(hurried.load_str("slow.kl", three));
    assert!(message.contains("Config::compile_time_limit"), "{message}");
    let patient = limited(Config {
        compile_time_limit: Some(Duration::from_secs(60)),
        ..Config::default()
    });
    patient.load_str("fine.kl", three).unwrap();
}
