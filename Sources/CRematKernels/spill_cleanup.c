// Removing spill directories when a signal ends the process (see remat_spill_cleanup.h).
#include "remat_spill_cleanup.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define MAX_DIRS 64
static char dirs[MAX_DIRS][4096];
static volatile sig_atomic_t used[MAX_DIRS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int installed = 0;

static void remove_dir(const char *d) {
    DIR *h = opendir(d);
    if (h) {
        int fd = dirfd(h);
        struct dirent *e;
        while ((e = readdir(h)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            unlinkat(fd, e->d_name, 0);
        }
        closedir(h);
    }
    rmdir(d);
}

void remat_spill_cleanup_all(void) {
    for (int i = 0; i < MAX_DIRS; i++)
        if (used[i]) remove_dir(dirs[i]);
}

static void on_signal(int sig) {
    remat_spill_cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_once(void) {
    if (installed) return;
    installed = 1;
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) != 0) continue;
        if (old.sa_handler != SIG_DFL) continue;   // someone handles it already (remat train's Ctrl-C)
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

int remat_spill_register(const char *directory) {
    size_t n = strlen(directory);
    if (n >= sizeof dirs[0]) return -1;
    pthread_mutex_lock(&lock);
    install_once();
    int slot = -1;
    for (int i = 0; i < MAX_DIRS; i++) if (!used[i]) { slot = i; break; }
    if (slot >= 0) {
        memcpy(dirs[slot], directory, n + 1);
        used[slot] = 1;
    }
    pthread_mutex_unlock(&lock);
    return slot >= 0 ? 0 : -1;
}

void remat_spill_unregister(const char *directory) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_DIRS; i++)
        if (used[i] && strcmp(dirs[i], directory) == 0) used[i] = 0;
    pthread_mutex_unlock(&lock);
}
