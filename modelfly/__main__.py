"""modelfly's command line:

    python -m modelfly add MODEL_FILE --name N --version V --example F [--sign-key KEY]
    python -m modelfly keygen DIR
    python -m modelfly sign NAME [--version V] --key KEY
    python -m modelfly worker [--processes N]      (modelfly/worker.py, the jobs' worker)

`add` adds a model the user made (a joblib file) to the models directory, with a card inferred
from the estimator and the example (a CSV file with a header, or JSON lines of records), after
scanning its pickle and loading it back through the server's checks. `keygen` writes a key pair,
`sign` signs a model version already there (after the same checks). Exit codes: 0 done, 2 nothing
written (the message says why and what to pass).
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
    add.add_argument("--sign-key", type=Path, metavar="PRIVATE_KEY",
                     help="sign the model and its card with this key (python -m modelfly "
                          "keygen)")
    keygen = commands.add_parser(
        "keygen", help="write a signing key pair into DIR",
        description="Write modelfly-signing.key (private, mode 0600: keep it out of images "
                    "and repositories) and modelfly-signing.pub (for MODELFLY_TRUSTED_KEYS).")
    keygen.add_argument("directory", metavar="DIR", type=Path)
    sign = commands.add_parser(
        "sign", help="sign a model version already in the models directory",
        description="Check a model version (its pickle scanned, its card's checks), then sign "
                    "its file and card together: <version>.sig beside them.")
    sign.add_argument("name", metavar="NAME")
    sign.add_argument("--version", help="the version to sign (default: the model's default)")
    sign.add_argument("--key", required=True, type=Path, metavar="PRIVATE_KEY")
    for command in (add, sign):
        command.add_argument(
            "--models-dir", type=Path,
            default=Path(os.environ.get("MODELFLY_MODELS_DIR") or DEFAULT_MODELS_DIR),
            help="the models directory (env MODELFLY_MODELS_DIR; default models/)")
    worker = commands.add_parser(
        "worker", help="run the jobs of the queue (MODELFLY_QUEUE_URL, else SQLite)",
        description="Run the queued jobs: huey's consumer with N worker processes.")
    worker.add_argument("--processes", type=positive_int, default=1,
                        help="worker processes (default 1)")
    args = parser.parse_args(argv)
    if args.command in ("worker", "keygen"):
        return args
    for option in ("name", "version"):
        value = getattr(args, option)
        if value is not None and not is_safe_name(value):
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
    import io

    import joblib

    from modelfly.card import save_model
    from modelfly.pickle_scan import Scanner, UnsafePickle
    from modelfly.settings import pickle_allow

    allowed = pickle_allow()
    try:
        data = args.model_file.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot load {args.model_file}: {error.strerror}") from error
    try:
        Scanner(allowed).scan(data)
    except UnsafePickle as error:
        raise ValueError(f"cannot load {args.model_file}: {error}") from error
    try:
        estimator = joblib.load(io.BytesIO(data))
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
                      data={"example": args.example.name, "example_rows": len(example)},
                      pickle_allow=allowed, sign_key=args.sign_key)


def sign(args: argparse.Namespace) -> str:
    from modelfly.card import load_checked
    from modelfly.catalog import Catalog
    from modelfly.errors import ModelRefused
    from modelfly.pickle_scan import Scanner
    from modelfly.settings import pickle_allow
    from modelfly.signatures import sign

    catalog = Catalog.scan(args.models_dir)
    if args.name not in catalog.files:
        raise ValueError(f"no model {args.name!r} in {args.models_dir}; models: "
                         f"{', '.join(catalog.names) or 'none'}")
    version = args.version or catalog.defaults[args.name]
    if version not in catalog.files[args.name]:
        raise ValueError(f"model {args.name!r} has no version {version!r}; versions: "
                         f"{', '.join(catalog.versions(args.name))}")
    base = catalog.files[args.name][version]
    _, reason = load_checked(base, args.name, version, Scanner(pickle_allow()))
    if reason is not None:
        raise ModelRefused(f"model {args.name!r} {version} is not signed: {reason}")
    return f"signed {args.name} {version}: {sign(base, args.key)}"


def keygen(args: argparse.Namespace) -> str:
    from modelfly.signatures import keygen

    private, public = keygen(args.directory)
    return (f"private key: {private} (mode 0600; keep it in a secret store, never in an image "
            f"or a repository)\npublic key:  {public} (give it to the servers: "
            "MODELFLY_TRUSTED_KEYS)")


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
        if args.command == "add":
            print(summary(add(args)))
        else:
            print(sign(args) if args.command == "sign" else keygen(args))
    except (CannotInfer, ModelflyError, ValueError, OSError) as error:
        print(f"modelfly {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
