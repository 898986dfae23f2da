"""What the pickle's scan and the signature's check add to loading a model.

    python bench/trust_bench.py [--repeat 20]

For each shipped model and a 100-tree forest (about 1 MB), in this process: joblib.load of its
bytes (the unpickling itself, the baseline), the scan of those bytes, the check of its
signature (signed here with a key made for the run), and the whole checked load
(card.load_checked: hash, versions, scan, unpickling, golden answers) without and with trusted
keys; medians of --repeat runs, warm (the libraries imported). Then the import of
model-signing, which only a server with trusted keys pays, once per process.
"""

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

from modelfly.card import load_checked, save_model  # noqa: E402
from modelfly.catalog import card_file, model_file  # noqa: E402
from modelfly.pickle_scan import Scanner  # noqa: E402
from modelfly.signatures import Verifier, keygen, sign  # noqa: E402
from train import numeric_features  # noqa: E402


def median_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def fresh_import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, timeout=120).stdout)


def row(base: Path, verifier: Verifier, repeat: int) -> str:
    name, data, card = base.name, model_file(base).read_bytes(), card_file(base).read_bytes()
    assert verifier.refusal(base, data, card) is None
    unpickle = median_ms(lambda: joblib.load(io.BytesIO(data)), repeat)
    scan = median_ms(lambda: Scanner().scan(data), repeat)
    signature = median_ms(lambda: verifier.refusal(base, data, card), repeat)
    plain = median_ms(lambda: load_checked(base, name, "1.0.0"), repeat)
    signed = median_ms(lambda: load_checked(base, name, "1.0.0", Scanner(), verifier), repeat)
    return (f"| {name} | {len(data):,} | {unpickle:.2f} | {scan:.2f} | {signature:.2f} | "
            f"{plain:.2f} | {signed:.2f} | {scan / unpickle:.2f}x | "
            f"{(scan + signature) / signed:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trust-bench-"))
    try:
        models = work / "models"
        shutil.copytree(ROOT / "models", models)
        private, public = keygen(work / "keys")
        verifier = Verifier([public])
        print(f"median of {args.repeat} runs, ms\n")
        print("| model | file bytes | unpickle | scan | signature | checked load | "
              "checked load, signed | scan / unpickle | (scan + signature) / checked load |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(
            *load_iris(return_X_y=True))
        save_model(forest, name="forest", version="1.0.0", out_dir=models, flat=True,
                   features=numeric_features(load_iris().feature_names),
                   golden_inputs=[[5.9, 3.0, 5.1, 1.8]])
        for name in ("iris", "penguins", "diabetes", "forest"):
            sign(models / name, private)
            print(row(models / name, verifier, args.repeat))
        seconds = fresh_import_seconds("model_signing.verifying")
        print(f"\nimporting model-signing in a fresh interpreter: {seconds * 1000:.0f} ms, once "
              "per process with trusted keys")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
