#!/usr/bin/env python3
"""Generate Scoreline's committed ONNX model fixtures (Python is used for fixtures only).

How to run (from the repository root):

    python3 -m venv .venv-models
    .venv-models/bin/pip install -r examples/models/requirements.txt
    .venv-models/bin/python examples/models/make_models.py

It takes about 4 minutes on one core (training the gradient-boosted model is most of it) and (re)writes:

Example model store, ``examples/models/`` (used by the demo and the benchmarks):

    churn-mlp/1/model.onnx             sklearn MLPClassifier(hidden_layer_sizes=(64, 64))
    churn-mlp/1/scoreline.model.yaml
    churn-mlp/aliases.yaml             champion: "1"
    churn-gbt/1/model.onnx             sklearn GradientBoostingClassifier(n_estimators=200, max_depth=6)
    churn-gbt/1/scoreline.model.yaml
    churn-gbt/aliases.yaml             champion: "1"
    reference_rows.json                5 fixed feature rows + the churn_probability/churn_label that
                                       Python onnxruntime computes for them with both churn models,
                                       plus the label-generating coefficients (for cross-language tests
                                       and for the TypeScript demo-data generator)

Both churn models read one input ``features`` float32 [N, 32] (columns f00..f31 in order) and were
exported with ``zipmap=False``, so they output ``label`` int64 [N] and ``probabilities`` float32 [N, 2].
Their manifests map probabilities[:, 1] -> churn_probability and label -> churn_label.

Test model store, ``test/fixtures/models/``:

    zipmap-clf/1/    LogisticRegression on f00..f31 exported WITH skl2onnx's default ZipMap: outputs
                     output_label int64 [N] and output_probability seq(map(int64, float)). The manifest
                     maps only output_label -> predicted_label, proving unmapped outputs are not fetched.
    per-feature/1/   onnx.helper graph, inputs age, tenure, spend (each float32 [N, 1]);
                     score float32 [N, 1] = 0.5*age - 0.25*tenure + 0.125*spend + 1.0
    double-input/1/  onnx.helper graph, input x float64 [N, 2]; y float64 [N, 1] = x0 + 2*x1;
                     the manifest feeds columns [a, b]
    bad-shape/1/     the per-feature model with a manifest that deliberately does NOT match it (one
                     input "features" [N, 3]); for the error path
    (each with aliases.yaml: champion: "1")

Synthetic data (the same distribution as the demo data):
    f00..f31 ~ iid standard normal, float32
    churn    ~ Bernoulli(sigmoid(x . w + 0.5*f00*f01 - 0.3*f02**2 + 0.2))
    w        = numpy.round(numpy.random.default_rng(W_SEED).normal(0.0, 0.4, size=32), 2)
               with W_SEED = 20261128; the resulting values are written to reference_rows.json
               ("label_model.w") so other languages can use them verbatim.
The churn models train on TRAIN_ROWS = 50,000 rows drawn with DATA_SEED; the ZipMap fixture on 4,000.

Reproducibility: every random source is seeded, BLAS is pinned to one thread before numpy loads
and the manifests carry a fixed created_at, so with the versions pinned in requirements.txt a rerun
on the same platform rewrites byte-identical files (and therefore the same sha256 in the manifests).
A different platform or library version may produce slightly different weights; that is fine:
commit the regenerated files together (the manifests' sha256 always match their model.onnx).

Opsets: every model is saved with IR version 8, default domain opset <= 17 and ai.onnx.ml opset <= 3,
which onnxruntime >= 1.13 (Python and onnxruntime-node) loads.
"""
from __future__ import annotations

import os

# Single-threaded BLAS before numpy is imported: summation order, and so the trained weights, must
# not depend on the machine's core count.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
import skl2onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLE_STORE = HERE  # examples/models
TEST_STORE = REPO / "test" / "fixtures" / "models"

N_FEATURES = 32
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
W_SEED = 20261128
DATA_SEED = 1
ZIPMAP_DATA_SEED = 2
REFERENCE_SEED = 3
TRAIN_ROWS = 50_000
ZIPMAP_TRAIN_ROWS = 4_000
REFERENCE_ROWS = 5
CREATED_AT = "2026-11-28T00:00:00Z"

OPSET = 17  # default ("ai.onnx") domain
ML_OPSET = 3  # "ai.onnx.ml" domain (TreeEnsembleClassifier, ZipMap, ...)
IR_VERSION = 8  # the IR version that goes with opset 17
TARGET_OPSET = {"": OPSET, "ai.onnx.ml": ML_OPSET}

# Label model: logit = x . W + INTERACTION*f00*f01 + SQUARE*f02**2 + BIAS
W = np.round(np.random.default_rng(W_SEED).normal(0.0, 0.4, size=N_FEATURES), 2)
INTERACTION = 0.5
SQUARE = -0.3
BIAS = 0.2


# --------------------------------------------------------------------------------------------- data


def make_features(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, N_FEATURES), dtype=np.float32)


def churn_probability(x: np.ndarray) -> np.ndarray:
    xd = x.astype(np.float64)
    logit = xd @ W + INTERACTION * xd[:, 0] * xd[:, 1] + SQUARE * xd[:, 2] ** 2 + BIAS
    return 1.0 / (1.0 + np.exp(-logit))


def make_dataset(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = make_features(rng, n)
    y = (rng.random(n) < churn_probability(x)).astype(np.int64)
    return x, y


# ------------------------------------------------------------------------------------------ writing


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def finalize(model: onnx.ModelProto, doc: str) -> bytes:
    """Pin IR version and opsets, check the model, and return its serialized bytes."""
    model.ir_version = IR_VERSION
    # skl2onnx emits opset_import in set/dict order, which varies with Python's string-hash seed;
    # sort it so the bytes (and the manifest's sha256) are the same on every run.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    for opset in model.opset_import:
        limit = {"": OPSET, "ai.onnx": OPSET, "ai.onnx.ml": ML_OPSET}.get(opset.domain)
        if limit is None:
            raise SystemExit(f"unexpected opset domain {opset.domain!r} in {doc}")
        if opset.version > limit:
            raise SystemExit(f"{doc}: {opset.domain or 'ai.onnx'} opset {opset.version} > {limit}")
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def yaml_list(items: list) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def manifest_yaml(*, name: str, sha256: str, description: str, framework: str,
                  inputs: list[dict], outputs: list[dict], version: str = "1") -> str:
    lines = [
        f"name: {name}",
        f'version: "{version}"',
        f"sha256: {sha256}",
        f"description: {json.dumps(description)}",
        f"created_at: {CREATED_AT}",
        f"framework: {json.dumps(framework)}",
        "inputs:",
    ]
    for spec in inputs:
        lines += [
            f"  - name: {spec['name']}",
            f"    dtype: {spec['dtype']}",
            f"    shape: {yaml_list(spec['shape'])}",
            f"    columns: {yaml_list(spec['columns'])}",
        ]
    lines.append("outputs:")
    for spec in outputs:
        lines.append(f"  - tensor: {spec['tensor']}")
        if "index" in spec:
            lines.append(f"    index: {spec['index']}")
        lines += [f"    column: {spec['column']}", f"    dtype: {spec['dtype']}"]
    return "\n".join(lines) + "\n"


def write_model(store: Path, name: str, model_bytes: bytes, manifest: dict) -> Path:
    """Write <store>/<name>/1/{model.onnx,scoreline.model.yaml} and <store>/<name>/aliases.yaml."""
    model_dir = store / name
    if model_dir.exists():
        shutil.rmtree(model_dir)
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(model_bytes)
    (version_dir / "scoreline.model.yaml").write_text(
        manifest_yaml(name=name, sha256=sha256_bytes(model_bytes), **manifest))
    (model_dir / "aliases.yaml").write_text('champion: "1"\n')
    size = len(model_bytes)
    print(f"  wrote {version_dir.relative_to(REPO)}/model.onnx ({size:,} bytes)")
    return version_dir / "model.onnx"


def session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def framework(estimator: object) -> str:
    return f"sklearn-{sklearn.__version__} {type(estimator).__name__} via skl2onnx-{skl2onnx.__version__}"


# ------------------------------------------------------------------------------------ churn models


CHURN_INPUTS = [{"name": "features", "dtype": "float32", "shape": [-1, N_FEATURES], "columns": FEATURES}]
CHURN_OUTPUTS = [
    {"tensor": "probabilities", "index": 1, "column": "churn_probability", "dtype": "float32"},
    {"tensor": "label", "column": "churn_label", "dtype": "int64"},
]


def export_churn(estimator, name: str, description: str, x_check: np.ndarray) -> bytes:
    onx = to_onnx(
        estimator,
        initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
        target_opset=TARGET_OPSET,
        options={id(estimator): {"zipmap": False}},
    )
    model_bytes = finalize(onx, f"Scoreline example model {name}: {description}")
    sess = session(model_bytes)
    assert [i.name for i in sess.get_inputs()] == ["features"], sess.get_inputs()
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"], sess.get_outputs()
    label, proba = sess.run(["label", "probabilities"], {"features": x_check})
    assert label.dtype == np.int64 and label.shape == (len(x_check),), (label.dtype, label.shape)
    assert proba.dtype == np.float32 and proba.shape == (len(x_check), 2), (proba.dtype, proba.shape)
    expected = estimator.predict_proba(x_check)
    diff = float(np.max(np.abs(proba - expected)))
    agree = float(np.mean(label == estimator.predict(x_check)))
    print(f"  {name}: max |onnx - sklearn| probability = {diff:.2e}, label agreement = {agree:.4%}")
    assert diff < 1e-4, f"{name}: onnxruntime disagrees with sklearn by {diff}"
    write_model(EXAMPLE_STORE, name, model_bytes, {
        "description": description,
        "framework": framework(estimator),
        "inputs": CHURN_INPUTS,
        "outputs": CHURN_OUTPUTS,
    })
    return model_bytes


def auc(y: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def build_churn_models() -> dict[str, bytes]:
    x, y = make_dataset(DATA_SEED, TRAIN_ROWS + 10_000)
    x_train, y_train, x_test, y_test = x[:TRAIN_ROWS], y[:TRAIN_ROWS], x[TRAIN_ROWS:], y[TRAIN_ROWS:]
    print(f"training data: {TRAIN_ROWS:,} rows, churn rate {y_train.mean():.3f}; "
          f"oracle AUC on held-out rows {auc(y_test, churn_probability(x_test)):.4f}")

    print("training MLPClassifier(64, 64) ...")
    mlp = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=200, early_stopping=True,
                        n_iter_no_change=10, random_state=0)
    mlp.fit(x_train, y_train)
    print(f"  {mlp.n_iter_} epochs, held-out AUC {auc(y_test, mlp.predict_proba(x_test)[:, 1]):.4f}")

    print("training GradientBoostingClassifier(n_estimators=200, max_depth=6) ...")
    gbt = GradientBoostingClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, random_state=0)
    gbt.fit(x_train, y_train)
    print(f"  held-out AUC {auc(y_test, gbt.predict_proba(x_test)[:, 1]):.4f}")

    x_check = x_test[:2_000]
    return {
        "churn-mlp": export_churn(mlp, "churn-mlp", "Churn MLP (64x64 ReLU) on f00..f31, synthetic demo data", x_check),
        "churn-gbt": export_churn(gbt, "churn-gbt", "Churn gradient-boosted trees (200 x depth 6) on f00..f31, synthetic demo data", x_check),
    }


def write_reference_rows(models: dict[str, bytes]) -> None:
    x = make_features(np.random.default_rng(REFERENCE_SEED), REFERENCE_ROWS)
    expected = {}
    for name, model_bytes in models.items():
        label, proba = session(model_bytes).run(["label", "probabilities"], {"features": x})
        expected[name] = {
            "sha256": sha256_bytes(model_bytes),
            "churn_probability": [float(v) for v in proba[:, 1]],
            "churn_label": [int(v) for v in label],
        }
    doc = {
        "description": "5 feature rows (float32 values, written as exact decimals) and what Python "
                       "onnxruntime computes for them with examples/models/churn-*/1/model.onnx; made by "
                       "examples/models/make_models.py",
        "onnxruntime": ort.__version__,
        "tolerance": 1e-5,
        "columns": FEATURES,
        "rows": [[float(v) for v in row] for row in x],
        "expected": expected,
        "label_model": {
            "formula": "churn ~ Bernoulli(sigmoid(sum_i w[i]*f_i + 0.5*f00*f01 - 0.3*f02**2 + 0.2)), f_i ~ N(0, 1)",
            "w": [float(v) for v in W],
            "interaction_f00_f01": INTERACTION,
            "square_f02": SQUARE,
            "bias": BIAS,
        },
    }
    path = EXAMPLE_STORE / "reference_rows.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"  wrote {path.relative_to(REPO)}")


# ---------------------------------------------------------------------------------- test fixtures


def build_zipmap_clf() -> None:
    x, y = make_dataset(ZIPMAP_DATA_SEED, ZIPMAP_TRAIN_ROWS)
    clf = LogisticRegression(max_iter=1000).fit(x, y)
    onx = to_onnx(clf, initial_types=[("features", FloatTensorType([None, N_FEATURES]))],
                  target_opset=TARGET_OPSET)  # default options: ZipMap on
    model_bytes = finalize(onx, "Scoreline test fixture zipmap-clf: LogisticRegression with ZipMap output")
    sess = session(model_bytes)
    outs = {o.name: o.type for o in sess.get_outputs()}
    assert outs == {"output_label": "tensor(int64)", "output_probability": "seq(map(int64,tensor(float)))"}, outs
    (label,) = sess.run(["output_label"], {"features": x[:100]})
    assert (label == clf.predict(x[:100])).all()
    write_model(TEST_STORE, "zipmap-clf", model_bytes, {
        "description": "LogisticRegression with the default ZipMap; only output_label is mapped",
        "framework": framework(clf),
        "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, N_FEATURES], "columns": FEATURES}],
        "outputs": [{"tensor": "output_label", "column": "predicted_label", "dtype": "int64"}],
    })


def helper_model(nodes, inputs, outputs, initializers, name: str) -> onnx.ModelProto:
    """A plain onnx.helper model. Its batch dimension is the named symbol "N" (dim_param), while the
    skl2onnx models leave it unnamed (onnxruntime-node reports "" for it), so tests see both forms."""
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    return helper.make_model(graph, producer_name="scoreline-make_models",
                             opset_imports=[helper.make_opsetid("", OPSET)])


def per_feature_model() -> bytes:
    names = ["age", "tenure", "spend"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1]) for n in names]
    output = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])
    weights = numpy_helper.from_array(np.array([[0.5], [-0.25], [0.125]], dtype=np.float32), "weights")
    bias = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "bias")
    nodes = [
        helper.make_node("Concat", names, ["stacked"], axis=1),
        helper.make_node("MatMul", ["stacked", "weights"], ["weighted"]),
        helper.make_node("Add", ["weighted", "bias"], ["score"]),
    ]
    model = helper_model(nodes, inputs, [output], [weights, bias], "per_feature")
    model_bytes = finalize(model, "Scoreline test fixture per-feature: score = 0.5*age - 0.25*tenure + 0.125*spend + 1")
    feeds = {"age": np.array([[40.0], [0.0]], np.float32), "tenure": np.array([[8.0], [0.0]], np.float32),
             "spend": np.array([[16.0], [0.0]], np.float32)}
    (score,) = session(model_bytes).run(["score"], feeds)
    assert score.dtype == np.float32 and score.tolist() == [[21.0], [1.0]], score
    return model_bytes


def build_per_feature(model_bytes: bytes) -> None:
    write_model(TEST_STORE, "per-feature", model_bytes, {
        "description": "Three [N, 1] inputs, one column each; score = 0.5*age - 0.25*tenure + 0.125*spend + 1",
        "framework": f"onnx.helper (onnx-{onnx.__version__})",
        "inputs": [{"name": n, "dtype": "float32", "shape": [-1, 1], "columns": [n]} for n in ("age", "tenure", "spend")],
        "outputs": [{"tensor": "score", "column": "score", "dtype": "float32"}],
    })


def build_bad_shape(model_bytes: bytes) -> None:
    write_model(TEST_STORE, "bad-shape", model_bytes, {
        "description": "DELIBERATELY WRONG: the per-feature model (inputs age, tenure, spend) with a manifest claiming one input features [N, 3]",
        "framework": f"onnx.helper (onnx-{onnx.__version__})",
        "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 3], "columns": ["age", "tenure", "spend"]}],
        "outputs": [{"tensor": "score", "column": "score", "dtype": "float32"}],
    })


def build_double_input() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 1])
    weights = numpy_helper.from_array(np.array([[1.0], [2.0]], dtype=np.float64), "weights")
    model = helper_model([helper.make_node("MatMul", ["x", "weights"], ["y"])], [x], [y], [weights], "double_input")
    model_bytes = finalize(model, "Scoreline test fixture double-input: y = x0 + 2*x1 in float64")
    (out,) = session(model_bytes).run(["y"], {"x": np.array([[1.5, 0.25], [1e300, 0.0]], np.float64)})
    assert out.dtype == np.float64 and out.tolist() == [[2.0], [1e300]], out
    write_model(TEST_STORE, "double-input", model_bytes, {
        "description": "float64 input x [N, 2] fed by columns a, b; y = a + 2*b",
        "framework": f"onnx.helper (onnx-{onnx.__version__})",
        "inputs": [{"name": "x", "dtype": "float64", "shape": [-1, 2], "columns": ["a", "b"]}],
        "outputs": [{"tensor": "y", "column": "y", "dtype": "float64"}],
    })


def main() -> None:
    print(f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, python {sys.version.split()[0]}")
    print(f"label model w = {W.tolist()}")
    models = build_churn_models()
    write_reference_rows(models)
    print("test fixtures:")
    build_zipmap_clf()
    per_feature = per_feature_model()
    build_per_feature(per_feature)
    build_bad_shape(per_feature)
    build_double_input()
    print("done")


if __name__ == "__main__":
    main()
