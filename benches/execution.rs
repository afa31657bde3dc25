//! Execution speed: classic programs in Kiln (`benches/programs/*.kl`) against the same
//! algorithm in Rust.
//!
//! `cargo bench --bench execution`. Each Kiln program is compiled once; the measured loop calls
//! its entry function through a typed handle. Before measuring, each pair is checked to compute
//! the same result.

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::{Config, Engine, Module};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn load(name: &str) -> Module {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/programs")
        .join(name);
    let engine = Engine::new(Config {
        capture_output: true,
        ..Config::default()
    })
    .expect("engine");
    engine
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The Rust versions, written as the `.kl` files are (same operations in the same order, so the
// float results are bit-identical).

#[inline(never)]
fn fib(n: i64) -> i64 {
    if n < 2 {
        return n;
    }
    fib(n - 1) + fib(n - 2)
}

#[inline(never)]
fn sieve(composite: &mut [bool], n: usize) -> i64 {
    composite[..n].fill(false);
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

const BODIES: usize = 5;
const SOLAR_MASS: f64 = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
const DAYS_PER_YEAR: f64 = 365.24;

/// The state Kiln keeps in seven global arrays.
#[derive(Default)]
struct System {
    px: [f64; BODIES],
    py: [f64; BODIES],
    pz: [f64; BODIES],
    vx: [f64; BODIES],
    vy: [f64; BODIES],
    vz: [f64; BODIES],
    mass: [f64; BODIES],
}

impl System {
    fn new() -> System {
        // Position, velocity (per day) and mass (in solar masses) of each body.
        #[expect(
            clippy::excessive_precision,
            reason = "the published constants, digit for digit as nbody.kl writes them"
        )]
        const INITIAL: [[f64; 7]; BODIES] = [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            [
                4.84143144246472090e+00,
                -1.16032004402742839e+00,
                -1.03622044471123109e-01,
                1.66007664274403694e-03,
                7.69901118419740425e-03,
                -6.90460016972063023e-05,
                9.54791938424326609e-04,
            ],
            [
                8.34336671824457987e+00,
                4.12479856412430479e+00,
                -4.03523417114321381e-01,
                -2.76742510726862411e-03,
                4.99852801234917238e-03,
                2.30417297573763929e-05,
                2.85885980666130812e-04,
            ],
            [
                1.28943695621391310e+01,
                -1.51111514016986312e+01,
                -2.23307578892655734e-01,
                2.96460137564761618e-03,
                2.37847173959480950e-03,
                -2.96589568540237556e-05,
                4.36624404335156298e-05,
            ],
            [
                1.53796971148509165e+01,
                -2.59193146099879641e+01,
                1.79258772950371181e-01,
                2.68067772490389322e-03,
                1.62824170038242295e-03,
                -9.51592254519715870e-05,
                5.15138902046611451e-05,
            ],
        ];
        let mut s = System::default();
        for (i, b) in INITIAL.iter().enumerate() {
            s.px[i] = b[0];
            s.py[i] = b[1];
            s.pz[i] = b[2];
            s.vx[i] = b[3] * DAYS_PER_YEAR;
            s.vy[i] = b[4] * DAYS_PER_YEAR;
            s.vz[i] = b[5] * DAYS_PER_YEAR;
            s.mass[i] = b[6] * SOLAR_MASS;
        }
        let (mut mx, mut my, mut mz) = (0.0, 0.0, 0.0);
        for i in 0..BODIES {
            mx += s.vx[i] * s.mass[i];
            my += s.vy[i] * s.mass[i];
            mz += s.vz[i] * s.mass[i];
        }
        s.vx[0] = -mx / SOLAR_MASS;
        s.vy[0] = -my / SOLAR_MASS;
        s.vz[0] = -mz / SOLAR_MASS;
        s
    }

    fn advance(&mut self, dt: f64) {
        for i in 0..BODIES {
            for j in i + 1..BODIES {
                let dx = self.px[i] - self.px[j];
                let dy = self.py[i] - self.py[j];
                let dz = self.pz[i] - self.pz[j];
                let d2 = dx * dx + dy * dy + dz * dz;
                let mag = dt / (d2 * d2.sqrt());
                let mi = self.mass[i] * mag;
                let mj = self.mass[j] * mag;
                self.vx[i] -= dx * mj;
                self.vy[i] -= dy * mj;
                self.vz[i] -= dz * mj;
                self.vx[j] += dx * mi;
                self.vy[j] += dy * mi;
                self.vz[j] += dz * mi;
            }
        }
        for i in 0..BODIES {
            self.px[i] += dt * self.vx[i];
            self.py[i] += dt * self.vy[i];
            self.pz[i] += dt * self.vz[i];
        }
    }

    fn energy(&self) -> f64 {
        let mut e = 0.0;
        for i in 0..BODIES {
            e += 0.5
                * self.mass[i]
                * (self.vx[i] * self.vx[i] + self.vy[i] * self.vy[i] + self.vz[i] * self.vz[i]);
            for j in i + 1..BODIES {
                let dx = self.px[i] - self.px[j];
                let dy = self.py[i] - self.py[j];
                let dz = self.pz[i] - self.pz[j];
                e -= self.mass[i] * self.mass[j] / (dx * dx + dy * dy + dz * dz).sqrt();
            }
        }
        e
    }
}

#[inline(never)]
fn nbody(steps: i64) -> f64 {
    let mut system = System::new();
    for _ in 0..steps {
        system.advance(0.01);
    }
    system.energy()
}

const MAX_ITER: i64 = 50;

#[inline(never)]
fn mandelbrot(size: i64) -> i64 {
    let mut count = 0;
    let scale = 2.0 / size as f64;
    for y in 0..size {
        let ci = y as f64 * scale - 1.0;
        for x in 0..size {
            let cr = x as f64 * scale - 1.5;
            let (mut zr, mut zi) = (0.0f64, 0.0f64);
            let mut inside = true;
            for _ in 0..MAX_ITER {
                let zr2 = zr * zr;
                let zi2 = zi * zi;
                if zr2 + zi2 > 4.0 {
                    inside = false;
                    break;
                }
                zi = 2.0 * zr * zi + ci;
                zr = zr2 - zi2 + cr;
            }
            if inside {
                count += 1;
            }
        }
    }
    count
}

// ---------------------------------------------------------------------------------------------

const FIB_N: i64 = 27;
const SIEVE_N: i64 = 1_000_000;
const NBODY_STEPS: i64 = 100_000;
const MANDELBROT_SIZE: i64 = 400;

/// Twenty samples of about four seconds each: enough for programs that run for milliseconds.
fn group_settings<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

fn bench_fib(c: &mut Criterion) {
    let module = load("fib.kl");
    let kiln = module.typed::<(i64,), i64>("fib").expect("fib");
    let expected = fib(FIB_N);
    assert_eq!(kiln.call((FIB_N,)).expect("kiln fib"), expected);
    let mut group = group_settings(c, "fib27");
    group.bench_function("kiln", |b| {
        b.iter(|| kiln.call((black_box(FIB_N),)).unwrap())
    });
    group.bench_function("rust", |b| b.iter(|| fib(black_box(FIB_N))));
    group.finish();
}

fn bench_sieve(c: &mut Criterion) {
    let module = load("sieve.kl");
    let kiln = module.typed::<(i64,), i64>("sieve").expect("sieve");
    let mut composite = vec![false; SIEVE_N as usize];
    let expected = sieve(&mut composite, SIEVE_N as usize);
    assert_eq!(expected, 78_498);
    assert_eq!(kiln.call((SIEVE_N,)).expect("kiln sieve"), expected);
    let mut group = group_settings(c, "sieve_1m");
    group.bench_function("kiln", |b| {
        b.iter(|| kiln.call((black_box(SIEVE_N),)).unwrap())
    });
    group.bench_function("rust", |b| {
        b.iter(|| sieve(&mut composite, black_box(SIEVE_N) as usize))
    });
    group.finish();
}

fn bench_nbody(c: &mut Criterion) {
    let module = load("nbody.kl");
    let kiln = module.typed::<(i64,), f64>("nbody").expect("nbody");
    let expected = nbody(NBODY_STEPS);
    let actual = kiln.call((NBODY_STEPS,)).expect("kiln nbody");
    assert_eq!(
        actual.to_bits(),
        expected.to_bits(),
        "{actual} != {expected}"
    );
    // The published result for 1000 steps, to nine decimals.
    assert_eq!(format!("{:.9}", nbody(1000)), "-0.169087605");
    let mut group = group_settings(c, "nbody_100k");
    group.bench_function("kiln", |b| {
        b.iter(|| kiln.call((black_box(NBODY_STEPS),)).unwrap())
    });
    group.bench_function("rust", |b| b.iter(|| nbody(black_box(NBODY_STEPS))));
    group.finish();
}

fn bench_mandelbrot(c: &mut Criterion) {
    let module = load("mandelbrot.kl");
    let kiln = module
        .typed::<(i64,), i64>("mandelbrot")
        .expect("mandelbrot");
    let expected = mandelbrot(MANDELBROT_SIZE);
    assert_eq!(
        kiln.call((MANDELBROT_SIZE,)).expect("kiln mandelbrot"),
        expected
    );
    let mut group = group_settings(c, "mandelbrot_400");
    group.bench_function("kiln", |b| {
        b.iter(|| kiln.call((black_box(MANDELBROT_SIZE),)).unwrap())
    });
    group.bench_function("rust", |b| {
        b.iter(|| mandelbrot(black_box(MANDELBROT_SIZE)))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_fib,
    bench_sieve,
    bench_nbody,
    bench_mandelbrot
);
criterion_main!(benches);
