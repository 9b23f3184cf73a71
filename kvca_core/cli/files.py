"""Files the CLI reads (CA files, passwords, fleet files, policies) and writes (a private key: mode 0600)."""

from __future__ import annotations

import getpass
import os

from kvca_core.cli.errors import UsageError

MAX_FILE = 1024 * 1024  # a CA's files are a few KB
_MAX_FILE = MAX_FILE


def read_file(path: str, what: str, limit: int = _MAX_FILE) -> bytes:
    try:
        with open(path, "rb") as fh:
            # Read one byte past the limit rather than trust a size: a pipe or /dev/stdin has none.
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path!r} is a directory") from None
    except PermissionError:
        raise UsageError(f"{what} {path!r} cannot be read (permission denied)") from None
    except OSError as exc:
        raise UsageError(f"{what} {path!r} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:
        raise UsageError(f"{what} {path!r} is more than {limit} bytes"
                         + ("; a CA's files are a few KB" if limit == _MAX_FILE else ""))
    return data


def ask_password(path: str) -> str:
    try:
        return getpass.getpass(f"password for {path}: ")
    except EOFError:  # Ctrl-D at the prompt
        raise UsageError(f"no password given for {path!r} (use --password-file FILE)") from None


def read_password(path: str) -> str:
    data = read_file(path, "password file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"password file {path!r} is not UTF-8 text") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def write_private_file(path: str, data: bytes, *, force: bool = False) -> None:
    """Create `path` with mode 0600 from the first byte on (never widened, never world-readable)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if force and os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError as exc:  # a directory, or a read-only directory
            raise UsageError(f"cannot replace {path!r}: {exc.strerror}") from None
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"file {path!r} exists; give --force to replace it") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path!r}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # the umask could only narrow it, but say it outright
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_public_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path!r}: {exc.strerror}") from None
