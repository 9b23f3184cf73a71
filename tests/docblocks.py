"""Shell blocks of a Markdown document that its tests run as written, and the one way they run them.

A block is run when an HTML comment marks it, on the line right before its fence:

    <!-- run: operator -->        (docs/devices.md: the label says who runs it)
    ```sh
    kvca ca create fleet ...
    ```

`marked_blocks(doc, marker)` finds them in order; `run_bash(script, cwd, env)` runs one with bash
(-e, -u, pipefail: a failing command fails the block, as the reader would see it fail).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Block:
    label: str  # the marker's group (`operator`), or the marker itself when it has none
    script: str


def marked_blocks(doc: Path | str, marker: str) -> list[Block]:
    """Every ```sh block right after `<!-- MARKER -->`, in document order. `marker` is a regular
    expression; its first group, if any, is each block's label (`run: (operator|device)`)."""
    text = Path(doc).read_text() if isinstance(doc, Path) else doc
    blocks = []
    for found in re.finditer(rf"<!-- ({marker}) -->\n```sh\n(.*?)```", text, re.S):
        whole, *inner, script = found.groups()
        blocks.append(Block(inner[0] if inner else whole, script))
    return blocks


def run_bash(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`script` run by `bash -euo pipefail` in `cwd` with `env`. The script runs in a process group of
    its own, and whatever it left running (a server started with `&`) is killed when it ends, or
    when it has not ended after `timeout` seconds (returncode -1). Output goes to files, not pipes,
    so a background process holding them open never keeps this waiting."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # nothing of it left running
            process.wait()
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        if code == -1:
            stderr += f"\n[docblocks: the script had not ended after {timeout:g} s and was killed]"
        return subprocess.CompletedProcess(process.args, code, out.read().decode(errors="replace"), stderr)


async def run_bash_async(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`run_bash` off the event loop (for tests that serve the Functions app on it meanwhile)."""
    return await asyncio.to_thread(run_bash, script, cwd, env, timeout)
