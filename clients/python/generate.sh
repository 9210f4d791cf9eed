#!/usr/bin/env bash
# Regenerates the protobuf messages that vision_node ships (and the model
# runtime's messages the tests use) from proto/vision/v1/*.proto.
#
#   clients/python/generate.sh           # rewrite the committed files
#   clients/python/generate.sh --check   # exit 1 when they differ from the proto
#
# Why committed, not generated when the package is built: `pip install
# ./clients/python` (or from a git URL, or an sdist) then needs neither protoc
# nor grpcio-tools, and the build is plain setuptools.
#
# Why grpcio-tools 1.62.3: its gencode (protobuf 4.25) has no runtime version
# gate, so the package works with every protobuf from 4.21.6 to today's 7.x;
# newer generators stamp a minimum runtime into the code (1.85's wants
# protobuf >= 7.35, which tritonclient, pinned below 7, cannot have). Only the
# messages are generated: the four RPCs are written out in _rpc.py, because
# grpc_python_out's module refuses any grpcio older than its generator.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
TOOLS="grpcio-tools==1.62.3"
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir == /* ]] || target_dir=$root/$target_dir
venv=$target_dir/clients/gen-venv

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [[ "$(cat "$venv/.pins" 2>/dev/null)" != "$TOOLS" ]]; then
  echo "generate.sh: installing $TOOLS into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$TOOLS"
  echo "$TOOLS" > "$venv/.pins"
fi

# generate OUT_DIR: the package's and the tests' modules, under OUT_DIR.
generate() {
  local out=$1
  mkdir -p "$out/package" "$out/tests"
  "$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
    --python_out="$out/package" --pyi_out="$out/package" vision/v1/admission.proto
  "$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" \
    --python_out="$out/tests" --pyi_out="$out/tests" vision/v1/runtime.proto
}

pkg=$here/src/vision_node/_proto/vision/v1
tst=$here/tests/_stubs/vision/v1
files_pkg=(admission_pb2.py admission_pb2.pyi)
files_tst=(runtime_pb2.py runtime_pb2.pyi)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"

if $check; then
  status=0
  for f in "${files_pkg[@]}"; do
    diff -u "$pkg/$f" "$tmp/package/vision/v1/$f" >/dev/null || { echo "stale: $pkg/$f" >&2; status=1; }
  done
  for f in "${files_tst[@]}"; do
    diff -u "$tst/$f" "$tmp/tests/vision/v1/$f" >/dev/null || { echo "stale: $tst/$f" >&2; status=1; }
  done
  if [[ $status != 0 ]]; then
    echo "generate.sh: the committed stubs do not match proto/: run clients/python/generate.sh" >&2
  fi
  exit $status
fi

mkdir -p "$pkg" "$tst"
for f in "${files_pkg[@]}"; do cp "$tmp/package/vision/v1/$f" "$pkg/$f"; done
for f in "${files_tst[@]}"; do cp "$tmp/tests/vision/v1/$f" "$tst/$f"; done
echo "generate.sh: wrote ${files_pkg[*]} to $pkg and ${files_tst[*]} to $tst"
