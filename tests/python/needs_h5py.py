"""h5py and numpy for a test script, or exit 77: ctest reports the script as
skipped, not passed, under an interpreter that lacks them.

    from needs_h5py import h5py, np
"""

import sys

SKIP = 77

try:
    import h5py
    import numpy as np
except ImportError as e:  # pragma: no cover - depends on the interpreter
    print(f"SKIP: {e} (run with an interpreter that has numpy and h5py, "
          f"e.g. /usr/bin/python3); this interpreter is {sys.executable}")
    sys.exit(SKIP)

__all__ = ["h5py", "np"]
