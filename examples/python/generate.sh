#!/usr/bin/env bash
# Generates the Python stubs for the admission API next to vision_client.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m grpc_tools.protoc -I "$here/../../proto" \
  --python_out="$here" --grpc_python_out="$here" \
  "$here/../../proto/vision/v1/admission.proto"
