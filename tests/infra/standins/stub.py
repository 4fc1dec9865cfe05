"""Write a stand-in distribution into a site-packages folder: the vendor's name, version and modules.

    python3 stub.py SITE DIST VERSION MODULE=SOURCE...

Only what mbctl's images and benchkit look at is real: the distribution metadata pip and
importlib.metadata read (``DIST-VERSION.dist-info``) and small modules that answer like the
vendor's (``torch.__version__``, ``torch.version.hip``, ``torch.cuda.is_available()``...).
``MODULE`` is a dotted module path, ``SOURCE`` its code (``\\n`` for new lines).
"""

import os
import re
import sys


def main(site, dist, version, *modules):
    files = []
    for item in modules:
        name, _, source = item.partition("=")
        parts = name.split(".")
        folder = os.path.join(site, *parts)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "__init__.py")
        with open(path, "w") as f:
            f.write(source.replace("\\n", "\n") + "\n")
        files.append(os.path.relpath(path, site))
        for depth in range(1, len(parts)):
            parent = os.path.join(site, *parts[:depth], "__init__.py")
            if not os.path.exists(parent):
                open(parent, "w").close()
                files.append(os.path.relpath(parent, site))
    info = os.path.join(site, f"{re.sub(r'[-.]+', '_', dist)}-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    with open(os.path.join(info, "INSTALLER"), "w") as f:
        f.write("vendor-standin\n")
    with open(os.path.join(info, "RECORD"), "w") as f:
        rel = os.path.relpath(info, site)
        f.write("".join(f"{p},,\n" for p in files))
        f.write("".join(f"{rel}/{n},,\n" for n in ("METADATA", "INSTALLER", "RECORD")))


if __name__ == "__main__":
    main(*sys.argv[1:])
