/* A program that runs until it is stopped, for the interrupt tests of rddbg. It says when it
 * spins, so that a test interrupts it there, not while it is still being loaded. */
#include <stdio.h>

volatile unsigned long spins;

int main(void)
{
    puts("spinning");
    fflush(stdout);
    for (;;)
        spins++;
}
