"""modelfly's command line: `python -m modelfly add MODEL_FILE --name N --version V --example F`
and `python -m modelfly worker [--processes N]` (modelfly/worker.py, the jobs' worker).

`add` adds a model the user made (a joblib file) to the models directory, with a card inferred from
the estimator and the example (a CSV file with a header, or JSON lines of records), after
loading it back through the server's checks. Exit codes: 0 added, 2 nothing written (the
message says why and what to pass).
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from modelfly.catalog import SAFE_NAME_RULE, is_safe_name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from modelfly.settings import DEFAULT_MODELS_DIR

    parser = argparse.ArgumentParser(prog="python -m modelfly",
                                     description="Manage the models modelfly serves.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add", help="add a fitted estimator (a joblib file) with an inferred card",
        description="Add a fitted estimator to the models directory, its card inferred from "
                    "it and an example of its inputs, then load it back through the checks.")
    add.add_argument("model_file", metavar="MODEL_FILE", type=Path,
                     help="a joblib file of a fitted scikit-learn estimator")
    add.add_argument("--name", required=True, help="the model's name in requests")
    add.add_argument("--version", required=True, help="its version, e.g. 1.0.0")
    add.add_argument("--example", required=True, type=Path, metavar="EXAMPLE",
                     help="a few to a few thousand rows of what the model takes: a CSV file "
                          "with a header (.csv), or JSON lines of records")
    add.add_argument("--labels", metavar="COLUMN",
                     help="a column of the example holding the true answers: dropped from "
                          "the inputs, it gives the card's metrics")
    add.add_argument("--models-dir", type=Path,
                     default=Path(os.environ.get("MODELFLY_MODELS_DIR") or DEFAULT_MODELS_DIR),
                     help="where to write (env MODELFLY_MODELS_DIR; default models/)")
    worker = commands.add_parser(
        "worker", help="run the jobs of the queue (MODELFLY_QUEUE_URL, else SQLite)",
        description="Run the queued jobs: huey's consumer with N worker processes.")
    worker.add_argument("--processes", type=positive_int, default=1,
                        help="worker processes (default 1)")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return args
    for option in ("name", "version"):
        value = getattr(args, option)
        if not is_safe_name(value):
            parser.error(f"--{option} {value!r} {SAFE_NAME_RULE}")
    return args


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return int(text)


def read_example(path: Path) -> Any:
    """The example as a DataFrame: CSV (by its .csv suffix) or JSON lines of records."""
    import pandas

    if path.suffix.lower() == ".csv":
        return pandas.read_csv(path)
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    if not all(isinstance(record, dict) for record in records):
        raise ValueError(f"{path.name}: each line must be a JSON object (a record)")
    return pandas.DataFrame.from_records(records)


def add(args: argparse.Namespace) -> dict:
    import joblib

    from modelfly.card import save_model

    try:
        estimator = joblib.load(args.model_file)
    except Exception as error:
        raise ValueError(f"cannot load {args.model_file} with joblib: "
                         f"{type(error).__name__}: {error}") from error
    if not callable(getattr(estimator, "predict", None)):
        raise ValueError(f"{args.model_file} holds a {type(estimator).__name__}, not an "
                         "estimator with predict()")
    try:
        example = read_example(args.example)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the example {args.example}: {error}") from error
    return save_model(estimator, name=args.name, version=args.version, example=example,
                      labels=args.labels, out_dir=args.models_dir,
                      data={"example": args.example.name, "example_rows": len(example)})


def summary(card: dict) -> str:
    """What was inferred, as a short table, and a curl line that calls the model."""
    lines = [f"added {card['name']} {card['version']}: {card['task']}, "
             f"{card['input']} input, missing values "
             f"{'accepted' if card['missing_values'] else 'refused'}"]
    if card["classes"]:
        lines.append("classes: " + ", ".join(card["classes"]))
    if card["metrics"]:
        lines.append("metrics on the example: " + ", ".join(
            f"{key} {value}" for key, value in card["metrics"].items()))
    width = max(len(feature["name"]) for feature in card["features"])
    lines += ["", f"{'feature':<{width}}  type      values", f"{'-' * width}  --------  ------"]
    for feature in card["features"]:
        values = ", ".join(feature.get("categories", []))
        lines.append(f"{feature['name']:<{width}}  {feature['type']:<8}  "
                     f"{values[:60] + ('...' if len(values) > 60 else '')}".rstrip())
    body = json.dumps({"model": card["name"], "version": card["version"],
                       "features": card["golden"][0]["features"]})
    lines += ["", "call it (a running server serves it after kill -HUP of python serve.py):",
              f"curl -s -X POST 127.0.0.1:8000/predict -H 'Content-Type: application/json' "
              f"-d '{body}'"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "worker":
        from modelfly.worker import run

        return run(args.processes)
    from modelfly.errors import ModelflyError
    from modelfly.inference import CannotInfer

    try:
        card = add(args)
    except (CannotInfer, ModelflyError, ValueError, OSError) as error:
        print(f"modelfly add: error: {error}", file=sys.stderr)
        return 2
    print(summary(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
