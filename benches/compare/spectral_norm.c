/* spectral-norm (Computer Language Benchmarks Game): the spectral norm of the infinite matrix
 * A(i, j) = 1 / ((i + j) * (i + j + 1) / 2 + i + 1), truncated to N x N, by 10 steps of the
 * power method. u, v and the temporary vector are slices of one global array, passed by offset.
 * Prints the norm times 1e9, truncated. Same algorithm and output as spectral_norm.kl and .lua. */
#include <math.h>
#include <stdio.h>

#define N 4000
#define U 0
#define V N
#define TMP (2 * N)
#define VECS (3 * N)

static double vecs[VECS];

static double a(long i, long j) {
    return 1.0 / (double)((i + j) * (i + j + 1) / 2 + i + 1);
}

/* vecs[dst..dst + N] = A * vecs[src..src + N] */
static void mul_av(long src, long dst) {
    for (long i = 0; i < N; i++) {
        double sum = 0.0;
        for (long j = 0; j < N; j++) {
            sum += a(i, j) * vecs[src + j];
        }
        vecs[dst + i] = sum;
    }
}

/* vecs[dst..dst + N] = transpose(A) * vecs[src..src + N] */
static void mul_atv(long src, long dst) {
    for (long i = 0; i < N; i++) {
        double sum = 0.0;
        for (long j = 0; j < N; j++) {
            sum += a(j, i) * vecs[src + j];
        }
        vecs[dst + i] = sum;
    }
}

static void mul_atav(long src, long dst) {
    mul_av(src, TMP);
    mul_atv(TMP, dst);
}

int main(void) {
    for (long i = 0; i < N; i++) {
        vecs[U + i] = 1.0;
    }
    for (int i = 0; i < 10; i++) {
        mul_atav(U, V);
        mul_atav(V, U);
    }
    double vbv = 0.0, vv = 0.0;
    for (long i = 0; i < N; i++) {
        vbv += vecs[U + i] * vecs[V + i];
        vv += vecs[V + i] * vecs[V + i];
    }
    printf("%lld\n", (long long)(sqrt(vbv / vv) * 1e9));
    return 0;
}
