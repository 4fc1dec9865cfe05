"""The scripted benchmark image the Docker backend and Compose tests run: one script, every outcome.

``main.py MODE`` plays a benchmark that is good, fails (exit 3), hangs, runs out of memory, or
prints garbage; ``prepare.py`` writes the dataset cache. Built on the debootstrapped base image.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest

SCRIPT = '''
import json, os, sys, time

def emit(event, **fields):
    print(json.dumps({"mbctl": 1, "event": event, "t": time.time(), **fields}), flush=True)

def probe():
    """What the job sees of its mounts and identity, reported as a meta event."""
    try:
        open("/data/probe", "w").close()
        data = "writable"
    except OSError as exc:
        data = exc.strerror
    with open("/results/out.txt", "w") as out:
        out.write(os.environ["MBCTL_JOB_ID"])
    ready = "/data/prepared.txt"
    emit("meta", kind="probe", data={
        "data": data,
        "prepared": open(ready).read() if os.path.exists(ready) else None,
        "uid": os.getuid(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("MBCTL_")},
    })

mode = sys.argv[1]
if mode == "good":
    emit("start", bench="good", argv=sys.argv[1:], versions={"scripted": "1"}, pid=os.getpid())
    print("plain output line")
    print("a line on stderr", file=sys.stderr, flush=True)
    probe()
    for i in range(5):
        emit("rate", value=100.0 + i, units="items/s", task="train")
    emit("end", status="done")
elif mode == "fails":
    emit("rate", value=5.0, units="items/s", task="train")
    sys.exit(3)
elif mode == "hangs":
    emit("rate", value=1.0, units="items/s", task="train")
    time.sleep(600)
elif mode == "oom":
    emit("rate", value=1.0, units="items/s", task="train")
    hoard = []
    for _ in range(128):  # 2 GiB at most: far past the test's limit, finite if limits are off
        hoard.append(b"x" * (16 << 20))
elif mode == "garbage":
    sys.stdout.buffer.write(b"\\xff\\xfe binary \\x00 junk\\n")
    print('{"mbctl": 1, "event": "rate", "value": "fast"}')
    print('{"mbctl": 1, "event": ')
    print("x" * 3_000_000)
    emit("rate", value=7.0, units="items/s", task="train")
'''

PREPARE = """
with open("/data/prepared.txt", "w") as out:
    out.write("ready")
print("dataset written")
"""

DOCKERFILE = """
FROM {base}
RUN ln -sf /usr/bin/python3 /usr/local/bin/python \\
 && mkdir -p /data /results /opt/mbctl/benchmark && chmod 1777 /data /results
WORKDIR /opt/mbctl/benchmark
COPY main.py prepare.py ./
ENTRYPOINT ["python", "main.py"]
"""


def _context(files: dict[str, str]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@dataclass(frozen=True)
class Scripted:
    ref: str
    id: str


@pytest.fixture(scope="session", name="scripted")
def scripted_image(docker_client: Any, base_image: str) -> Scripted:
    """The scripted benchmark image, tagged by its content so that a warm engine skips the build."""
    files = {
        "Dockerfile": DOCKERFILE.format(base=base_image),
        "main.py": textwrap.dedent(SCRIPT),
        "prepare.py": textwrap.dedent(PREPARE),
    }
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]
    tag = f"mbctl-test/scripted:{digest}"
    try:
        image = docker_client.images.get(tag)
    except Exception:  # ImageNotFound: build it
        image, _ = docker_client.images.build(
            fileobj=_context(files), custom_context=True, tag=tag, rm=True
        )
    return Scripted(tag, image.id)
