#!/usr/bin/env python3
"""Says whose bug a fuzz target's crash report shows: cllm's or HDF5's.

    triage.py REPORT-FILE      prints "cllm: <reason>" or "hdf5: <reason>"

Debian 12's HDF5 1.10.8 is not built with the sanitizers and has memory bugs
of its own on corrupt files (heap overflows while decoding object header
messages, huge allocations sized by the file) that no change to cllm can
fix. A report is HDF5's when the faulting frame - the first one that is not
the sanitizer's, libc's or libFuzzer's - lies in libhdf5 and the memory it
overran, if ASan says whose, is HDF5's too (HDF5 writing past a buffer or a
stack variable that cllm passed it is cllm's bug; HDF5 reading a block cllm
has freed is a wild read of HDF5's, as cllm hands HDF5 no pointer it keeps). Everything else is cllm's: undefined
behaviour (only cllm's code is instrumented), a broken promise ("fuzz: ..."),
a leak (HDF5's own are suppressed by lsan.supp), running out of memory
without a stack, and reports this script cannot read.
"""
import re
import sys

FRAME = re.compile(r"^\s+#\d+ 0x[0-9a-f]+(?:\s+in (?P<func>.+?))?\s+(?P<where>\S+)"
                   r"(?:\s+\(BuildId: [0-9a-f]+\))?\s*$")
SKIP_FUNCS = ("__interceptor_", "__asan", "__sanitizer", "__lsan", "__ubsan", "__memcpy", "__memmove",
              "__memset", "__strlen", "__libc_", "__GI_", "__restore_rt", "fuzzer::", "malloc",
              "calloc", "realloc", "free", "operator new", "operator delete", "memcpy", "memmove",
              "memset", "strlen", "posix_memalign", "aligned_alloc", "raise", "abort", "gsignal")


def frames(lines):
    """(func, where) of each frame of the first stack trace in lines."""
    out = []
    for line in lines:
        m = FRAME.match(line)
        if m:
            out.append((m.group("func") or "", m.group("where")))
        elif out:
            break
    return out


def culprit(stack):
    """The first frame that is not the sanitizer's, libc's or libFuzzer's.
    Frames in the fuzz target's own binary without a source line are the
    sanitizer's interceptors (strdup, memcpy, ...) or libFuzzer: cllm's code
    is built with debug information."""
    for func, where in stack:
        if func.startswith(SKIP_FUNCS) or "sysdeps/" in where or "/libc.so" in where \
                or "/libc-" in where or where.startswith("(/lib/x86_64-linux-gnu/libc.") \
                or re.match(r"\(.*/fuzz_\w+\+0x[0-9a-f]+\)$", where):
            continue
        return func, where
    return None


def in_hdf5(frame):
    return frame is not None and "libhdf5" in frame[1]


def name(frame):
    """cllm::h5::open_attr for a function, libhdf5_openmpi.so.103+0x195bc7 for an address."""
    if frame is None:
        return "?"
    func, where = frame
    if func:
        return func.replace("(anonymous namespace)::", "").split("(")[0]
    return where.strip("()").rsplit("/", 1)[-1]


def caller(stack):
    """The innermost frame of cllm's own code (src/, tests/fuzz/)."""
    return next((f for f in stack if re.search(r"/(src|tests/fuzz)/[^ ]*\.(cpp|h):\d+", f[1])), None)


def triage(text):
    lines = text.splitlines()
    for line in lines:
        if line.startswith("fuzz: "):
            return "cllm", line
        if "runtime error:" in line:
            return "cllm", line.strip()
    start = next((i for i, l in enumerate(lines) if re.search(r"ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)", l)), None)
    if start is None:
        return "cllm", "no sanitizer or libFuzzer error in the report"
    error = re.sub(r"^==\d+== ?", "", lines[start])
    error = re.sub(r" (\(pc|at pc) 0x.*$", "", error).strip()
    if "LeakSanitizer" in error:
        return "cllm", error
    if "out-of-memory (used:" in error or "out-of-memory (malloc" not in error and "libFuzzer: out-of-memory" in error:
        return "cllm", error
    stack = frames(lines[start + 1:])
    top = culprit(stack)
    if not in_hdf5(top):
        return "cllm", f"{error} in {name(top)}"
    # Whose memory it was: a heap block's allocation stack, a stack frame.
    # (HDF5 is not instrumented: ASan knows no globals or stack objects of its.)
    owned = next((i for i, l in enumerate(lines)
                  if re.search(r"^(allocated|freed) by thread|is located in stack of thread"
                               r"|of global variable", l)), None)
    if owned is not None:
        owner = culprit(frames(lines[owned + 1:]))
        # HDF5 reading a block cllm freed - no pointer of cllm's outlives
        # the call it was passed to - is a wild read through an offset the
        # corrupt file gave it (the same HDF5 code overruns its own buffers
        # on other inputs), not a dangling pointer of cllm's.
        wild_read = "heap-use-after-free" in error and lines[owned].startswith("freed by thread") \
            and any(l.startswith("READ of size") for l in lines[start:owned])
        if ("of global variable" in lines[owned] or not in_hdf5(owner)) and not wild_read:
            return "cllm", f"{error}: HDF5 ({name(top)}) overran memory of {name(owner)}"
    return "hdf5", f"{error} in {name(top)}, called from {name(caller(stack))}"


def main():
    with open(sys.argv[1], errors="replace") as f:
        owner, reason = triage(f.read())
    print(f"{owner}: {reason}")


if __name__ == "__main__":
    main()
