"""`facetrack model install` and `facetrack model info`: the face model's subcommands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tracker import model_store

INSTALL_EXAMPLES = """\
examples:
  facetrack model install ~/src/ICT-FaceKit
  facetrack model install ~/Downloads/ICT-FaceKit-master.zip
  facetrack model install https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip
  facetrack model install ICT-FaceKit/FaceXModel --dest /opt/facetrack/ict_face_model.npz
"""


def add_model_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model",
                       description="Install the ICT-FaceKit face model, or describe the "
                                   "installed one.")
    actions = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    install = actions.add_parser(
        "install",
        help="convert an ICT-FaceKit folder, zip or URL into Facetrack's model file",
        description="Read the ICT-FaceKit face model, check it, and write one compact file "
                    f"that Facetrack loads (default: {model_store.default_model_path()}; "
                    "set FACETRACK_DATA to change the folder).",
        epilog=INSTALL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    install.add_argument("source", metavar="SOURCE",
                         help="ICT-FaceKit folder (repository root or its FaceXModel/), a zip "
                              "of either, or an http(s) URL of such a zip")
    install.add_argument("--sha256", metavar="HEX", type=_sha256_hex,
                         help="refuse the zip or download unless its SHA-256 is HEX")
    install.add_argument("--dest", metavar="PATH", type=Path,
                         help="write the model file here: a .npz file, or a folder to put "
                              f"{model_store.MODEL_FILENAME} in")
    install.set_defaults(func=_install)

    info = actions.add_parser("info", help="describe the installed face model",
                              description="Say where the face model file is and what it holds.")
    info.add_argument("--model", metavar="PATH",
                      help="model file (default: $FACETRACK_MODEL, else the installed one)")
    info.set_defaults(func=_info)


def _install(args: argparse.Namespace) -> int:
    path = model_store.install(args.source, dest=args.dest, sha256=args.sha256)
    print(f"installed the ICT face model: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _info(args: argparse.Namespace) -> int:
    for key, value in model_store.info(model_store.locate(args.model)).items():
        print(f"{key}: {value if value != '' else '-'}")
    return 0


def _sha256_hex(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError("must be 64 hexadecimal digits")
    return text.lower()
