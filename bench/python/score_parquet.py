"""
What a user writes instead of Scoreline: a cron-job script that reads a Parquet partition with pyarrow,
scores it with onnxruntime, and writes the predictions (with the same columns Scoreline's output has)
to Parquet. `npm run bench` runs it on the same file and models as the end-to-end runs and compares.

Written the way such scripts usually are — whole partition in memory, one session.run, default
onnxruntime session options (all cores) — and timed generously: read → score → write only (best of
--repeats), without the interpreter's start-up and imports, which a real cron job also pays.

Prints one JSON line: {"rows": N, "seconds": best, "seconds_all": [...], "startup_seconds": S}.
"""
import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import uuid  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

FEATURES = [f"f{i:02d}" for i in range(32)]


def score_once(args, session, input_name, sha256):
    table = pq.read_table(args.input, columns=[args.key] + FEATURES)
    x = np.column_stack([table.column(f).to_numpy() for f in FEATURES]).astype(np.float32, copy=False)
    label, probabilities = session.run(["label", "probabilities"], {input_name: x})
    n = table.num_rows
    out = pa.table(
        {
            args.key: table.column(args.key),
            "churn_probability": pa.array(probabilities[:, 1], type=pa.float32()),
            "churn_label": pa.array(label, type=pa.int64()),
            "run_id": pa.repeat(str(uuid.uuid4()), n),
            "model_name": pa.repeat(args.model_name, n),
            "model_version": pa.repeat(args.model_version, n),
            "model_sha256": pa.repeat(sha256, n),
            "scored_at": pa.repeat(pa.scalar(datetime.datetime.now(datetime.timezone.utc), type=pa.timestamp("us", tz="UTC")), n),
            "ds": pa.repeat(pa.scalar(datetime.date.fromisoformat(args.ds), type=pa.date32()), n),
        }
    )
    pq.write_table(out, args.output)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-name", required=True)
    ap.add_argument("--model-version", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--key", default="customer_id")
    ap.add_argument("--ds", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with open(args.model, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    startup = time.perf_counter() - STARTED
    times = []
    rows = 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        rows = score_once(args, session, input_name, sha256)
        times.append(time.perf_counter() - t)
    print(json.dumps({"rows": rows, "seconds": min(times), "seconds_all": times, "startup_seconds": startup}))


if __name__ == "__main__":
    main()
