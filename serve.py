"""The production server: `python serve.py --bind 127.0.0.1:8000` (server/cli.py).

`serve:app` is its WSGI app, for any WSGI server; the server itself lives in server/.
"""

from server.cli import main


def __getattr__(name: str):
    # `serve:app`, built on first access rather than at import.
    if name == "app":
        from server.app import create_app

        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)


if __name__ == "__main__":
    main()
