"""The README's Docker compose section, run as a user would type it, and its outputs compared.

`Shell` is one bash process per stack, so variables set by one block (KEY, ID) are there for the
next. `section_blocks` pairs each bash block of the section with the output block shown after it;
`normalised` takes out what differs from run to run (ids, times, keys, secrets).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SECTION = "### Docker compose"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
VARYING = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"tsk_[0-9A-Za-z]+"), "<key>"),
    (re.compile(r"whsec_[0-9A-Za-z+/=]+"), "<secret>"),
]


@dataclass
class Block:
    commands: str
    output: str | None  # None: the README shows no output for it


def section_blocks(readme: Path) -> list[Block]:
    text = readme.read_text()
    start = text.index(f"\n{SECTION}\n")
    section = text[start : text.index("\n### ", start + 1)]
    blocks: list[Block] = []
    last_end = 0
    for fence in FENCE.finditer(section):
        language, body = fence.group(1), fence.group(2)
        between = section[last_end : fence.start()]
        follows_a_command = bool(blocks) and blocks[-1].output is None and not between.strip()
        if language == "bash":
            blocks.append(Block(body, None))
        elif follows_a_command:
            blocks[-1].output = body
        last_end = fence.end()
    return blocks


def normalised(text: str) -> str:
    for pattern, placeholder in VARYING:
        text = pattern.sub(placeholder, text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


class Shell:
    """A bash process whose output (stdout and stderr, as a terminal shows them) is read per block."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def run(self, commands: str, timeout: float = 180) -> str:
        """The block's output; fails if its last command failed. The block is sourced from a file
        with no input, as a terminal user's commands have the terminal, not the next commands, there
        (`docker compose exec` reads its input)."""
        assert self.process.stdin is not None
        marker = f"__end_{uuid.uuid4().hex}"
        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
            script.write(commands)
        self.process.stdin.write(f"source {script.name} < /dev/null; echo; echo {marker} $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while not (line := self.lines.get(timeout=max(deadline - time.monotonic(), 0))).startswith(
                marker
            ):
                output.append(line)
        except queue.Empty:
            raise AssertionError(
                f"the README's block ran over {timeout} s:\n{commands}\n{''.join(output)}"
            ) from None
        finally:
            os.unlink(script.name)
        status = int(line.split()[1])
        assert status == 0, f"the README's block exited {status}:\n{commands}\n{''.join(output)}"
        return "".join(output).rstrip("\n")

    def value(self, name: str) -> str:
        return self.run(f'printf "%s\\n" "${name}"')

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(30)
        self.process.stdout.close()
