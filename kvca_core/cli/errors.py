"""The CLI's exit codes and its one error of its own."""

from __future__ import annotations

from kvca_core.errors import KvcaError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_CLOSED = 141  # standard output's reader went away (`kvca list | head`): 128 + SIGPIPE, as for any tool


class UsageError(KvcaError):
    """A command line, input file or setting that is wrong, found before anything changed (exit 2)."""

    exit_code = EXIT_USAGE
