"""Write engine/seccomp/job.json, the seccomp profile every job container runs under.

An allowlist: the default action refuses any syscall the profile does not
name with ENOSYS (so a syscall newer than the profile looks "not
implemented" and libraries fall back, as glibc does for clone3). The allowed
names are every x86_64 syscall in the kernel headers this script reads
(``asm/unistd_64.h``) minus DENIED below, which a data job never needs and
which are the usual kernel attack surface or escape tools (io_uring,
namespaces, mounts, keyrings, bpf, ptrace, module and kexec loading, clock
setting, ...). Denied names get EPERM explicitly. Two syscalls are allowed only
with safe arguments: ``clone`` without namespace flags and ``personality``
with the values ordinary programs use.

Run ``python tools/make_seccomp_profile.py`` to regenerate (``--check``
exits 1 when the shipped file differs). The header is committed in the
output as the sorted name list, so the profile does not change with the
machine that runs the engine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

__all__ = ["DENIED", "main", "profile", "syscall_names"]

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "engine" / "seccomp" / "job.json"
HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

EPERM, ENOSYS = 1, 38

# Never allowed, answered EPERM. Grouped by why.
DENIED: dict[str, tuple[str, ...]] = {
    "io_uring: a large, often-exploited kernel surface a job never needs": (
        "io_uring_setup", "io_uring_enter", "io_uring_register",
    ),
    "namespaces and mounts: the sandbox's own walls": (
        "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount",
        "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        "open_by_handle_at", "name_to_handle_at",
    ),
    "kernel keyrings": ("add_key", "request_key", "keyctl"),
    "bpf, perf and userfaultfd (exploit primitives)": (
        "bpf", "perf_event_open", "userfaultfd",
    ),
    "other processes' memory": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
                                "process_madvise", "pidfd_getfd"),
    "kernel modules, kexec, reboot, swap, accounting": (
        "init_module", "finit_module", "delete_module", "create_module", "kexec_load",
        "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
        "lookup_dcookie", "nfsservctl", "uselib", "get_kernel_syms", "query_module",
        "syslog", "vhangup", "_sysctl",
    ),
    "host identity and clocks": (
        "sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex",
    ),
    "hardware and NUMA": ("iopl", "ioperm", "mbind", "set_mempolicy", "migrate_pages",
                          "move_pages", "set_mempolicy_home_node"),
    "fanotify": ("fanotify_init", "fanotify_mark"),
    "legacy x86 and never-implemented entries": (
        "modify_ldt", "afs_syscall", "tuxcall", "vserver", "security", "getpmsg", "putpmsg",
        "epoll_ctl_old", "epoll_wait_old", "create_module",
    ),
}

# Allowed only with the argument rules below.
_CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # linux, +UNAME26, +READ_IMPLIES..., query
_CONDITIONAL = ("clone", "personality", "clone3")


def syscall_names(header: Path = HEADER) -> list[str]:
    """Syscall names from a kernel ``unistd_64.h``."""
    names = re.findall(r"^#define __NR_(\w+)\s+\d+", header.read_text(), flags=re.MULTILINE)
    if len(names) < 300:
        raise SystemExit(f"{header} lists only {len(names)} syscalls: not a kernel header?")
    return sorted(set(names))


def profile(names: list[str]) -> dict:
    denied = sorted({n for group in DENIED.values() for n in group})
    allowed = sorted(set(names) - set(denied) - set(_CONDITIONAL))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": allowed, "action": "SCMP_ACT_ALLOW"},
            {"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": _CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
                          "op": "SCMP_CMP_MASKED_EQ"}],
            },
            # clone3 passes its flags in memory, where seccomp cannot look: say
            # "not implemented" so libc falls back to clone, which is checked above.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            *(
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]}
                for value in _PERSONALITIES
            ),
        ],
    }


def render(names: list[str]) -> str:
    return json.dumps(profile(names), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped file differs")
    parser.add_argument("--header", type=Path, default=HEADER)
    args = parser.parse_args(argv)
    text = render(syscall_names(args.header))
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} differs from a fresh build", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
