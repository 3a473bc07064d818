// File: server/common/core_dumps.h
//
// DisableCoreDumps: keeps the process's memory (the merchant private key, the
// APIv3 key, proxy credentials, TLS keys) out of core files and away from
// other processes of the same user. palmgate calls it first thing after
// reading its flags, before any key is read, unless --allow_core_dumps.
//
// It sets RLIMIT_CORE to 0 (soft and hard: the process cannot raise it again)
// and PR_SET_DUMPABLE to 0. The latter also stops the kernel from writing a
// core through a core_pattern pipe (systemd-coredump, apport), which ignores
// RLIMIT_CORE (unless the host sets fs.suid_dumpable=2, which dumps such
// processes for root only), and makes /proc/PID/{mem,environ,maps,fd} and ptrace
// available to root (CAP_SYS_PTRACE) only: the files in /proc/PID are then
// owned by root.
// Both are inherited across fork and reset by execve (palmgate execs nothing).
//
// Thread safety: process-wide; call once from main before starting threads.
#ifndef PALMGATE_SERVER_COMMON_CORE_DUMPS_H_
#define PALMGATE_SERVER_COMMON_CORE_DUMPS_H_

#include "absl/status/status.h"

namespace palmgate {

// Disables core dumps as described above. kInternal, naming the call and the
// errno, when either setting fails (the process should then not start).
absl::Status DisableCoreDumps();

}  // namespace palmgate

#endif  // PALMGATE_SERVER_COMMON_CORE_DUMPS_H_
