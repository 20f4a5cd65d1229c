"""The images the container test needs, made here because none can be pulled on this machine.

- `python:3.11-slim`: a Debian bookworm root from debootstrap (the mirror apt is configured with),
  Python 3.11 in a venv at /usr/local/python on PATH, so pip behaves as in the official image.
- The third-party images docker-compose.yml names (postgres:15, redis:7, nginx:1.27,
  prom/prometheus, and rabbitmq:3 for the RabbitMQ override): stand-ins built from Debian's packages
  of the same major version (`standins/`), test fixtures only.
- A wheelhouse of requirements.txt, mounted into `podman build` with a pip.conf (no index).

Each is made once per machine and kept while its inputs are unchanged (a label on the image holds
their hash). An image that exists without that label, or that `podman pull` fetches, is a real one
and is used as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LABEL = "tasker.test.inputs"
BASE = "docker.io/library/python:3.11-slim"
STANDINS = {
    "postgres": "docker.io/library/postgres:15",
    "redis": "docker.io/library/redis:7",
    "nginx": "docker.io/library/nginx:1.27",
    "prometheus": "docker.io/prom/prometheus:v2.53.2",
    "rabbitmq": "docker.io/library/rabbitmq:3",
}
CACHE = Path(
    "/var/cache/tasker-containers" if os.access("/var/cache", os.W_OK) else "~/.cache/tasker-containers"
)
PIP_CONF = "[global]\nno-index = true\nfind-links = /wheels\n"
SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, **kwargs)


def digest(*parts: str | bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode() if isinstance(part, str) else part)
        sha.update(b"\0")
    return sha.hexdigest()[:16]


def label_of(image: str) -> str | None:
    """The inputs label of a local image; '' for an image without one; None if absent."""
    found = subprocess.run(
        ["podman", "image", "inspect", image, "--format", f'{{{{index .Labels "{LABEL}"}}}}'],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        return None
    value = found.stdout.strip()
    return "" if value in ("", "<no value>") else value


def wanted(image: str, inputs: str) -> bool:
    """True if `image` must be built: no real image and no stand-in made from these inputs."""
    label = label_of(image)
    if label == inputs or label == "":
        return False  # ours and current, or a real image
    if label is None:
        pulled = subprocess.run(["podman", "pull", "-q", image], capture_output=True, timeout=120)
        if pulled.returncode == 0:
            return False
    return True


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 sources or a sources.list line)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M) and "security" not in stanza:
                found = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if found:
                    return found.group(1)
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt").glob("sources.list.d/*.list"))]:
        if path.exists():
            found = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", path.read_text(), re.M)
            if found:
                return found.group(1)
    raise RuntimeError(f"no Debian {SUITE} mirror in apt's sources")


def build_base() -> None:
    mirror = debian_mirror()
    inputs = digest(SUITE, BASE_PACKAGES, mirror, "venv /usr/local/python")
    if not wanted(BASE, inputs):
        return
    with tempfile.TemporaryDirectory(prefix="tasker-base-") as tmp:
        root = Path(tmp) / "root"
        print(f"building {BASE} (debootstrap {SUITE})", file=sys.stderr)
        run("debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(root), mirror,
            stdout=subprocess.DEVNULL)  # fmt: skip
        run("chroot", str(root), "python3", "-m", "venv", "/usr/local/python")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        changes = [
            "ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            f"LABEL {LABEL}={inputs}",
            'CMD ["python3"]',
        ]
        args = [arg for change in changes for arg in ("--change", change)]
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            run("podman", "import", "-q", *args, "-", BASE, stdin=tar.stdout, stdout=subprocess.DEVNULL)


def build_standin(name: str) -> None:
    folder = HERE / "standins" / name
    base_id = run("podman", "image", "inspect", BASE, "--format", "{{.Id}}", capture_output=True).stdout
    files = sorted(folder.iterdir())
    inputs = digest(base_id.strip(), *(f.name for f in files), *(f.read_bytes() for f in files))
    image = STANDINS[name]
    if not wanted(image, inputs):
        return
    print(f"building the stand-in {image}", file=sys.stderr)
    run("podman", "build", "-q", "--pull=never", "--network=host", "--label", f"{LABEL}={inputs}",
        "-t", image, str(folder), stdout=subprocess.DEVNULL)  # fmt: skip


# What `pip install` of a package of one's own builds it with (docs/own-task-types.md: In the image).
BUILD_TOOLS = ["setuptools==80.9.0"]


def wheelhouse() -> Path:
    """requirements.txt as wheels for the base's Python (3.11), and the build tools a package of
    one's own needs, made once per set of pins."""
    requirements = (ROOT / "requirements.txt").read_text() + "\n".join(BUILD_TOOLS)
    folder = CACHE.expanduser() / f"wheels-{digest(requirements)}"
    if not (folder / ".complete").exists():
        print("building the wheelhouse", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        # Markers are read for the base's Python (3.11.2), not this one: take every pin, without
        # its marker and without dependencies (the file pins them all).
        pins = [line.split(";")[0].split("#")[0].strip() for line in requirements.splitlines()]
        pins = [pin for pin in pins if pin and not pin.startswith("-")]
        run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), *pins,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        (folder / "pip.conf").write_text(PIP_CONF)
        (folder / ".complete").touch()
    return folder


def build_tasker(context: Path, tag: str = "tasker:latest") -> None:
    """The project's Dockerfile (or the one in `context`), as a user builds it, with pip pointed at
    the wheelhouse."""
    wheels = wheelhouse()
    run("podman", "build", "-q", "--pull=never", "--network=host", "--format=docker",
        "--volume", f"{wheels}:/wheels:ro", "--volume", f"{wheels / 'pip.conf'}:/etc/pip.conf:ro",
        "-t", tag, str(context), stdout=subprocess.DEVNULL)  # fmt: skip


def prepare() -> None:
    """Everything but the Tasker image: the base and the stand-ins."""
    build_base()
    for name in STANDINS:
        build_standin(name)


if __name__ == "__main__":
    prepare()
    build_tasker(ROOT)
