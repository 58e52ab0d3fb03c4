#!/usr/bin/env bash
# GPU check of the onnxruntime engine (run on a machine with an NVIDIA GPU):
# the same models on a KIND_GPU and a KIND_CPU instance, both `backend: "onnxruntime"`; the GPU
# instances must load on the CUDA execution provider, agree with the CPU ones, and are timed with
# `quiver bench` side by side.
#
#   bash benches/gpu/onnxruntime_cuda.sh QUIVER_BIN ORT_LIB_DIR OUT_DIR
#
# ORT_LIB_DIR holds the onnxruntime-gpu wheel's libraries (libonnxruntime.so.*,
# libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so). The CUDA 13 / cuDNN 9
# libraries it links are taken from the nvidia-* wheels of the machine's python3.
set -uo pipefail
bin=$1 ortdir=$2 out=$3
mkdir -p "$out"
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
libdirs=$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$ortdir:$libdirs${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH=$(ls "$ortdir"/libonnxruntime.so.* | head -1)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
repo=$(mktemp -d)
# gpuh: the CUDA provider with cuDNN's heuristic convolution choice and no TF32, instead of its
# defaults (an exhaustive search per new input shape, TF32 matrix math).
cuda_options='optimization { execution_accelerators { gpu_execution_accelerator: [ { name: "cuda" parameters { key: "cudnn_conv_algo_search" value: "HEURISTIC" } parameters { key: "use_tf32" value: "0" } } ] } }'
for model in cnn mlp; do
  for kind in cpu gpu gpuh; do
    mkdir -p "$repo/${model}_$kind/1"
    cp "deploy/models/$model/1/model.onnx" "$repo/${model}_$kind/1/"
    placement=${kind%h}
    printf 'name: "%s_%s"\nbackend: "onnxruntime"\nmax_batch_size: 64\ninstance_group [ { count: 1 kind: KIND_%s } ]\ndynamic_batching { }\n' \
      "$model" "$kind" "${placement^^}" > "$repo/${model}_$kind/config.pbtxt"
    [ "$kind" = gpuh ] && echo "$cuda_options" >> "$repo/${model}_$kind/config.pbtxt"
  done
done
"$bin" serve --model-repository "$repo" --http-port 18000 --grpc-port 18001 > "$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf localhost:18000/v2/health/ready > /dev/null && break; sleep 0.2; done
curl -s -X POST localhost:18000/v2/repository/index | tee "$out/index.json"; echo
for m in cnn_gpu cnn_gpuh mlp_gpu; do curl -s "localhost:18000/v2/models/$m/config" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["name"], c.get("backend"), c.get("instance_group"))'; done
python3 - <<'PY' | tee "$out/agree.txt"
import json, numpy as np, requests
def infer(model, name, x):
    body = {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = requests.post(f"http://localhost:18000/v2/models/{model}/infer", json=body, timeout=60)
    r.raise_for_status()
    o = r.json()["outputs"][0]
    return np.array(o["data"], dtype=np.float32).reshape(o["shape"])
rng = np.random.default_rng(0)
for model, name, shape in [("cnn", "image", (32, 1, 8, 8)), ("mlp", "input", (32, 16))]:
    meta = requests.get(f"http://localhost:18000/v2/models/{model}_gpu").json()
    name = meta["inputs"][0]["name"]
    x = rng.standard_normal(shape).astype(np.float32)
    cpu = infer(f"{model}_cpu", name, x)
    for kind in ("gpu", "gpuh"):
        gpu = infer(f"{model}_{kind}", name, x)
        print(f"{model}_{kind}", "max |gpu - cpu| =", float(np.abs(gpu - cpu).max()), "allclose(1e-5):", bool(np.allclose(gpu, cpu, atol=1e-5, rtol=1e-5)))
PY
nvidia-smi --query-compute-apps=pid,used_memory --format=csv | tee "$out/gpu_procs.txt"
for m in cnn_cpu cnn_gpu cnn_gpuh mlp_cpu mlp_gpu mlp_gpuh; do
  for b in 1 32; do
    "$bin" bench -m "$m" -u localhost:18000 --concurrency 16 -b "$b" -p 3000 -r 3 --warmup 1 --json > "$out/bench.json" 2>/dev/null
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); s=r.get("server") or {}; print(sys.argv[2], "batch", sys.argv[3], "infer/s", round(r["throughput_infer_per_s"]), "p50 ms", r["latency_us"]["p50"]/1000, "errors", r["errors"], "avg batch", round(s.get("avg_batch_size", 0), 1), "compute us/exec", round(s["delta"]["compute_infer_us"] / max(s["delta"]["exec_count"], 1)) if s else "")' "$out/bench.json" "$m" "$b"
  done
done | tee "$out/bench.txt"
grep -i -E 'cuda|provider|engine|onnxruntime' "$out/server.log" | head -20
rm -f "$out/bench.json"
kill "$pid"; wait "$pid" 2>/dev/null
