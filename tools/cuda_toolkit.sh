#!/usr/bin/env bash
# A CUDA toolkit for building rdcl's CUDA engine, from pip (no system CUDA, no root).
#
# Usage: bash tools/cuda_toolkit.sh [DIR]      (DIR defaults to build/cuda-13.0)
#
# Installs NVIDIA's CUDA compiler and runtime wheels, pinned below, into the active Python
# environment and lays out DIR as a CUDA toolkit root made of links into them: bin/ (nvcc and its
# tools), include/, nvvm/, lib/ and lib64/. Two things the wheels lack are added in DIR only: the
# lib64/ directory nvcc's own profile links from, and the unversioned libcudart.so (the runtime
# wheel ships libcudart.so.13 only) that CMake's FindCUDAToolkit requires. Prints DIR's absolute
# path on stdout. Then build rdcl against it (what .ci/run does; the README shows the same):
#
#   CUDA_ROOT=$(bash tools/cuda_toolkit.sh)
#   export CUDACXX="$CUDA_ROOT/bin/nvcc" CUDAToolkit_ROOT="$CUDA_ROOT"
#   RDCL_CUDA=1 RDCL_CUDA_ARCHS="80;90" pip install --no-build-isolation -e .
#
# CUDA 13.0 is the oldest 13.x: the static runtime linked into rdcl then needs the oldest 13.x
# driver (R580), and it is the CUDA of torch's cu130 wheels. Re-running replaces DIR.
set -euo pipefail

PINS=(
  nvidia-cuda-nvcc==13.0.88     # nvcc, ptxas, fatbinary, nvlink (needs the three below)
  nvidia-nvvm==13.0.88          # cicc, libnvvm, libdevice
  nvidia-cuda-crt==13.0.88      # the compiler's runtime headers (crt/)
  nvidia-cuda-runtime==13.0.96  # cuda_runtime.h, libcudart_static.a, libcudart.so.13
  nvidia-cuda-cccl==13.0.85     # CUB, Thrust, libcu++ headers
)
DIR=${1:-build/cuda-13.0}
PYTHON=${PYTHON:-python}
MARK=.rdcl-cuda-toolkit

if [ -e "$DIR" ] && [ ! -e "$DIR/$MARK" ]; then
  echo "cuda_toolkit.sh: error: $DIR exists and was not made by this script; expected a new" \
    "or earlier tools/cuda_toolkit.sh directory" >&2
  exit 2
fi
"$PYTHON" -m pip install -q "${PINS[@]}" >&2
SRC=$("$PYTHON" - << 'EOF'
import os
import nvidia  # namespace package of NVIDIA's wheels

roots = [os.path.join(p, "cu13") for p in nvidia.__path__]
found = [r for r in roots if os.path.isfile(os.path.join(r, "bin", "nvcc"))]
if not found:
    raise SystemExit(f"cuda_toolkit.sh: error: no nvidia/cu13/bin/nvcc under {roots}")
print(found[0])
EOF
)
rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib"
touch "$DIR/$MARK"
# nvcc resolves its profile and tools from the directory it is called from, so bin/ holds links
# to each file rather than being one link: nvcc.profile's TOP is then DIR, whose lib64/ exists.
for f in "$SRC"/bin/*; do ln -s "$f" "$DIR/bin/"; done
for f in "$SRC"/lib/*; do ln -s "$f" "$DIR/lib/"; done
ln -s "$SRC/include" "$DIR/include"
ln -s "$SRC/nvvm" "$DIR/nvvm"
ln -s lib "$DIR/lib64"
ln -s libcudart.so.13 "$DIR/lib/libcudart.so"
"$DIR/bin/nvcc" --version | tail -n 1 >&2
cd "$DIR" && pwd
