"""Stand-in vendor bases (tests/infra/standins/) and a wheelhouse of stand-in PyPI wheels.

A stand-in base has the Python layout of a vendor's image (where the interpreter is, where its
torch lives, its version strings, its pip constraints) and none of its weight: the framework is a
stub package. The wheelhouse plays PyPI: a plain ``torch 2.6.0`` that a careless install stage
would put over the vendor's build, and the jaxlib plugins the vendor table asks for.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

from orchestrator import images

INFRA = Path(__file__).resolve().parents[1] / "infra" / "standins"

#: What each stand-in's torch says about itself, and where it lives (see the Dockerfiles).
EXPECTED: dict[str, dict[str, Any]] = {
    "cuda": {
        "version": "2.9.0a0+145a3a7bda.nv25.10",
        "path": "/usr/local/lib/python3.11/dist-packages/torch/__init__.py",
        "build": ("cuda", "13.0"),
        "extra": {},
        "jax_plugin": "jax-cuda12-plugin",
    },
    "rocm": {
        "version": "2.3.0+rocm6.2.3",
        "path": "/opt/conda/envs/py_3.11/lib/python3.11/site-packages/torch/__init__.py",
        "build": ("hip", "6.2.41133-dd7f95766"),
        "extra": {"triton": "2.3.0"},
        "jax_plugin": "jax-rocm60-plugin",
    },
    "hpu": {
        "version": "2.4.0a0+git74cd574",
        "path": "/usr/local/lib/python3.11/dist-packages/torch/__init__.py",
        "build": ("git_version", "74cd574"),
        "extra": {"habana_frameworks": "1.18.0.524"},
        "jax_plugin": None,
    },
    "xpu": {
        "version": "2.3.1+cxx11.abi",
        "path": "/usr/local/lib/python3.11/dist-packages/torch/__init__.py",
        "build": ("xpu", "20240200"),
        "extra": {
            "intel_extension_for_pytorch": "2.3.110+xpu",
            "oneccl_bindings_for_pytorch": "2.3.100+xpu",
        },
        "jax_plugin": None,
    },
}


def build_standin(client: Any, vendor: str, base_image: str) -> str:
    """Build (once per content) the stand-in base of ``vendor`` on the debootstrapped base."""
    context: dict[str, images.ContextSource] = {
        "Dockerfile": (INFRA / f"{vendor}.Dockerfile").read_bytes(),
        "stub.py": INFRA / "stub.py",
    }
    digest = images.content_hash(context, build_args={"BASE": base_image})
    tag = f"mbctl-test/standin-{vendor}:{digest[:12]}"
    if images.find_image(client, tag) is not None:
        return tag
    with io.BytesIO() as fileobj:
        images.write_context(context, fileobj)
        fileobj.seek(0)
        client.images.build(
            fileobj=fileobj,
            custom_context=True,
            tag=tag,
            buildargs={"BASE": base_image},
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    return tag


def _wheel(
    folder: Path, dist: str, version: str, module: str, requires: tuple[str, ...] = ()
) -> None:
    """A pure-Python wheel holding one module that reports ``version``."""
    stem = f"{dist.replace('-', '_')}-{version}"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n',
        f"{stem}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {dist}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: mbctl-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{stem}.dist-info/RECORD,,")
    files[f"{stem}.dist-info/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as whl:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            whl.writestr(info, text)


def make_wheelhouse(folder: Path) -> Path:
    """PyPI as seen by the stand-in builds: plain torch, NVML bindings, jax and the plugins."""
    folder.mkdir(parents=True, exist_ok=True)
    _wheel(folder, "torch", "2.6.0", "torch")
    _wheel(folder, "nvidia-ml-py", "12.560.30", "pynvml")
    _wheel(folder, "jax", "0.6.2", "jax", ("jaxlib<=0.6.2,>=0.6.2",))
    _wheel(folder, "jaxlib", "0.6.2", "jaxlib")
    _wheel(folder, "jax-cuda12-plugin", "0.6.2", "jax_cuda12_plugin", ("jax-cuda12-pjrt==0.6.2",))
    _wheel(folder, "jax-cuda12-pjrt", "0.6.2", "jax_plugins_cuda12")
    _wheel(folder, "jax-rocm60-plugin", "0.6.0", "jax_rocm60_plugin", ("jax-rocm60-pjrt==0.6.0",))
    _wheel(folder, "jax-rocm60-pjrt", "0.6.0", "jax_plugins_rocm60")
    return folder


#: Run in the final image: what `import torch` gives, and every torch distribution visible.
PROBE = """
import importlib, importlib.metadata as md, json, sys
import torch
out = {"version": torch.__version__, "path": torch.__file__,
       "build": {k: getattr(getattr(torch, "version", None), k, None) for k in ("cuda", "hip", "xpu", "git_version")},
       "torch_dists": sorted(str(d.locate_file("")) for d in md.distributions() if d.metadata["Name"] == "torch"),
       "extra": {}, "jax_plugins": {}}
for name in sys.argv[1:]:
    out["extra"][name] = importlib.import_module(name).__version__
for dist in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-rocm60-plugin"):
    try:
        out["jax_plugins"][dist] = md.version(dist)
    except md.PackageNotFoundError:
        pass
print(json.dumps(out))
"""
