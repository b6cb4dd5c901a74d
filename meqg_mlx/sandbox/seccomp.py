"""A classic-BPF seccomp filter for the Linux sandbox, built by hand (no libseccomp).

Namespaces leave the kernel's attack surface open; this filter closes what a
sandboxed Python never needs: new processes (threads stay allowed), namespaces
and mounts, tracing other processes, kernel keyrings, BPF, io_uring (its
operations bypass seccomp), module loading, clocks and reboot. Denied calls fail
with EPERM; a syscall from another ABI (x32, i386 on x86-64) kills the process.
bubblewrap loads the program (`--seccomp FD`) just before it execs Python.
"""

from __future__ import annotations

import errno
import platform
import struct

# Denied on every architecture; numbers per architecture below.
DENIED = (
    "ptrace process_vm_readv process_vm_writev mount umount2 pivot_root chroot unshare setns "
    "keyctl add_key request_key bpf perf_event_open userfaultfd kexec_load kexec_file_load "
    "init_module finit_module delete_module reboot swapon swapoff open_by_handle_at name_to_handle_at "
    "io_uring_setup io_uring_enter io_uring_register open_tree move_mount fsopen fsmount fspick "
    "mount_setattr acct settimeofday clock_settime sethostname setdomainname quotactl syslog vhangup"
).split()

_X86_64 = {
    "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
    "setns": 308, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "acct": 163, "settimeofday": 164, "clock_settime": 227, "sethostname": 170, "setdomainname": 171,
    "quotactl": 179, "syslog": 103, "vhangup": 153, "iopl": 172, "ioperm": 173,
}  # fmt: skip
_AARCH64 = {  # the generic table: no fork/vfork (glibc forks with clone)
    "clone": 220, "clone3": 435, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40,
    "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "keyctl": 219, "add_key": 217,
    "request_key": 218, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "kexec_load": 104,
    "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106, "reboot": 142,
    "swapon": 224, "swapoff": 225, "open_by_handle_at": 265, "name_to_handle_at": 264, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442, "acct": 89, "settimeofday": 170, "clock_settime": 112,
    "sethostname": 161, "setdomainname": 162, "quotactl": 60, "syslog": 116, "vhangup": 58,
}  # fmt: skip
# machine -> (AUDIT_ARCH_*, syscall numbers, first number of a foreign ABI sharing the arch or None)
ARCHITECTURES = {"x86_64": (0xC000003E, _X86_64, 0x40000000), "aarch64": (0xC00000B7, _AARCH64, None)}

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_DENY, _NOSYS = 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
_CLONE_THREAD = 0x00010000
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # offsets into struct seccomp_data (little-endian)


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in ARCHITECTURES


def program(machine: str | None = None) -> bytes:
    """The filter as struct sock_filter[]: what `bwrap --seccomp` reads."""
    audit_arch, numbers, foreign_abi = ARCHITECTURES[machine or platform.machine()]
    denied = [numbers[name] for name in ["fork", "vfork", *DENIED] if name in numbers]
    # Each instruction is (code, jump-if-true, jump-if-false, k); a jump skips that many instructions.
    code = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ, 1, 0, audit_arch), (_RET, 0, 0, _KILL_PROCESS), (_LD_W_ABS, 0, 0, _NR)]
    if foreign_abi is not None:
        code += [(_JGE, 0, 1, foreign_abi), (_RET, 0, 0, _KILL_PROCESS)]
    # clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
    code += [(_JEQ, 0, 1, numbers["clone3"]), (_RET, 0, 0, _NOSYS)]
    # clone is allowed for threads only: CLONE_THREAD set in its flags, the first argument.
    code += [(_JEQ, 0, 4, numbers["clone"]), (_LD_W_ABS, 0, 0, _ARG0_LOW), (_JSET, 0, 1, _CLONE_THREAD)]
    code += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _DENY)]
    code += [(_JEQ, len(denied) - i, 0, number) for i, number in enumerate(denied)]
    code += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _DENY)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in code)
