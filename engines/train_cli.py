"""``facetrack train``: the argument parsing, apart from the training so that the CLI starts
without importing torch."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streams.errors import SinkError
from tracker.arguments import check_writable
from tracker.cli import stop_signals_as_interrupt
from tracker.regressor import DEFAULT_MODEL

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "regressor.json"


def add_train_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        description="Train the regressor from a config (default: the one that made the "
                    "built-in model) and write FILE.onnx with its manifest FILE.json. The "
                    "rendered training faces are cached between runs. --quick trains a tiny "
                    "model in about a minute, to check that training works.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE.json",
                   help="training settings (default: engines/configs/regressor.json)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny model from little data, in about a minute (ignores --config)")
    p.add_argument("--out", type=Path, metavar="FILE.onnx",
                   help=f"where to write the model (default: {DEFAULT_MODEL}; with --quick, "
                        "regressor-quick.onnx here)")
    p.add_argument("--model", metavar="PATH",
                   help="face model file (default: $FACETRACK_MODEL, else the installed one)")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from engines.base import cache_dir
    from engines.train import QUICK, TrainConfig, train

    logging.getLogger("facetrack.train").setLevel(logging.INFO)
    config = QUICK if args.quick else TrainConfig.load(args.config)
    out = args.out or (Path("regressor-quick.onnx") if args.quick else DEFAULT_MODEL)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SinkError(f"cannot write {out}: {error.strerror}") from None
    check_writable(out)  # now, not after hours of rendering and training
    try:
        with stop_signals_as_interrupt():
            metrics = train(config, out, args.model)
    except KeyboardInterrupt:
        print(f"facetrack: training interrupted, {out} not written; the faces rendered so far "
              f"are kept in {cache_dir() / 'training'}, and the next run renders only the rest",
              file=sys.stderr)
        return 130
    print(f"wrote {out} and {out.with_suffix('.json').name} in {metrics['train_seconds']} s",
          file=sys.stderr)
    for name, value in metrics["validation"].items():
        print(f"  {name}: {value:.4g}", file=sys.stderr)
    return 0
