/* A program that runs until it is stopped, for the interrupt tests of rddbg. */
volatile unsigned long spins;

int main(void)
{
    for (;;)
        spins++;
}
