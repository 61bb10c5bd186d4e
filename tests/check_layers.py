#!/usr/bin/env python3
"""The layers' rule, checked: each layer includes only its own headers and
those of the layers below it, and only src/dist calls MPI.

    base; kernels -> model -> dist, data -> io -> train -> app -> cli

(base is below every layer; dist and data are side by side: neither
includes the other.) A header
include/cllm/<layer>/x.h and a source src/<layer>/x.cpp belong to <layer>;
src/cli/ may include every layer. Exit status 0 when the rule holds, 1 with
a line per breach.

    python3 tests/check_layers.py [SOURCE_DIR]
"""
import os
import re
import sys

BELOW = {
    "base": set(),
    "kernels": {"base"},
    "model": {"base", "kernels"},
    "dist": {"base", "kernels", "model"},
    "data": {"base", "kernels", "model"},
    "io": {"base", "kernels", "model", "data"},
    "train": {"base", "kernels", "model", "dist", "data", "io"},
    "app": {"base", "kernels", "model", "dist", "data", "io", "train"},
    "cli": {"base", "kernels", "model", "dist", "data", "io", "train", "app"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"cllm/([a-z]+)/[^"]+"', re.M)
# A call: MPI_Name( - not a constant (MPI_COMM_WORLD) or a name in a comment.
MPI_CALL = re.compile(r"\bMPI_[A-Z][a-z_]+\s*\(")
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def files_of(root, layer):
    for top in (os.path.join(root, "include", "cllm", layer), os.path.join(root, "src", layer)):
        for dirpath, _, names in os.walk(top):
            for name in sorted(names):
                if name.endswith((".h", ".cpp")):
                    yield os.path.join(dirpath, name)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    breaches = []
    flat = [n for n in os.listdir(os.path.join(root, "include", "cllm")) if n.endswith(".h")]
    breaches += [f"include/cllm/{n}: a header outside any layer's folder" for n in flat]
    seen = 0
    for layer, below in BELOW.items():
        for path in files_of(root, layer):
            seen += 1
            text = open(path, encoding="utf-8").read()
            rel = os.path.relpath(path, root)
            for used in INCLUDE.findall(text):
                if used != layer and used not in below:
                    breaches.append(f"{rel}: the {layer} layer includes a {used} header")
            if layer != "dist" and MPI_CALL.search(COMMENT.sub("", text)):
                breaches.append(f"{rel}: calls MPI outside src/dist "
                                f"({MPI_CALL.search(COMMENT.sub('', text)).group(0)})")
    if seen == 0:
        breaches.append(f"no sources found under {root}")
    for b in breaches:
        print(f"check_layers: {b}")
    print(f"check_layers: {seen} files, {len(breaches)} breach(es)")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
