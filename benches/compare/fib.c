/* Naive doubly recursive Fibonacci: almost nothing but calls and returns. Prints fib(N).
 * Same algorithm and output as fib.kl and fib.lua. */
#include <stdio.h>

#define N 43

static long fib(long n) {
    if (n < 2) {
        return n;
    }
    return fib(n - 1) + fib(n - 2);
}

int main(void) {
    printf("%ld\n", fib(N));
    return 0;
}
