#ifndef REMAT_SPILL_CLEANUP_H
#define REMAT_SPILL_CLEANUP_H

// Spill directories removed when the process is ended by SIGINT, SIGTERM or SIGHUP (handlers
// installed on the first registration, only for signals whose disposition is still the default;
// the handler removes every registered directory's files and the directory, then re-raises the
// signal with its default action) and by remat_spill_cleanup_all() (for an _exit path).
// At most 64 directories; paths up to 4095 bytes.
int remat_spill_register(const char *directory);   // 0 on success
void remat_spill_unregister(const char *directory);
void remat_spill_cleanup_all(void);                 // async-signal-safe in practice (opendir/readdir/unlink/rmdir)

#endif
