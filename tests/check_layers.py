#!/usr/bin/env python3
"""The layers' rule, checked on every file: each layer includes only its own
headers and those of the layers below it, only dist calls MPI, and only dist
and io see MPI's or HDF5's headers.

    base; kernels -> model -> dist, data -> io -> train -> app -> cli

(base is below every layer; dist and data are side by side: neither
includes the other.) include/cllm/<layer>/ and src/<layer>/ belong to
<layer>; a folder that is no layer's is a breach. The compiler holds the
same rule for what the sources include (CMakeLists.txt's cllm_layer USES
lists, which must agree with BELOW); this script also sees headers that no
source includes. Exit status 0 when the rule holds, 1 with a line per breach.

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
# Headers that bring MPI: <mpi.h> itself, and parallel HDF5's <hdf5.h>.
SYSTEM_HEADERS = {"mpi.h": {"dist"}, "hdf5.h": {"io"}}
# #include "cllm/x/..." and #include <cllm/x/...>
INCLUDE = re.compile(r'^\s*#\s*include\s*["<]cllm/([A-Za-z0-9_]+)/', re.M)
SYSTEM_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([a-z0-9_]+\.h)[>"]', re.M)
# A call: MPI_Name( - not a constant (MPI_COMM_WORLD) or a name in a comment.
MPI_CALL = re.compile(r"\bMPI_[A-Z][a-z_]+\s*\(")
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
SOURCE = (".h", ".hpp", ".cpp", ".cc", ".c")
# CMakeLists.txt: cllm_layer(NAME [USES a b ...] SOURCES
CMAKE_LAYER = re.compile(r"cllm_layer\((\w+)((?:\s+USES(?:\s+\w+)+)?)\s+SOURCES")


def breaches_of(root):
    breaches = []
    for top in ("include/cllm", "src"):
        path = os.path.join(root, top)
        for name in sorted(os.listdir(path)):
            if name not in BELOW:
                breaches.append(f"{top}/{name}: not a layer's folder (layers: {', '.join(BELOW)})")
    seen = 0
    for layer, below in BELOW.items():
        for top in ("include/cllm", "src"):
            for dirpath, _, names in os.walk(os.path.join(root, top, layer)):
                for name in sorted(n for n in names if n.endswith(SOURCE)):
                    seen += 1
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, root)
                    text = open(path, encoding="utf-8").read()
                    for used in INCLUDE.findall(text):
                        if used != layer and used not in below:
                            breaches.append(f"{rel}: the {layer} layer includes a header of the {used} layer")
                    for header in SYSTEM_INCLUDE.findall(text):
                        owners = SYSTEM_HEADERS.get(header)
                        if owners and layer not in owners:
                            breaches.append(f"{rel}: includes <{header}> outside src/"
                                            f"{' and src/'.join(sorted(owners))}")
                        elif owners and top == "include/cllm" and header == "mpi.h":
                            breaches.append(f"{rel}: a public header includes <mpi.h>")
                    call = MPI_CALL.search(COMMENT.sub("", text))
                    if layer != "dist" and call:
                        breaches.append(f"{rel}: calls MPI outside src/dist ({call.group(0)})")
    if seen == 0:
        breaches.append(f"no sources found under {root}")
    return breaches, seen


def cmake_breaches(root):
    """The build's USES lists must say what BELOW says."""
    text = open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8").read()
    layers = {name: set(uses.split()[1:]) for name, uses in CMAKE_LAYER.findall(text)}
    breaches = []
    for layer, below in BELOW.items():
        if layer not in layers:
            breaches.append(f"CMakeLists.txt: no cllm_layer({layer} ...)")
        elif layers[layer] != below:
            breaches.append(f"CMakeLists.txt: cllm_layer({layer}) USES "
                            f"{' '.join(sorted(layers[layer])) or 'nothing'}; this script's rule: "
                            f"{' '.join(sorted(below)) or 'nothing'}")
    breaches += [f"CMakeLists.txt: cllm_layer({n}) is not a layer of this script's rule"
                 for n in layers if n not in BELOW]
    return breaches


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    breaches, seen = breaches_of(root)
    breaches += cmake_breaches(root)
    for b in breaches:
        print(f"check_layers: {b}")
    print(f"check_layers: {seen} files, {len(breaches)} breach(es)")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
