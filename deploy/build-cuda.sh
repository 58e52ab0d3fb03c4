#!/usr/bin/env bash
# Builds Quiver with the `cuda` feature without a system CUDA toolkit and without root.
#
# Usage: deploy/build-cuda.sh [cargo arguments...]
#   default arguments: build --release --features cuda --bin quiver
#   e.g.:  deploy/build-cuda.sh clippy --features cuda -p quiver-engine-candle -p quiver-runtime --all-targets -- -D warnings
#
# What it does:
# 1. Makes a Python venv ($QUIVER_CUDA_VENV, default target/cuda-venv) and pip-installs NVIDIA's
#    CUDA 13 wheels through the `cuda-toolkit` metapackage (one pinned, mutually matching set:
#    nvcc, nvvm, crt and cccl headers, the runtime, cuBLAS, cuRAND, NVRTC). The CUDA 12 wheels
#    (`nvidia-cuda-nvcc-cu12`) cannot be used: they ship ptxas but no nvcc. The CUDA 13 wheels
#    unpack into one toolkit-shaped tree, site-packages/nvidia/cu13/{bin,include,lib}.
# 2. Makes what linking needs and the wheels lack, in $QUIVER_CUDA_VENV/cuda-link/lib:
#    unversioned symlinks (libcudart.so, libcublas.so, libcublasLt.so, libcurand.so,
#    libnvrtc.so), and a stub libcuda.so (soname libcuda.so.1) generated from cuda.h, since
#    cudarc links the driver API dynamically and the driver's library comes only with a driver.
#    The binary records libcuda.so.1 and finds the real driver's library at run time.
# 3. Runs cargo with CARGO_TARGET_DIR (default target/cuda, apart from the default build),
#    CUDA_COMPUTE_CAP (default 90: Hopper, H100/H200; needed when no GPU is present), nvcc on
#    PATH, NVCC, CUDA_HOME (the wheel tree: candle-kernels' build takes nvcc and the headers from
#    it) and CUDA_ROOT (the link directory: cudarc adds its lib/ and lib/stubs/ to the linker's
#    search path).
#
# The kernels are PTX of CUDA 13.0 (ISA 9.0), JIT-compiled by the driver: the GPU machine needs
# a driver for CUDA 13.0 or newer (R580+). At run time the binary needs, on the library path:
# libcuda.so.1 (the driver), libcudart.so.13, libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10 and libnvrtc.so.13 (e.g. LD_LIBRARY_PATH=<site-packages>/nvidia/cu13/lib).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${QUIVER_CUDA_VENV:-$root/target/cuda-venv}
toolkit_version=${CUDA_TOOLKIT_VERSION:-13.0.2}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "cuda-toolkit[nvcc,nvvm,crt,cccl,cudart,cublas,curand,nvrtc]==$toolkit_version"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$site/nvidia/cu13
if [ ! -x "$cuda/bin/nvcc" ]; then
    echo "build-cuda.sh: no nvcc at $cuda/bin/nvcc" >&2
    exit 1
fi

link=$venv/cuda-link
mkdir -p "$link/lib/stubs"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    ln -sfn "$cuda/lib/$lib" "$link/lib/${lib%%.so.*}.so"
done
if [ ! -f "$link/lib/stubs/libcuda.so" ] || [ "$cuda/include/cuda.h" -nt "$link/lib/stubs/libcuda.so" ]; then
    # Every cu* name in cuda.h (including the _v2/_v3 names its macros map to) as an empty
    # function: enough for the linker, never called (the real driver is loaded at run time).
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$cuda/include/cuda.h" | sort -u \
        | sed 's/.*/void &(void) {}/' >"$link/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/lib/stubs/libcuda.so" "$link/libcuda-stub.c"
fi

export PATH="$cuda/bin:$PATH"
export NVCC="$cuda/bin/nvcc"
export CUDA_HOME="$cuda"
export CUDA_ROOT="$link"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/cuda}

cd "$root"
if [ "$#" -eq 0 ]; then
    set -- build --release --features cuda --bin quiver
fi
echo "build-cuda.sh: nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CARGO_TARGET_DIR=$CARGO_TARGET_DIR: cargo $*" >&2
exec cargo "$@"
