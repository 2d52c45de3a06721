"""How every command of the project ends on bad input: one line, `error: <file>: <problem>`, on
standard error and exit status 2, instead of a Python traceback. `--debug`, accepted by every
command, shows the traceback instead.

    if __name__ == "__main__":
        sys.exit(run(main))

A scoring command whose files are written and closed ends with `leave(run(main))` instead: the
interpreter's own shutdown, which tears down torch's and OpenVINO's modules one by one, took 1.0 s
on the 2-core AMD EPYC of docs/speed.md, and the command is done before it. A command
whose output pipe is closed by its reader (`| head`) ends quietly with status 141, as a shell
reports a command that SIGPIPE ended.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence

_debug = False


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


class InputError(Exception):
    """Input a user can fix (a missing, unreadable or malformed file, a wrong setting); the message
    names the file and the problem."""


# Bad input as the libraries say it: files that cannot be read, values out of range.
BAD_INPUT = (InputError, OSError, ValueError)


def describe(error: BaseException) -> str:
    """The error in one line, naming the file where the error knows it."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def debugging() -> bool:
    """Whether the command was given --debug."""
    return _debug


def fail(error: BaseException) -> int:
    """Say what went wrong in one line and give the exit status 2; under --debug, raise it again
    (call it in an `except` block, so that the traceback is the original's)."""
    if _debug:
        raise error
    print(f"error: {describe(error)}", file=sys.stderr)
    return 2


BROKEN_PIPE_STATUS = 141  # as a shell reports a command ended by SIGPIPE (128 + 13)


def stdout_broken() -> bool:
    """Whether standard output is a pipe that nothing reads any more."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def quiet_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit raises no second
    BrokenPipeError (Python's documented way after a broken pipe)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main` with `argv` (default: the command line) less `--debug`; bad input
    ends in one line and exit status 2 (see `fail`)."""
    global _debug
    arguments = list(sys.argv[1:] if argv is None else argv)
    _debug = "--debug" in arguments
    arguments = [argument for argument in arguments if argument != "--debug"]
    try:
        return main(arguments) or 0
    except BrokenPipeError as error:
        if not stdout_broken():  # another pipe or socket: an error like any other
            return fail(error)
        quiet_stdout()  # what reads the output (`| head`) stopped reading: nothing to say, nowhere to say it
        return BROKEN_PIPE_STATUS
    except BAD_INPUT as error:
        return fail(error)
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # SystemExit("message"), as a library may raise it
            return fail(InputError(exit_.code))
        raise


def leave(status: int) -> None:
    """End the process now with `status`, without the interpreter's shutdown (1.0 s once torch and
    timm are imported, on the machine of docs/speed.md): the logs and standard streams are
    flushed first. Only for a command's last line, once every file it writes is closed; atexit
    handlers do not run (threads still alive are idle pool workers)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None: the process was started with that descriptor closed
            with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more can reach it
                stream.flush()
    os._exit(status)
