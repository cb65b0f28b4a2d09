"""The `manacore` console script: `cli.run` inside the settings of a short-lived process.

A command lives for a fraction of a second and keeps nearly every object it makes (modules,
model classes and schemas, the resolved estate), so the cyclic garbage collector only costs
time (~20 ms of the imports alone); and freeing all of it at exit costs ~70 ms, as much as the
command itself. So the collector is off and the process leaves with `os._exit` once its output
is flushed (nothing here registers atexit work). `cli.run` stays an ordinary function for tests
and other callers."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    gc.disable()
    from cli import run

    code = run(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
