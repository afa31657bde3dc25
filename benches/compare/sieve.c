/* Sieve of Eratosthenes: the primes below LIMIT, on a global array of bools, sieved REPEAT
 * times over. Prints the number of primes and the total over all repetitions. Same algorithm
 * and output as sieve.kl and sieve.lua. */
#include <stdbool.h>
#include <stdio.h>

#define LIMIT 1000000
#define REPEAT 400

static bool composite[LIMIT];

/* The number of primes below `n` (n <= LIMIT). */
static long sieve(long n) {
    for (long i = 0; i < n; i++) {
        composite[i] = false;
    }
    long count = 0;
    for (long i = 2; i < n; i++) {
        if (!composite[i]) {
            count += 1;
            long j = i * i;
            while (j < n) {
                composite[j] = true;
                j += i;
            }
        }
    }
    return count;
}

int main(void) {
    long total = 0;
    long count = 0;
    for (long r = 0; r < REPEAT; r++) {
        count = sieve(LIMIT);
        total += count;
    }
    printf("%ld\n", count);
    printf("%ld\n", total);
    return 0;
}
