/*
 * The sandbox ("pause") program of the e2e real node: it holds a pod's namespaces open,
 * reaps the orphans re-parented to it, and exits on SIGINT or SIGTERM. No registry is
 * reachable here, so containerd's sandbox image is built from this file by
 * e2e/tools/install.sh (static, packed with scripts/oci-image.py).
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal) { _exit(128 + signal); }

static void reap(int signal) {
    (void)signal;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
        sigaction(SIGCHLD, &on_child, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
