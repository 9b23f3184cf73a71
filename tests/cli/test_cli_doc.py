"""docs/cli.md against the real parser (kvca_core/cli/parser.py `build_parser`): every command has a
section there (a heading `kvca <command>`), every option of the command and every value an option
chooses from appears in its section, the global options in "Global options", and every `kvca ...`
command line the document shows in a shell block parses. Argparse only: no vault, no settings."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from kvca_core.cli.errors import UsageError
from kvca_core.cli.parser import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
_HEADING = re.compile(r"^(#{1,6}) (.*)$", re.M)
_COMMAND_HEADING = re.compile(r"`(kvca [a-z -]+)`")
_SHELL_BLOCK = re.compile(r"```(?:sh|bash)\n(.*?)```", re.S)
_OPERATORS = set("();<>|&")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                              argparse.ArgumentParser]]:
    """Every command that runs something (`ca policy set`, not `ca`), with its parser."""
    children = _subparsers(parser)
    if not children:
        return [(path, parser)]
    return [leaf for name, child in children.items() for leaf in leaf_commands(child, (*path, name))]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def sections(text: str) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading of the same or a higher level."""
    found = list(_HEADING.finditer(text))
    result = {}
    for index, heading in enumerate(found):
        level = len(heading.group(1))
        end = next((h.start() for h in found[index + 1:] if len(h.group(1)) <= level), len(text))
        result[heading.group(2).strip()] = text[heading.end():end]
    return result


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def undocumented(text: str, parser: argparse.ArgumentParser) -> list[str]:
    """What the parser has and `text` does not say, one line each."""
    by_command = {}
    for heading, body in sections(text).items():
        named = _COMMAND_HEADING.match(heading)
        if named:
            by_command[named.group(1)] = body
    problems = []
    globals_ = _options(parser)
    global_section = sections(text).get("Global options", "")
    for action in globals_:
        problems += [f"global option {o} is not under 'Global options'" for o in action.option_strings
                     if not _mentions(global_section, o)]
    global_dests = {a.dest for a in globals_}
    for path, command_parser in leaf_commands(parser):
        command = " ".join(("kvca", *path))
        body = by_command.get(command)
        if body is None:
            problems.append(f"{command}: no section (a heading `{command}`)")
            continue
        for action in _options(command_parser):
            if action.dest in global_dests:
                continue
            problems += [f"{command}: option {o} is not in its section" for o in action.option_strings
                         if not _mentions(body, o)]
            problems += [f"{command}: {action.option_strings[0]}'s value {c!r} is not in its section"
                         for c in action.choices or () if not _mentions(body, str(c))]
    return problems


def command_lines(text: str) -> list[list[str]]:
    """Every `kvca ...` command in the document's shell blocks, as argv: a line continued with a
    backslash is one line; a command ends at `|`, `;`, `&&`, `)`, a redirection or a comment."""
    commands = []
    for block in _SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            for index, token in enumerate(tokens):
                starts = index == 0 or set(tokens[index - 1]) <= _OPERATORS
                if token == "kvca" and starts:
                    argv = []
                    for word in tokens[index + 1:]:
                        if set(word) <= _OPERATORS:
                            break
                        argv.append(word)
                    commands.append(argv)
    return commands


def unparsable(text: str) -> list[str]:
    problems = []
    for argv in command_lines(text):
        try:
            build_parser().parse_args(argv)
        except (UsageError, SystemExit) as exc:
            problems.append(f"kvca {shlex.join(argv)}: {exc}")
    return problems


def test_every_command_and_option_of_the_parser_is_in_the_doc():
    assert undocumented(DOC.read_text(), build_parser()) == []


def test_every_kvca_command_line_in_the_doc_parses():
    text = DOC.read_text()
    shown = {argv[0] for argv in command_lines(text) if argv and not argv[0].startswith("-")}
    # The examples reach most commands, so the check below is not vacuous.
    assert len(command_lines(text)) >= 30 and {"ca", "request", "revoke", "sign-csr", "ledger"} <= shown
    assert unparsable(text) == []


def test_the_checks_fail_on_a_doc_that_forgets_an_option_or_shows_a_bad_line():
    text = DOC.read_text()
    parser = build_parser()
    # One option's mentions taken out of its command's section.
    start = text.index("### `kvca sweep`")
    end = text.index("### `kvca list`")
    forgetful = text[:start] + text[start:end].replace("--dry-run", "") + text[end:]
    assert undocumented(forgetful, parser) == ["kvca sweep: option --dry-run is not in its section"]
    # A command's heading taken out.
    headless = text.replace("### `kvca cancel`", "### Withdrawing a request")
    assert undocumented(headless, parser) == ["kvca cancel: no section (a heading `kvca cancel`)"]
    # A command line with an option that does not exist, and one missing a required option.
    wrong = text + "\n```sh\nkvca renew api --soon\nout=$(kvca --json crl corp) || true\n```\n"
    problems = unparsable(wrong)
    assert len(problems) == 2 and "--soon" in problems[0] and "--out" in problems[1]
