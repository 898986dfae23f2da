"""The modelfly command line: predict, info and health against a running server.

    python -m client predict 5.9 3.0 5.1 1.8
    python -m client predict --json '{"sepal_length": 5.9, ...}'
    python -m client predict --input rows.csv --output csv > answers.csv
    python -m client info --model penguins
    python -m client health --url http://127.0.0.1:5000
    python -m client submit --input big.csv --model penguins      (prints the job's id)
    python -m client job JOB_ID --wait --output csv > answers.csv

--url, --token, --timeout and --retries go before or after the command.

Exit codes: 0 ok, 2 usage error (bad arguments, unreadable input), 3 the server refused the
input (4xx), 4 unauthorized (401/403), 5 server unreachable or unavailable, 6 server fault (5xx).
"""

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from client.errors import BadInput, ModelflyError, NotFound, ServerError, Unauthorized, Unavailable
from client.model_client import DEFAULT_RETRIES, DEFAULT_URL, ModelClient

EXIT_OK, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_UNAUTHORIZED, EXIT_UNAVAILABLE, EXIT_SERVER = (
    0, 2, 3, 4, 5, 6)
EXIT_CODES = [(BadInput, EXIT_BAD_INPUT), (NotFound, EXIT_BAD_INPUT),
              (Unauthorized, EXIT_UNAUTHORIZED), (Unavailable, EXIT_UNAVAILABLE),
              (ServerError, EXIT_SERVER), (ModelflyError, EXIT_SERVER)]


def server_options(with_defaults: bool) -> argparse.ArgumentParser:
    """--url, --token, --timeout and --retries, taken before the command and after it.

    The main parser holds the defaults; each command's copy defaults to SUPPRESS, so an option
    given before the command is not undone by the command's parser, and one given after wins.
    """
    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("server options (before or after the command)")
    group.add_argument("--url", default=default(os.environ.get("MODELFLY_URL", DEFAULT_URL)),
                       help=f"server URL (env MODELFLY_URL; default {DEFAULT_URL})")
    group.add_argument("--token", default=default(os.environ.get("MODELFLY_TOKEN")),
                       help="auth token (env MODELFLY_TOKEN)")
    group.add_argument("--timeout", type=float, default=default(30.0),
                       help="seconds to wait for each answer (default 30)")
    group.add_argument("--retries", type=int, default=default(DEFAULT_RETRIES),
                       help=f"retries on connection errors and 502/503/504 (default "
                            f"{DEFAULT_RETRIES})")
    return options


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m client", description="Call a modelfly server.",
        parents=[server_options(with_defaults=True)],
        epilog="exit codes: 0 ok, 2 usage, 3 bad input, 4 unauthorized, 5 unreachable, "
               "6 server fault")
    after = [server_options(with_defaults=False)]
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", parents=after,
                                  help="predict one row, a JSON value or a file")
    predict.add_argument("values", nargs="*", type=float, help="one row of numbers")
    predict.add_argument("--json", help="features as JSON: a row, rows, a record or records")
    predict.add_argument("--input", metavar="FILE",
                         help="CSV (with a header) or JSON lines; '-' reads standard input")
    predict.add_argument("--input-format", choices=["csv", "jsonl"],
                         help="format of --input (default: from its extension, else jsonl)")
    predict.add_argument("--output", choices=["jsonl", "csv"], default="jsonl",
                         help="format of batch answers on standard output (default jsonl)")
    predict.add_argument("--batch-size", type=int, default=1000,
                         help="rows sent per request (default %(default)s)")
    predict.add_argument("--model", help="model name (default: the server's default)")
    predict.add_argument("--version", dest="model_version",
                         help="model version (default: the model's default)")

    info = commands.add_parser("info", parents=after, help="describe a model")
    info.add_argument("--model", help="model name (default: the server's default)")
    info.add_argument("--version", dest="model_version",
                      help="model version (default: the model's default)")
    commands.add_parser("health", parents=after, help="is the server up")

    submit = commands.add_parser("submit", parents=after,
                                 help="submit a file as a job; prints the job's id")
    submit.add_argument("--input", metavar="FILE", required=True,
                        help="CSV (with a header, sent as it is) or JSON lines of rows or "
                             "records; '-' reads standard input")
    submit.add_argument("--input-format", choices=["csv", "jsonl"],
                        help="format of --input (default: from its extension, else jsonl)")
    submit.add_argument("--model", help="model name (default: the server's default)")
    submit.add_argument("--version", dest="model_version",
                        help="model version (default: the model's default)")
    job = commands.add_parser("job", parents=after,
                              help="a job's status or, with --wait, its answers")
    job.add_argument("job_id", metavar="JOB_ID")
    job.add_argument("--wait", action="store_true",
                     help="wait for the answers, with a progress bar, and print them")
    job.add_argument("--output", choices=["jsonl", "csv"], default="jsonl",
                     help="format of the answers with --wait (default jsonl)")

    args = parser.parse_args(argv)
    if args.command == "predict":
        given = [bool(args.values), args.json is not None, args.input is not None]
        if sum(given) != 1:
            parser.error("predict takes exactly one of: values, --json, --input")
        if args.batch_size < 1:
            parser.error("--batch-size must be at least 1")
    return args


def read_rows(stream: TextIO, fmt: str) -> list[Any]:
    """Rows of a CSV file with a header (as records) or of a JSON-lines file."""
    if fmt == "csv":
        return [{key: _csv_value(value) for key, value in record.items()}
                for record in csv.DictReader(stream)]
    return [json.loads(line) for line in stream if line.strip()]


def _csv_value(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def batches(rows: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def answer_rows(answer: dict) -> Iterable[dict]:
    """One {"prediction", "probabilities"?} per row of a batch answer."""
    probabilities = answer.get("probabilities") or [None] * len(answer["predictions"])
    for prediction, probs in zip(answer["predictions"], probabilities, strict=True):
        yield {"prediction": prediction} if probs is None else \
            {"prediction": prediction, "probabilities": probs}


def write_answers(rows: Iterable[dict], fmt: str, out: TextIO) -> None:
    writer = None  # a CSV header once, from the first answer's columns
    for row in rows:
        if fmt == "jsonl":
            out.write(json.dumps(row) + "\n")
            continue
        flat = {"prediction": row["prediction"],
                **{f"p_{k}": v for k, v in (row.get("probabilities") or {}).items()}}
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(flat), lineterminator="\n")
            writer.writeheader()
        writer.writerow(flat)


def predict_file(client: ModelClient, args: argparse.Namespace) -> None:
    fmt = args.input_format or ("csv" if str(args.input).endswith(".csv") else "jsonl")
    if args.input == "-":
        rows = read_rows(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8"), fmt)
    else:
        with open(args.input, encoding="utf-8", newline="") as stream:
            rows = read_rows(stream, fmt)
    progress = tqdm(total=len(rows), unit="row", file=sys.stderr,
                    disable=len(rows) <= args.batch_size)

    def answers() -> Iterator[dict]:
        for batch in batches(rows, args.batch_size):
            yield from answer_rows(client.predict(batch, args.model, args.model_version))
            progress.update(len(batch))

    with progress:
        write_answers(answers(), args.output, sys.stdout)


def submit_file(client: ModelClient, args: argparse.Namespace) -> str:
    fmt = args.input_format or ("csv" if str(args.input).endswith(".csv") else "jsonl")
    data = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
    if fmt == "csv":
        return client.submit_csv(data, args.model, args.model_version).id
    rows = read_rows(io.StringIO(data.decode("utf-8")), "jsonl")
    return client.submit(rows, args.model, args.model_version).id


def show_job(client: ModelClient, args: argparse.Namespace) -> None:
    job = client.job(args.job_id)
    if not args.wait:
        print(json.dumps(job.status()))
        return
    progress = tqdm(unit="row", file=sys.stderr)

    def advance(state: dict) -> None:
        progress.total = state["rows"]
        progress.update(state["rows_done"] - progress.n)

    with progress:
        answer = job.wait(progress=advance)
    write_answers(answer_rows(answer), args.output, sys.stdout)


def run(args: argparse.Namespace) -> None:
    with ModelClient(args.url, token=args.token, timeout=(3.05, args.timeout),
                     retries=args.retries) as client:
        if args.command == "health":
            print(json.dumps(client.health()))
        elif args.command == "info":
            print(json.dumps(client.info(args.model, args.model_version)))
        elif args.command == "submit":
            print(submit_file(client, args))
        elif args.command == "job":
            show_job(client, args)
        elif args.input is not None:
            predict_file(client, args)
        else:
            features = args.values if args.values else json.loads(args.json)
            print(json.dumps(client.predict(features, args.model, args.model_version)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ModelflyError as error:
        print(f"error: {error}", file=sys.stderr)
        return next(code for kind, code in EXIT_CODES if isinstance(error, kind))
    except (OSError, ValueError) as error:  # unreadable input file, invalid --json or row
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
