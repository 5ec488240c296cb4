"""Facetrack's per-frame tracker.

On two cores, a multi-threaded OpenBLAS (and ONNX Runtime) fights MediaPipe's own threads and
doubles the CPU per frame, so they get one thread each: through the environment, before numpy is
first imported through this package (a value the user exported wins), and through
threadpoolctl for a program that imported numpy before facetrack.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from threadpoolctl import threadpool_limits  # noqa: E402 (after the variables it must not see)

threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
