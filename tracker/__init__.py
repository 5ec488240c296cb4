"""Facetrack's per-frame tracker.

On two cores, a multi-threaded OpenBLAS (and, later, ONNX Runtime) fights MediaPipe's own
threads and doubles the CPU per frame, so they get one thread each: set here, before numpy is
first imported through this package. A value the user exported wins.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
