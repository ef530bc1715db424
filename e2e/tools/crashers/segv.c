/*
 * The C program of the end-to-end crash tests: logs a line, then writes through a null
 * pointer, so the kernel kills it with SIGSEGV (a real fault, not a signal sent by a
 * test). Built static with musl-gcc by e2e/tools/install.sh into vigil.test/crashers:1.
 */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("inventory: starting (pid %d)\n", (int)getpid());
    printf("inventory: reading the shelf index\n");
    fflush(stdout);
    sleep(2);
    volatile int *shelf = NULL;
    *shelf = 1;
    return 0;
}
