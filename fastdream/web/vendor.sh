#!/usr/bin/env bash
# Re-fetch ONNX Runtime Web's browser files into static/vendor/onnxruntime-web at the pinned version.
# Needs npm (the npm registry) and gzip. The .wasm file is stored gzipped (the server sends it with
# Content-Encoding: gzip), which keeps the repository small.
#
#   fastdream/web/vendor.sh            # the pinned version below
#   ORT_WEB_VERSION=1.30.0 fastdream/web/vendor.sh
set -euo pipefail
VERSION="${ORT_WEB_VERSION:-1.30.0}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$HERE/static/vendor/onnxruntime-web"
# ort.webgpu.min.js runs the WebGPU execution provider and the WebAssembly (CPU) one; both live in the
# asyncify build of the runtime, which it loads from the .mjs/.wasm pair below.
FILES=(ort.webgpu.min.js ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-web@$VERSION" >/dev/null && tar xzf "onnxruntime-web-$VERSION.tgz")
rm -rf "$DEST"
mkdir -p "$DEST"
for f in "${FILES[@]}"; do
  src="$work/package/dist/$f"
  [ -f "$src" ] || { echo "vendor.sh: $f is not in onnxruntime-web $VERSION" >&2; exit 1; }
  case "$f" in
    *.wasm) gzip -9 -n -c "$src" > "$DEST/$f.gz" ;;
    *) cp "$src" "$DEST/$f" ;;
  esac
done
if [ -f "$work/package/LICENSE" ]; then
  cp "$work/package/LICENSE" "$DEST/LICENSE"
else  # the npm package declares "license": "MIT" without the text; this is the onnxruntime repository's LICENSE
  cat > "$DEST/LICENSE" <<'MIT'
MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
MIT
fi
{
  echo "onnxruntime-web $VERSION (npm), MIT licence (see LICENSE); fetched by fastdream/web/vendor.sh."
  echo "Files (the .wasm is gzipped; the server sends it with Content-Encoding: gzip):"
  (cd "$DEST" && for f in "${FILES[@]}"; do g="$f"; [ -f "$f" ] || g="$f.gz"; echo "  $g $(wc -c < "$g") bytes sha256 $(sha256sum "$g" | cut -d' ' -f1)"; done)
} > "$DEST/VERSION.txt"
cat "$DEST/VERSION.txt"
