"""One error type for bad user input, and the wrapper every entry point runs under.

A `UserError` means "the user gave us something we cannot use": the CLI prints one line
`error: <message>` on stderr and exits with status 2 — no traceback. Messages name the culprit
(file and line, flag, path) and say what to do.
"""
import functools
import sys

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input from the user (file, flag, list line). Printed as one line, exit status 2."""


def cli_entry(main):
    """Decorate a `main()` so that UserError becomes a one-line message and exit status 2.

    KeyboardInterrupt exits with 130 and a short message (training saves its own checkpoint first).
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapper


def one_line(exc, limit=150):
    """An exception's (or any object's) text on one line — messages must stay one line — cut to `limit`
    characters with "..." at the end when longer."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
