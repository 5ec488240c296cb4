"""Choosing a backend: ``open_engine(model, kind)``.

One entry point so that the tracker, the benchmarks and the CLI all choose the same way, and a
GPU machine speeds up without a flag while a CPU machine runs with nothing extra installed.
``auto`` tries the fastest kind first and says, in the log, why it skipped the others: a GPU
user whose tracker runs on the CPU can see it is because cuda-python is missing.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, EngineUnavailable, existing_model
from engines.onnxruntime_engine import PROVIDERS, OnnxRuntimeEngine
from engines.tensorrt_engine import DEFAULT_MAX_BATCH, CalibrationBatches, TensorRTEngine
from streams.errors import FacetrackError

log = logging.getLogger("facetrack.engines")

KINDS = ("tensorrt", *PROVIDERS)  # tensorrt, onnxruntime, cuda, ort-tensorrt
AUTO_ORDER = ("tensorrt", "cuda", "onnxruntime")
TIMED_RUNS = 20


def open_engine(model_path: str | os.PathLike[str], kind: str = "auto", *,
                precision: str = "fp32", pick_fastest: bool = False,
                max_batch: int = DEFAULT_MAX_BATCH, cache: Path | None = None,
                calibration_batches: CalibrationBatches | None = None) -> Engine:
    """An engine running the regressor at ``model_path``.

    ``kind`` is one of KINDS, or ``auto``: the first of AUTO_ORDER that works here, or with
    ``pick_fastest`` the fastest of those that work (timed on one face). ``precision``,
    ``max_batch``, ``cache`` and ``calibration_batches`` are TensorRT's (``TensorRTEngine``);
    the ONNX Runtime kinds run fp32. A kind that cannot run here raises EngineUnavailable,
    a model that is not a regressor FacetrackError, both with one line for the user.
    """
    path = existing_model(model_path)
    if kind != "auto" and kind not in KINDS:
        raise FacetrackError(f"unknown engine kind {kind!r}; choose from auto, {', '.join(KINDS)}")
    if kind not in ("auto", "tensorrt") and precision != "fp32":
        raise FacetrackError(f"precision {precision} needs engine kind tensorrt; {kind} runs fp32")
    tensorrt_options = {"precision": precision, "max_batch": max_batch, "cache": cache,
                        "calibration_batches": calibration_batches}
    if kind != "auto":
        try:
            return _open(kind, path, tensorrt_options)
        except EngineUnavailable as error:
            raise EngineUnavailable(f"engine {kind} cannot run here: {error}") from None
    return _first_or_fastest(path, tensorrt_options, pick_fastest)


def _first_or_fastest(path: Path, tensorrt_options: dict[str, Any],
                      pick_fastest: bool) -> Engine:
    """``auto``: each kind of AUTO_ORDER in turn, logging why one is skipped."""
    working: list[Engine] = []
    skipped: list[str] = []
    try:
        for candidate in AUTO_ORDER:
            try:
                working.append(_open(candidate, path, tensorrt_options))
            except EngineUnavailable as error:
                skipped.append(f"{candidate}: {error}")
                log.info("engine %s skipped: %s", candidate, error)
                continue
            if not pick_fastest:
                break
        if not working:
            raise EngineUnavailable(f"no engine can run {path}: {'; '.join(skipped)}")
        chosen = _fastest(working) if len(working) > 1 else working[0]
    except BaseException:
        for engine in working:
            engine.close()
        raise
    for engine in working:
        if engine is not chosen:
            engine.close()
    log.info("engine: %s for %s", chosen.name, path.name)
    return chosen


def _open(kind: str, path: Path, tensorrt_options: dict[str, Any]) -> Engine:
    if kind == "tensorrt":
        return TensorRTEngine(path, **tensorrt_options)
    return OnnxRuntimeEngine(path, kind)


def _fastest(engines: list[Engine]) -> Engine:
    """The engine with the lowest median time for one face, after a few warm-up calls."""
    timings = [seconds_per_call(engine) for engine in engines]
    report = ", ".join(f"{engine.name} {seconds * 1e3:.3f} ms"
                       for engine, seconds in zip(engines, timings, strict=True))
    log.info("engine timings, one face: %s", report)
    return engines[int(np.argmin(timings))]


def seconds_per_call(engine: Engine, batch_size: int = 1, runs: int = TIMED_RUNS) -> float:
    """Median wall time of ``engine.infer`` on a batch of ``batch_size`` (zeros) faces."""
    shape = (batch_size, *(size or 1 for size in engine.input.shape[1:]))
    batch = np.zeros(shape, engine.input.dtype)
    for _ in range(3):
        engine.infer(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine.infer(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
