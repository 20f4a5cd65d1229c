"""What is written from the settings' declarations (config/settings.py), never by hand:
tasker.env.example (the settings a compose deployment may set, with production's defaults) and
docs/settings.md (the reference).

    python -m config.reference          # write both
    python -m config.reference --check  # exit 1, naming the file, if either is out of date
"""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta
from typing import Any

from config.base import PROJECT_ROOT
from config.settings import DECLARED, Context, Setting

ENV_EXAMPLE = PROJECT_ROOT / "tasker.env.example"
REFERENCE = PROJECT_ROOT / "docs" / "settings.md"
# Defaults that depend on the machine: the example leaves them unset.
VARIES = {"TASKER_DATA_DIR", "WEB_CONCURRENCY"}


def text(value: Any) -> str:
    """A value as it is written in the environment."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 3600:g}"
    if isinstance(value, list | tuple):
        return ",".join(text(item) for item in value)
    return str(value)


def defaults(env_name: str) -> dict[str, str]:
    """Each setting's default in environment `env_name`, as written in the environment."""
    context = Context(env_name)
    shown = {}
    for setting in DECLARED:
        value = setting.default(context) if callable(setting.default) else setting.default
        context.values[setting.name] = value
        shown[setting.name] = text(value)
    return shown


def groups() -> dict[str, list[Setting]]:
    found: dict[str, list[Setting]] = {}
    for setting in DECLARED:
        found.setdefault(setting.group, []).append(setting)
    return found


def env_example() -> str:
    production = defaults("production")
    lines = [
        "# Settings for every Tasker container: copy to tasker.env and uncomment what you change.",
        "# Written by `python -m config.reference` from config/settings.py; the values are production's",
        "# defaults. Secrets and connections (database, Redis, broker, API keys) belong in .env.",
    ]
    for group, settings in groups().items():
        lines += ["", f"# --- {group}"]
        for setting in settings:
            if setting.secret:
                continue
            value = "" if setting.name in VARIES else production[setting.name]
            lines += textwrap.wrap(_plain(setting.help), 98, initial_indent="# ", subsequent_indent="#   ")
            lines.append(f"# {setting.name}={value}")
    return "\n".join(lines) + "\n"


def markdown() -> str:
    development = defaults("development")
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable with a default; a bad value stops start-up with a",
        "message naming it, e.g. `configuration error: CACHE_TTL_SECONDS must be an integer, got 'an hour'`;",
        "gunicorn reads the same settings by the same rules. `APP_ENV` (`development`, `production` or",
        "`testing`) picks the defaults that differ. In each group the settings to decide come first; those",
        "marked *tuning* (capacity and timing) suit most deployments as they are.",
        "",
        "This page is written from the settings' declarations (`config/settings.py`) by `make settings`,",
        "and `make lint` fails when it is stale; so is `tasker.env.example`, the settings a compose",
        "deployment may set, with production's defaults (copy it to `tasker.env`). `.env.example` lists",
        "the secrets docker compose needs.",
    ]
    for group, settings in groups().items():
        lines += ["", f"## {group}", "", "| variable | default | value | meaning |", "|---|---|---|---|"]
        settings = sorted(settings, key=lambda setting: setting.tuning)  # what to decide first, then tuning
        for setting in settings:
            value = development[setting.name]
            default = setting.shown or (f"`{value}`" if value else "empty")
            meaning = f"*tuning:* {setting.help}" if setting.tuning else setting.help
            lines.append(f"| `{setting.name}` | {default} | {setting.reader.rule} | {meaning} |")
    return "\n".join(lines) + "\n"


def _plain(help_text: str) -> str:
    return help_text.replace("`", "")


def main(argv: list[str]) -> int:
    written = {ENV_EXAMPLE: env_example(), REFERENCE: markdown()}
    if "--check" in argv:
        stale = [path for path, body in written.items() if not path.exists() or path.read_text() != body]
        for path in stale:
            print(f"{path.relative_to(PROJECT_ROOT)} is out of date: run python -m config.reference")
        return 1 if stale else 0
    for path, body in written.items():
        path.write_text(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
