/* A small program for gdb to debug through rdsrv in the end-to-end tests. */
int answer;

void reached(void);

void reached(void)
{
}

int main(void)
{
    answer = 6 * 7;
    reached();
    return 0;
}
