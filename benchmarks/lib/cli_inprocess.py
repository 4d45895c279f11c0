"""``aethex ARGS`` in this process: the CLI's ``main(argv)`` with the environment, standard
input and outputs a process would have. For the tests of the CLI and the cluster demo's set-up:
a process per command spent one to three seconds importing the app on a 2-core machine."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Mapping, Sequence

from mediaserver.cli import main


def run_cli(
    env: Mapping[str, str], args: Sequence[str], stdin: str | None = None
) -> tuple[int, str, str]:
    """(exit status, standard output, standard error) of ``aethex ARGS`` run with exactly
    ``env`` as its environment; the process's environment and streams are restored after."""
    out, err = io.StringIO(), io.StringIO()
    saved, saved_stdin = dict(os.environ), sys.stdin
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as exc:  # argparse's and the CLI's way out, as the process's
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved)
    return status, out.getvalue(), err.getvalue()
