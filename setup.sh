#!/usr/bin/env bash
# Sets up everything in .venv: the pinned dependencies (constraints.txt), this package (editable)
# with its dev tools, and the ICT face model when $ICT_FACEKIT names an ICT-FaceKit folder, zip
# or URL. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
# This machine's pip configuration lists local mirrors that lack some packages; pip falls back
# to PyPI and warns about each one, which says nothing useful here.
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,train]" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
if [ -n "${ICT_FACEKIT:-}" ]; then
    .venv/bin/facetrack model install "$ICT_FACEKIT"
fi
echo "facetrack is set up in .venv: .venv/bin/facetrack --help"
