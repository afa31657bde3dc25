/* Mandelbrot: iterates z = z^2 + c for the points of a SIZE x SIZE grid over
 * [-1.5, 0.5] x [-1, 1], at most MAX_ITER times each: a float loop with no memory traffic.
 * Prints how many points stayed bounded and the sum of the iteration counts at which the others
 * escaped. Same algorithm and output as mandelbrot.kl and .lua. */
#include <stdbool.h>
#include <stdio.h>

#define SIZE 4000
#define MAX_ITER 50

int main(void) {
    long count = 0;
    long escaped = 0;
    double scale = 2.0 / (double)SIZE;
    for (long y = 0; y < SIZE; y++) {
        double ci = (double)y * scale - 1.0;
        for (long x = 0; x < SIZE; x++) {
            double cr = (double)x * scale - 1.5;
            double zr = 0.0;
            double zi = 0.0;
            bool inside = true;
            for (long i = 0; i < MAX_ITER; i++) {
                double zr2 = zr * zr;
                double zi2 = zi * zi;
                if (zr2 + zi2 > 4.0) {
                    inside = false;
                    escaped += i;
                    break;
                }
                zi = 2.0 * zr * zi + ci;
                zr = zr2 - zi2 + cr;
            }
            if (inside) {
                count += 1;
            }
        }
    }
    printf("%ld\n", count);
    printf("%ld\n", escaped);
    return 0;
}
