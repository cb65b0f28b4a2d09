"""Run the `manacore` command line in-process, as the console script does, and keep what it
printed and how it ended. An exception escaping the command is a traceback a user would see:
the test fails on it, with that traceback."""

from __future__ import annotations

import contextlib
import io
import traceback
from dataclasses import dataclass

import cli


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.run(list(args))
        except Exception as exc:
            raise AssertionError(f"manacore {' '.join(args)} ended in a traceback:\n"
                                 + "".join(traceback.format_exception(exc))) from None
    return Result(code, out.getvalue(), err.getvalue())
