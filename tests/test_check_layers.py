#!/usr/bin/env python3
"""check_layers.py finds each kind of breach: planted one at a time in a copy
of the tree, each must make it exit 1 with its own line; the copy as it is
passes. Exit 0 when every plant was caught.

    python3 tests/test_check_layers.py SOURCE_DIR
"""
import os
import shutil
import subprocess
import sys
import tempfile

CHECK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_layers.py")


def append(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def replace(path, old, new):
    text = open(path, encoding="utf-8").read()
    assert old in text, f"{path}: '{old}' not found"
    open(path, "w", encoding="utf-8").write(text.replace(old, new, 1))


def plant_folder(root):
    os.makedirs(os.path.join(root, "src", "extras"))
    append(os.path.join(root, "src", "extras", "helper.cpp"), "int helper() { return 0; }\n")


# (name, plant, the line check_layers must print); a plant is (path, text)
# to append to that file of the tree, or a function of the tree's root.
PLANTS = [
    ("an upward include, quoted",
     ("src/model/gpt.cpp", '#include "cllm/train/trainer.h"\n'),
     "src/model/gpt.cpp: the model layer includes a header of the train layer"),
    ("an upward include, angle brackets",
     ("include/cllm/kernels/matmul.h", "#include <cllm/io/checkpoint.h>\n"),
     "include/cllm/kernels/matmul.h: the kernels layer includes a header of the io layer"),
    ("dist and data side by side",
     ("src/data/sampler.cpp", '#include "cllm/dist/comm.h"\n'),
     "src/data/sampler.cpp: the data layer includes a header of the dist layer"),
    ("an MPI call outside dist",
     ("src/train/optimizer.cpp", "static int breach() { return MPI_Barrier(MPI_COMM_WORLD); }\n"),
     "src/train/optimizer.cpp: calls MPI outside src/dist (MPI_Barrier()"),
    ("<mpi.h> outside dist",
     ("src/app/benchmark.cpp", "#include <mpi.h>\n"),
     "src/app/benchmark.cpp: includes <mpi.h> outside src/dist"),
    ("<mpi.h> in a public dist header",
     ("include/cllm/dist/comm.h", "#include <mpi.h>\n"),
     "include/cllm/dist/comm.h: a public header includes <mpi.h>"),
    ("<hdf5.h> outside io",
     ("src/train/metrics.cpp", "#include <hdf5.h>\n"),
     "src/train/metrics.cpp: includes <hdf5.h> outside src/io"),
    ("a folder that is no layer's", plant_folder,
     "src/extras: not a layer's folder"),
    ("a header outside the layers' folders",
     ("include/cllm/everything.h", "#pragma once\n"),
     "include/cllm/everything.h: not a layer's folder"),
    ("the build's rule drifting from the script's",
     lambda r: replace(os.path.join(r, "CMakeLists.txt"), "cllm_layer(model USES base kernels",
                       "cllm_layer(model USES base kernels data"),
     "CMakeLists.txt: cllm_layer(model) USES base data kernels; this script's rule: base kernels"),
]


def run(root):
    p = subprocess.run([sys.executable, CHECK, root], capture_output=True, text=True)
    return p.returncode, p.stdout


def main():
    source = sys.argv[1]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cllm-layers-") as tmp:
        for name, plant, expected in [("nothing planted", None, None)] + PLANTS:
            root = os.path.join(tmp, "tree")
            shutil.rmtree(root, ignore_errors=True)
            for part in ("include", "src"):
                shutil.copytree(os.path.join(source, part), os.path.join(root, part))
            shutil.copy(os.path.join(source, "CMakeLists.txt"), root)
            if callable(plant):
                plant(root)
            elif plant:
                append(os.path.join(root, plant[0]), plant[1])
            rc, out = run(root)
            caught = rc == 0 if expected is None else rc == 1 and f"check_layers: {expected}" in out
            print(f"test_check_layers: {'ok' if caught else 'FAIL'}: {name}: exit {rc}")
            if not caught:
                failures += 1
                print(out, end="")
    print(f"test_check_layers: {len(PLANTS) + 1 - failures} of {len(PLANTS) + 1} cases as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
