"""The shell blocks of the README and docs/, run as a reader types them, their outputs compared.

A page's blocks: each ```bash fence, paired with the fence right after it (nothing but blank lines
between) as the output it must print. HTML comments, invisible on the page, steer the runner (a
page's `<!-- tasker: NAME=value -->`, its Tasker's settings, is read by the test):

    <!-- not run: why -->            just before a bash fence: the block is shown, never run
    <!-- only on: embedded -->       just before a bash fence: its output is that stack's
    <!-- setup                       commands run before what follows (a state the text describes)
    curl ...
    -->

`Reader` keeps one bash process per page, so variables set by a block (KEY, ID) are there for the
next, and learns the values a shown output held (ids, keys, secrets) from the real one, so a later
block that names a shown id runs with the real one, as a reader would paste theirs. Outputs are
compared after `normalised`: what differs from run to run (ids, times, durations) by shape only,
JSON by value (PostgreSQL keeps its own key order); of an HTTP answer's headers, those the page
shows; a line `...` of a shown output stands for any lines.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*\n", re.M | re.S)  # in a list, indented
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*\Z", re.S)
ONLY_ON = re.compile(r"<!--\s*only on:\s*(\w+)\s*-->\s*\Z", re.S)
SETUP = re.compile(r"<!--\s*setup\n(.*?)-->", re.S)
LEARNED = [
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    re.compile(r"tsk_[0-9A-Za-z]+"),
    re.compile(r"whsec_[0-9A-Za-z+/=]+"),
    re.compile(r"msg_[0-9a-f]{32}"),  # a webhook delivery's id
]
VARYING = [
    (LEARNED[0], "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (LEARNED[1], "<key>"),
    (LEARNED[2], "<secret>"),
    (LEARNED[3], "<message>"),
    (re.compile(r'("next_cursor":\s*)"[\w-]+"'), r'\1"<cursor>"'),
    # Durations and ages, by shape: a number stays a number (0 in JSON, so it still parses).
    (re.compile(r'("\w*(?:age_seconds|_ms|duration_seconds|elapsed\w*)":\s*)-?[0-9.]+(e-?\d+)?'), r"\g<1>0"),
    (re.compile(r"\b\d+(\.\d+)? ?ms\b"), "<n> ms"),
    (re.compile(r"\b\d+ (milliseconds|bytes)\b"), r"<n> \1"),
    (re.compile(r"^id: \d+$", re.M), "id: <n>"),  # an event's revision
    (re.compile(r"(;t=|^Retry-After: )\d+", re.M), r"\1<n>"),  # seconds to a limit's reset
    (re.compile(r'("p(?:50|95|99)":\s*)[0-9.e-]+'), r"\g<1>0"),  # percentiles of durations
    (re.compile(r"(_(?:timestamp_)?seconds(?:\{[^}]*\})?) [0-9.e+-]+$", re.M), r"\1 <n>"),  # a gauge of time
]
ELIDED = "..."  # a line of its own in a shown output: any lines may stand there


@dataclass
class Block:
    commands: str
    output: str | None  # None: the page shows no output for it
    line: int = 0
    skipped: str = ""  # why the block is not run
    only_on: str = ""  # the one stack whose output the page shows (embedded, postgres)
    hidden: bool = False  # a setup comment's commands


def page_blocks(text: str, elsewhere: tuple[str, ...] = ()) -> list[Block]:
    """The page's blocks in order; those under a heading named in `elsewhere` (run by another
    test) are left out."""
    blocks: list[Block] = []
    events = [(m.start(), "fence", m) for m in FENCE.finditer(text)]
    events += [(m.start(), "setup", m) for m in SETUP.finditer(text)]
    last_end = 0
    for start, kind, match in sorted(events, key=lambda event: event[0]):
        if start < last_end:
            continue  # a fence inside a setup comment
        between, line = text[last_end:start], text.count("\n", 0, start) + 1
        if _under(text, start, elsewhere):
            last_end = match.end()
            continue
        if kind == "setup":
            blocks.append(Block(match.group(1), None, line, hidden=True))
            last_end = match.end()
            continue
        body = re.sub(rf"(?m)^{match.group(1)}", "", match.group(3))
        if match.group(2) == "bash":
            skipped, only = NOT_RUN.search(between), ONLY_ON.search(between)
            blocks.append(
                Block(body, None, line, skipped.group(1) if skipped else "", only.group(1) if only else "")
            )
        elif blocks and blocks[-1].output is None and not blocks[-1].hidden and not between.strip():
            blocks[-1].output = body
        last_end = match.end()
    return blocks


def _under(text: str, position: int, headings: tuple[str, ...]) -> bool:
    """Whether `position` is in a section whose heading is one of `headings`."""
    found = list(re.finditer(r"^(#+) (.*)$", text[:position], re.M))
    levels: dict[int, str] = {}
    for heading in found:
        level = len(heading.group(1))
        levels = {k: v for k, v in levels.items() if k < level}
        levels[level] = heading.group(2).strip()
    return any(title in headings for title in levels.values())


def normalised(text: str) -> str:
    for pattern, placeholder in VARYING:
        text = pattern.sub(placeholder, text)
    return "\n".join(_canonical(line.rstrip()) for line in text.strip().splitlines())


def _canonical(line: str) -> str:
    """A line that is a JSON object or array (or an event's `data:`), its keys sorted and whole
    floats as integers: PostgreSQL's JSON keeps its own key order, and 120.0 where SQLite has 120."""
    prefix = "data: " if line.startswith("data: ") else ""
    try:
        value = json.loads(line[len(prefix) :])
    except ValueError:
        return line
    if not isinstance(value, dict | list):
        return line
    return prefix + json.dumps(_whole(value), sort_keys=True, separators=(",", ":"))


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


class Shell:
    """A bash process whose output (stdout and stderr, as a terminal shows them) is read per block."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True, start_new_session=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def run(self, commands: str, timeout: float = 180, check: bool = True) -> str:
        """The block's output; fails if its last command failed (with `check`). The block is sourced
        from a file with no input, as a terminal user's commands have the terminal, not the next
        commands, there (`docker compose exec` reads its input)."""
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
            raise AssertionError(f"the block ran over {timeout} s:\n{commands}\n{''.join(output)}") from None
        finally:
            os.unlink(script.name)
        status = int(line.split()[1])
        assert status == 0 or not check, f"the block exited {status}:\n{commands}\n{''.join(output)}"
        return "".join(output).rstrip("\n")

    def value(self, name: str) -> str:
        return self.run(f'printf "%s\\n" "${name}"')

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # a block left something running: end its group
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process.stdout.close()


class Reader:
    """A reader of one page at a shell: runs its blocks in order and checks each output shown.
    `replace` maps what the page writes to what this run uses (its port, say)."""

    def __init__(self, shell: Shell, page: str, replace: dict[str, str] | None = None):
        self.shell, self.page = shell, page
        self.values: dict[str, str] = dict(replace or {})

    def substituted(self, text: str) -> str:
        for shown, real in sorted(self.values.items(), key=lambda item: -len(item[0])):
            text = text.replace(shown, real)
        return text

    def learn(self, shown: str, real: str) -> None:
        for pattern in LEARNED:
            pairs = zip(pattern.findall(shown), pattern.findall(real), strict=False)
            self.values.update({a: b for a, b in pairs if a not in self.values})

    def run(self, block: Block, timeout: float = 120) -> str:
        where = f"{self.page}:{block.line}"
        # A block with an output shown is judged by it (a curl error, say, is part of it).
        output = self.shell.run(self.substituted(block.commands), timeout, check=block.output is None)
        if block.output is None:
            return output
        expected = self.substituted(block.output)
        self.learn(expected, output)
        expected = self.substituted(expected)
        assert compared(output, expected) == normalised(expected), (
            f"{where} shows:\n{block.output}\ngot:\n{output}"
        )
        return output


def same_json(real: str, shown: str) -> bool:
    """Whether both are the same JSON: as a whole, or line by line (one document a line)."""
    try:
        return json.loads(real) == json.loads(shown)
    except ValueError:
        pass
    pairs = list(zip(real.splitlines(), shown.splitlines(), strict=False))
    if len(real.splitlines()) != len(shown.splitlines()):
        return False
    try:
        return all(json.loads(a) == json.loads(b) for a, b in pairs)
    except ValueError:
        return False


def compared(real: str, shown: str) -> str:
    """The real output as the page shows it: normalised, and for an HTTP answer (`curl -i`, from
    its status line on) with only the headers the page names (all of each, so a header sent twice
    shows twice)."""
    real, shown = normalised(real), normalised(shown)
    if same_json(real, shown):  # PostgreSQL's JSON orders keys its own way, and keeps 120.0
        return shown
    if ELIDED in shown.splitlines():
        parts = [re.escape(part) for part in re.split(r"(?m)^\.\.\.$", shown)]
        return shown if re.fullmatch(".*".join(parts), real, re.S) else real
    status = re.compile(r"(?m)^HTTP/[\d.]+ \d{3}")
    shown_at, real_at = status.search(shown), status.search(real)
    if not (shown_at and real_at and "\n\n" in real[real_at.start() :]):
        return real
    names = {
        line.split(":", 1)[0].lower()
        for line in shown[shown_at.start() :].partition("\n\n")[0].splitlines()[1:]
    }
    head, _, body = real[real_at.start() :].partition("\n\n")
    first, *headers = head.splitlines()
    kept = [line for line in headers if line.split(":", 1)[0].lower() in names]
    return "\n".join([real[: real_at.start()] + first, *kept, "", body])
