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
# Khronos' glTF validator (npm), for the glTF export test; without npm that test skips.
if command -v npm >/dev/null; then
    npm install --silent --prefix .venv/node --no-audit --no-fund gltf-validator@2.0.0-dev.3.10 \
        >/dev/null || echo "could not install gltf-validator: the glTF export test will skip"
fi
if [ -n "${ICT_FACEKIT:-}" ]; then
    .venv/bin/facetrack model install "$ICT_FACEKIT"
fi
echo "facetrack is set up in .venv: .venv/bin/facetrack --help"
