/* fannkuch-redux (Computer Language Benchmarks Game): for every permutation of 0..N, in the
 * benchmark's order, count the flips of prefixes until 0 comes first. Prints the checksum and
 * the maximum number of flips. Same algorithm and output as fannkuch_redux.kl and .lua. */
#include <stdio.h>

#define N 11

static long perm[16], perm1[16], count[16];
static long checksum = 0;

/* The maximum flip count over all permutations of 0..n; leaves the checksum in `checksum`. */
static long fannkuch(long n) {
    long max_flips = 0;
    long perm_count = 0;
    checksum = 0;
    for (long i = 0; i < n; i++) {
        perm1[i] = i;
    }
    long r = n;
    for (;;) {
        while (r != 1) {
            count[r - 1] = r;
            r -= 1;
        }
        for (long i = 0; i < n; i++) {
            perm[i] = perm1[i];
        }
        long flips = 0;
        long k = perm[0];
        while (k != 0) {
            long k2 = (k + 1) >> 1;
            for (long i = 0; i < k2; i++) {
                long t = perm[i];
                perm[i] = perm[k - i];
                perm[k - i] = t;
            }
            flips += 1;
            k = perm[0];
        }
        if (flips > max_flips) {
            max_flips = flips;
        }
        if (perm_count % 2 == 0) {
            checksum += flips;
        } else {
            checksum -= flips;
        }
        /* The next permutation: rotate the first r + 1 elements until one rotation count is
         * not exhausted. */
        for (;;) {
            if (r == n) {
                return max_flips;
            }
            long perm0 = perm1[0];
            long i = 0;
            while (i < r) {
                long j = i + 1;
                perm1[i] = perm1[j];
                i = j;
            }
            perm1[r] = perm0;
            count[r] -= 1;
            if (count[r] > 0) {
                break;
            }
            r += 1;
        }
        perm_count += 1;
    }
}

int main(void) {
    long max_flips = fannkuch(N);
    printf("%ld\n", checksum);
    printf("%ld\n", max_flips);
    return 0;
}
