/* Particles: P particles in a W x H box, state in global double arrays, STEPS steps of DT each
 * under gravity, a weak pull toward the centre, drag and a speed limit, bouncing off the walls
 * with some energy lost. The initial state comes from a Park-Miller generator (its products
 * stay below 2^53, so Lua's doubles compute it exactly). Prints the number of bounces and
 * checksums of the final positions and speeds, times 1e6, truncated. Same algorithm and output
 * as particles.kl and particles.lua. */
#include <math.h>
#include <stdio.h>

#define P 1000
#define STEPS 300000
#define DT 0.001
#define GRAVITY (-9.81)
#define PULL 0.5
#define DRAG 0.999995
#define BOUNCE 0.9
#define MAX_SPEED 40.0
#define W 100.0
#define H 100.0

static double x[P], y[P], vx[P], vy[P];
static long seed = 42;
static long bounces = 0;

/* A uniform double in [0, 1). */
static double random01(void) {
    seed = seed * 16807 % 2147483647;
    return (double)seed / 2147483647.0;
}

static void init(void) {
    for (long i = 0; i < P; i++) {
        x[i] = random01() * W;
        y[i] = random01() * H;
        vx[i] = random01() * 20.0 - 10.0;
        vy[i] = random01() * 20.0 - 10.0;
    }
}

static void step(void) {
    for (long i = 0; i < P; i++) {
        double px = x[i];
        double py = y[i];
        double nvx = (vx[i] + (W * 0.5 - px) * PULL * DT) * DRAG;
        double nvy = (vy[i] + (GRAVITY + (H * 0.5 - py) * PULL) * DT) * DRAG;
        double speed2 = nvx * nvx + nvy * nvy;
        if (speed2 > MAX_SPEED * MAX_SPEED) {
            double s = MAX_SPEED / sqrt(speed2);
            nvx *= s;
            nvy *= s;
        }
        double nx = px + nvx * DT;
        double ny = py + nvy * DT;
        if (nx < 0.0) {
            nx = -nx;
            nvx = -nvx * BOUNCE;
            bounces += 1;
        } else if (nx > W) {
            nx = 2.0 * W - nx;
            nvx = -nvx * BOUNCE;
            bounces += 1;
        }
        if (ny < 0.0) {
            ny = -ny;
            nvy = -nvy * BOUNCE;
            bounces += 1;
        } else if (ny > H) {
            ny = 2.0 * H - ny;
            nvy = -nvy * BOUNCE;
            bounces += 1;
        }
        x[i] = nx;
        y[i] = ny;
        vx[i] = nvx;
        vy[i] = nvy;
    }
}

int main(void) {
    init();
    for (long s = 0; s < STEPS; s++) {
        step();
    }
    double pos = 0.0;
    double speed = 0.0;
    for (long i = 0; i < P; i++) {
        pos += x[i] + y[i];
        speed += sqrt(vx[i] * vx[i] + vy[i] * vy[i]);
    }
    printf("%ld\n", bounces);
    printf("%lld\n", (long long)(pos * 1e6));
    printf("%lld\n", (long long)(speed * 1e6));
    return 0;
}
