//! Hot reload through the embedding API (LANGUAGE.md section 9): generations, state kept across
//! reloads, typed handles following them, failed reloads, and reloads racing with calls.

use kiln::{Config, Engine, Error, Module};
use kiln_cache::MemoryStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

fn engine(config: Config) -> Engine {
    Engine::new(Config {
        capture_output: true,
        ..config
    })
    .expect("the configuration works")
}

fn cached() -> Config {
    Config {
        cache: Some(Arc::new(MemoryStore::new())),
        ..Config::default()
    }
}

fn load(engine: &Engine, source: &str) -> Module {
    engine
        .load_str("game.kl", source)
        .unwrap_or_else(|e| panic!("does not compile:\n{e}"))
}

const GAME: &str = "
global score: int = 0;
global speed: float = 1.5;
global trail: [int; 4];

fn bonus() -> int {
    return 1;
}

fn tick() -> int {
    score += bonus();
    trail[score % 4] = score;
    return score;
}

fn pace() -> float {
    return speed * 2.0;
}
";

#[test]
fn a_reload_replaces_code_and_keeps_globals() {
    for config in [Config::default(), cached()] {
        let engine = engine(config);
        let module = load(&engine, GAME);
        let tick = module.typed::<(), i64>("tick").unwrap();
        assert_eq!(tick.call(()).unwrap(), 1);
        assert_eq!(tick.call(()).unwrap(), 2);

        let report = module
            .reload_str(&GAME.replace("return 1;", "return 10;"))
            .unwrap();
        assert_eq!(report.generation, 1);
        assert_eq!(module.generation(), 1);
        // `bonus` is inlined into `tick`, which compiles again too; `pace` is relinked.
        assert_eq!((report.compiled(), report.reused()), (2, 1), "{report}");
        assert!(
            report.incremental,
            "only `bonus` and `tick` were parsed again"
        );
        assert_eq!(report.globals.kept, ["score", "speed", "trail"]);
        assert!(report.globals.added.is_empty() && report.globals.reinitialized.is_empty());

        // The kept handle runs the new `bonus`, on the old score and array.
        assert_eq!(tick.call(()).unwrap(), 12);
        assert_eq!(module.global_array::<i64>("trail").unwrap(), [12, 1, 2, 0]);
        assert_eq!(
            module.call("pace", &[]).unwrap(),
            Some(kiln::Value::Float(3.0))
        );
    }
}

#[test]
fn new_changed_and_removed_globals() {
    let engine = engine(Config::default());
    let module = load(&engine, GAME);
    module.set_global("speed", 4.0).unwrap();
    module.typed::<(), i64>("tick").unwrap().call(()).unwrap();
    let edited = GAME
        .replace("global speed: float = 1.5;", "global speed: int = 7;")
        .replace("global trail: [int; 4];", "global lives: int = 3;")
        .replace("trail[score % 4] = score;", "lives -= 1;")
        .replace("return speed * 2.0;", "return speed as float * 2.0;");
    let report = module.reload_str(&edited).unwrap();
    let globals = &report.globals;
    assert_eq!(globals.kept, ["score"]);
    assert_eq!(globals.added, ["lives"]);
    assert_eq!(globals.reinitialized, ["speed"]);
    assert_eq!(globals.removed, ["trail"]);
    assert_eq!(
        globals.warnings,
        ["global `speed` changed type from float to int; it was re-initialized"]
    );
    assert_eq!(module.global::<i64>("score").unwrap(), 1);
    assert_eq!(module.global::<i64>("speed").unwrap(), 7);
    assert_eq!(module.global::<i64>("lives").unwrap(), 3);
    assert_eq!(module.call("tick", &[]).unwrap(), Some(kiln::Value::Int(2)));
    assert_eq!(module.global::<i64>("lives").unwrap(), 2);
    assert!(matches!(
        module.global_array::<i64>("trail"),
        Err(Error::NotFound { .. })
    ));
    // A global's type changed: every body was checked again.
    assert!(!report.incremental);
}

/// `k` starts small enough to be inlined into its callers `a` and `b`; `other` never calls it.
const INLINED: &str = "
global t: [int; 3];

fn k() -> int {
    return 1;
}

fn a() -> int {
    return k() + 0;
}

fn b() -> int {
    return k() * 2;
}

fn other() -> int {
    return 5;
}
";

#[test]
fn editing_an_inlined_function_recompiles_its_callers() {
    let engine = engine(Config::default());
    let module = load(&engine, INLINED);
    let (a, b) = (
        module.typed::<(), i64>("a").unwrap(),
        module.typed::<(), i64>("b").unwrap(),
    );
    assert_eq!((a.call(()).unwrap(), b.call(()).unwrap()), (1, 2));

    // `k`'s new body, the functions compiled and reused, and what `a` and `b` return then.
    let steps = [
        // Still inlined: `k`, and both callers, which held its old body, compile.
        ("return 2;", (3, 1), (2, 4)),
        // An array index can fail, so `k` is inlined no longer: its callers compile again and
        // now call it.
        ("return t[2] + 3;", (3, 1), (3, 6)),
        // `k` was inlined nowhere: editing it again compiles it alone.
        ("return t[1] + 4;", (1, 3), (4, 8)),
    ];
    for (body, counts, values) in steps {
        let report = module
            .reload_str(&INLINED.replace("return 1;", body))
            .unwrap();
        assert_eq!(
            (report.compiled(), report.reused()),
            counts,
            "{body}: {report}"
        );
        assert_eq!((a.call(()).unwrap(), b.call(()).unwrap()), values, "{body}");
    }
}

/// `count` starts with a guard, which `twice` (and `count` itself) test at their calls.
const GUARDED: &str = "
fn count(n: int) -> int {
    if n < 1 {
        return 0;
    }
    return 1 + count(n - 1);
}

fn twice(n: int) -> int {
    return count(n) * 2;
}

fn other() -> int {
    return 5;
}
";

#[test]
fn editing_a_guard_recompiles_the_callers_that_test_it() {
    let engine = engine(Config::default());
    let module = load(&engine, GUARDED);
    let twice = module.typed::<(i64,), i64>("twice").unwrap();
    assert_eq!(
        (twice.call((0,)).unwrap(), twice.call((3,)).unwrap()),
        (0, 6)
    );
    let report = module
        .reload_str(&GUARDED.replace("return 0;", "return 100;"))
        .unwrap();
    assert_eq!((report.compiled(), report.reused()), (2, 1), "{report}");
    // twice(0) is answered by the guard in `twice` itself: it must be the new one.
    assert_eq!(
        (twice.call((0,)).unwrap(), twice.call((3,)).unwrap()),
        (200, 206)
    );
}

#[test]
fn a_failed_reload_keeps_the_running_generation() {
    let engine = engine(Config::default());
    let module = load(&engine, GAME);
    let tick = module.typed::<(), i64>("tick").unwrap();
    tick.call(()).unwrap();
    let broken = GAME.replace("return 1;", "return true;");
    let Err(Error::Compile(e)) = module.reload_str(&broken) else {
        panic!("a type error must fail the reload");
    };
    let rendered = e.to_string();
    assert!(rendered.contains("game.kl:7:12"), "{rendered}");
    assert_eq!(module.generation(), 0);
    assert_eq!(tick.call(()).unwrap(), 2, "the old code runs on");
    // The next good edit is compared with the running generation, not the broken text.
    let report = module
        .reload_str(&GAME.replace("return 1;", "return 5;"))
        .unwrap();
    // `bonus` and `tick`, which has it inlined.
    assert_eq!((report.generation, report.compiled()), (1, 2));
    assert_eq!(tick.call(()).unwrap(), 7);
}

#[test]
fn typed_handles_follow_reloads_or_say_why_not() {
    let engine = engine(Config::default());
    let module = load(&engine, "fn f(x: int) -> int { return x + 1; }");
    let f = module.typed::<(i64,), i64>("f").unwrap();
    assert_eq!(f.call((1,)).unwrap(), 2);

    module.reload_str("fn g() {}").unwrap();
    let err = f.call((1,)).unwrap_err();
    assert!(matches!(err, Error::Stale { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the handle to function `f` is stale: a reload removed the function"
    );

    module
        .reload_str("fn f(x: float) -> int { return 0; }")
        .unwrap();
    assert_eq!(
        f.call((1,)).unwrap_err().to_string(),
        "the handle to function `f` is stale: a reload changed its signature to \
         `fn(float) -> int`; the handle calls it as `fn(int) -> int`"
    );

    module
        .reload_str("fn f(x: int) -> int { return x * 10; }")
        .unwrap();
    assert_eq!(
        f.call((3,)).unwrap(),
        30,
        "a matching function is found again"
    );
}

#[test]
fn reload_reads_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("game.kl");
    std::fs::write(&path, GAME).unwrap();
    let engine = engine(cached());
    let module = engine.load_file(&path).unwrap();
    std::fs::write(&path, GAME.replace("return 1;", "return 3;")).unwrap();
    let report = module.reload().unwrap();
    assert_eq!(
        report.compiled(),
        2,
        "`bonus` and `tick`, which has it inlined"
    );
    assert_eq!(module.call("tick", &[]).unwrap(), Some(kiln::Value::Int(3)));

    let from_string = load(&engine, GAME);
    let err = from_string.reload().unwrap_err();
    assert!(err.to_string().contains("reload_str"), "{err}");
}

#[test]
fn a_module_hit_reloads_incrementally() {
    let engine = engine(cached());
    load(&engine, GAME);
    let module = load(&engine, GAME);
    assert!(module.stats().cache.module_hit);
    let report = module
        .reload_str(&GAME.replace("return 1;", "return 2;"))
        .unwrap();
    assert!(report.incremental, "{report}");
    assert_eq!(
        (report.compiled(), report.reused()),
        (2, 1),
        "`tick` has `bonus` inlined"
    );
    assert_eq!(module.call("tick", &[]).unwrap(), Some(kiln::Value::Int(2)));
}

#[test]
fn an_old_generation_lives_until_its_call_returns() {
    let mut engine = engine(Config::default());
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (e, r) = (entered.clone(), release.clone());
    engine
        .register("wait", move || {
            e.wait();
            r.wait();
        })
        .unwrap();
    let module = load(
        &engine,
        "fn run() -> int { wait(); return answer(); } fn answer() -> int { return 1; }",
    );
    let caller = {
        let module = module.clone();
        thread::spawn(move || module.call("run", &[]))
    };
    entered.wait();
    // The call is inside generation 0 now; a reload does not wait for it.
    module
        .reload_str("fn run() -> int { return answer(); } fn answer() -> int { return 2; }")
        .unwrap();
    assert_eq!(
        module.live_generations(),
        2,
        "the running call holds generation 0"
    );
    release.wait();
    let result = caller.join().unwrap().unwrap();
    assert_eq!(
        result,
        Some(kiln::Value::Int(1)),
        "the call finished in its own generation"
    );
    assert_eq!(
        module.live_generations(),
        1,
        "generation 0 was freed when its call returned"
    );
    assert_eq!(module.call("run", &[]).unwrap(), Some(kiln::Value::Int(2)));
}

/// Version `n` of a module whose `both` calls two functions that both return `n`.
fn versioned(n: i64) -> String {
    format!(
        "global calls: int = 0;
         fn first() -> int {{ return {n}; }}
         fn second() -> int {{ return {n}; }}
         fn both() -> int {{ calls += 1; return first() * 1000 + second(); }}"
    )
}

#[test]
fn reloads_racing_with_calls_never_mix_generations() {
    let engine = engine(cached());
    let module = load(&engine, &versioned(0));
    let both = module.typed::<(), i64>("both").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let caller = {
        let done = done.clone();
        thread::spawn(move || {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                seen.push(both.call(()).unwrap());
            }
            seen
        })
    };
    for n in 1..=100 {
        module.reload_str(&versioned(n)).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let seen = caller.join().unwrap();
    assert!(!seen.is_empty());
    for v in &seen {
        assert_eq!(v / 1000, v % 1000, "a call mixed generations: {v}");
    }
    let versions: Vec<i64> = seen.iter().map(|v| v % 1000).collect();
    assert!(versions.is_sorted(), "calls never go back to older code");
    assert_eq!(module.global::<i64>("calls").unwrap(), seen.len() as i64);
}

#[test]
fn a_thousand_reloads_do_not_pile_up_generations() {
    let engine = engine(cached());
    let module = load(&engine, &versioned(0));
    for n in 1..=1000 {
        let report = module.reload_str(&versioned(n % 7)).unwrap();
        assert!(module.live_generations() <= 1, "after reload {n}: {report}");
    }
    assert_eq!(module.generation(), 1000);
    assert_eq!(module.live_generations(), 1);
    assert_eq!(
        module.call("both", &[]).unwrap(),
        Some(kiln::Value::Int(6006))
    );
}
