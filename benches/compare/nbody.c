/* n-body (Computer Language Benchmarks Game): the Sun and the four gas giants, state in global
 * double arrays, STEPS steps of 0.01. Prints the energy before and after, times 1e12, truncated.
 * Same algorithm and output as nbody.kl and nbody.lua. */
#include <math.h>
#include <stdio.h>

#define STEPS 20000000
#define BODIES 5
#define PI 3.141592653589793
#define SOLAR_MASS (4.0 * PI * PI)
#define DAYS_PER_YEAR 365.24

static double px[BODIES], py[BODIES], pz[BODIES];
static double vx[BODIES], vy[BODIES], vz[BODIES];
static double mass[BODIES];

static void set_body(int i, double x, double y, double z, double dx, double dy, double dz,
                     double m) {
    px[i] = x;
    py[i] = y;
    pz[i] = z;
    vx[i] = dx * DAYS_PER_YEAR;
    vy[i] = dy * DAYS_PER_YEAR;
    vz[i] = dz * DAYS_PER_YEAR;
    mass[i] = m * SOLAR_MASS;
}

static void init(void) {
    set_body(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0);
    set_body(1, 4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01,
             1.66007664274403694e-03, 7.69901118419740425e-03, -6.90460016972063023e-05,
             9.54791938424326609e-04);
    set_body(2, 8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01,
             -2.76742510726862411e-03, 4.99852801234917238e-03, 2.30417297573763929e-05,
             2.85885980666130812e-04);
    set_body(3, 1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01,
             2.96460137564761618e-03, 2.37847173959480950e-03, -2.96589568540237556e-05,
             4.36624404335156298e-05);
    set_body(4, 1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01,
             2.68067772490389322e-03, 1.62824170038242295e-03, -9.51592254519715870e-05,
             5.15138902046611451e-05);
    double mx = 0.0, my = 0.0, mz = 0.0;
    for (int i = 0; i < BODIES; i++) {
        mx += vx[i] * mass[i];
        my += vy[i] * mass[i];
        mz += vz[i] * mass[i];
    }
    vx[0] = -mx / SOLAR_MASS;
    vy[0] = -my / SOLAR_MASS;
    vz[0] = -mz / SOLAR_MASS;
}

static void advance(double dt) {
    for (int i = 0; i < BODIES; i++) {
        for (int j = i + 1; j < BODIES; j++) {
            double dx = px[i] - px[j];
            double dy = py[i] - py[j];
            double dz = pz[i] - pz[j];
            double d2 = dx * dx + dy * dy + dz * dz;
            double mag = dt / (d2 * sqrt(d2));
            double mi = mass[i] * mag;
            double mj = mass[j] * mag;
            vx[i] -= dx * mj;
            vy[i] -= dy * mj;
            vz[i] -= dz * mj;
            vx[j] += dx * mi;
            vy[j] += dy * mi;
            vz[j] += dz * mi;
        }
    }
    for (int i = 0; i < BODIES; i++) {
        px[i] += dt * vx[i];
        py[i] += dt * vy[i];
        pz[i] += dt * vz[i];
    }
}

static double energy(void) {
    double e = 0.0;
    for (int i = 0; i < BODIES; i++) {
        e += 0.5 * mass[i] * (vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i]);
        for (int j = i + 1; j < BODIES; j++) {
            double dx = px[i] - px[j];
            double dy = py[i] - py[j];
            double dz = pz[i] - pz[j];
            e -= mass[i] * mass[j] / sqrt(dx * dx + dy * dy + dz * dz);
        }
    }
    return e;
}

int main(void) {
    init();
    printf("%lld\n", (long long)(energy() * 1e12));
    for (long s = 0; s < STEPS; s++) {
        advance(0.01);
    }
    printf("%lld\n", (long long)(energy() * 1e12));
    return 0;
}
