"""Python onnxruntime's in-process rows/s on a model at several batch sizes: the reference the
onnxruntime engine is held to (benches/onnxruntime.sh). Same measurement as the ceiling binary:
random float inputs, an untimed warmup of a tenth of the time, then `seconds` of back-to-back runs.

    python onnxruntime_python.py MODEL.onnx --threads N --seconds S --batch-sizes 1,8,32"""

import argparse
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--batch-sizes", default="1,8,32")
    a = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    session = ort.InferenceSession(a.model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    rng = np.random.default_rng(0)
    print(f"{'batch':>6} {'rows/s':>12} {'batches/s':>12} {'ms/batch':>14}")
    for batch in [int(b) for b in a.batch_sizes.split(",")]:
        shape = [batch] + [d for d in inp.shape[1:]]
        x = rng.standard_normal(shape).astype(np.float32)
        feed = {inp.name: x}
        warm = time.perf_counter() + a.seconds / 10
        while time.perf_counter() < warm:
            session.run(None, feed)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < a.seconds:
            session.run(None, feed)
            n += 1
        el = time.perf_counter() - start
        print(f"{batch:>6} {n * batch / el:>12.1f} {n / el:>12.1f} {el * 1000 / n:>14.3f}")


if __name__ == "__main__":
    main()
