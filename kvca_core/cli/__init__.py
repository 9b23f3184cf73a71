"""`kvca`: the command line. Parse, check the inputs, call one kvca_core operation, print the result.

    parser.py        the grammar: every command and option (docs/cli.md)
    commands.py      the commands on certificates, trust and revocation; ca_commands.py the `ca` ones
    output.py        what is printed, once per run (a closed pipe handled in one place)
    files.py         files read and written (a private key: mode 0600)
    main.py          the entry point: exit codes, errors, logging
"""

from kvca_core.cli.errors import EXIT_CLOSED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from kvca_core.cli.files import write_private_file
from kvca_core.cli.main import exit_code, main, settings_for, setup_logging
from kvca_core.cli.output import Output, urgency_style
from kvca_core.cli.parser import build_parser

__all__ = ["EXIT_CLOSED", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "Output", "UsageError",
           "build_parser", "exit_code", "main", "settings_for", "setup_logging", "urgency_style", "write_private_file"]
