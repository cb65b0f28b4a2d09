"""Run the `manacore` command line in-process, as the console script does, and keep what it
printed and how it ended."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import cli


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None  # anything that escaped the command (a bug: a traceback)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    exception: BaseException | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.run(list(args))
        except Exception as exc:  # a bug: reported to the test, which fails on it
            exception, code = exc, 1
    return Result(code, out.getvalue(), err.getvalue(), exception)
