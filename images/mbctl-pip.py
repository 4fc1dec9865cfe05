"""mbctl's install-stage helper, run by the base's own interpreter: what pip may install, and how.

    mbctl-pip.py plan --framework NAMES --out DIR [-r FILE]... [REQUIREMENT]...
        Writes DIR/constraints.txt and DIR/requirements.txt. The constraints pin the framework
        packages (NAMES, comma-separated) wherever the interpreter finds them (our venv, the
        system's dist-packages, a conda env: a vendor's torch lives in any of them) with the
        packages they depend on, every package of our venv, and the lines of $PIP_CONSTRAINT. A
        requirement on a framework package whose vendor build does not satisfy it is left out with
        a note: the vendor's build is what the image measures, even a pre-release such as Gaudi's
        2.4.0a0 below ``torch>=2.4``. Other packages of the image's Python may be shadowed by a
        newer copy in the venv.
    mbctl-pip.py compile DIR
        Byte-compiles DIR with PEP 552 checked-hash pycs (no timestamps: two builds give the same
        files), paths recorded as they will be in the final image.
    mbctl-pip.py manifest DIR OUT
        Lists ``sha256  /path`` of every file installed under DIR into DIR/OUT, so two builds can be
        compared file by file (``mbctl lock verify --rebuild``).

Standard library and pip's vendored ``packaging`` only: it runs on every vendor's Python (3.8+).
"""

import argparse
import compileall
import hashlib
import os
import py_compile
import re
import sys
from importlib import metadata

from pip._vendor.packaging.requirements import InvalidRequirement, Requirement


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed():
    """Name -> distribution on sys.path; the first one wins, as for import."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) not in found:
            found[canonical(name)] = dist
    return found


def framework_closure(have, framework):
    """The framework packages the interpreter has, with everything they need that it has too
    (torch's sympy, filelock...): the vendor tested them together."""
    todo = [key for key in framework if key in have]
    closure = set()
    while todo:
        key = todo.pop()
        if key in closure:
            continue
        closure.add(key)
        for line in have[key].requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonical(req.name)
            if dep in have:
                todo.append(dep)
    return closure


def read_lines(path):
    lines = []
    with open(path) as f:
        for raw in f:
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def plan(args):
    wanted = list(args.requirements)
    for path in args.requirement:
        wanted.extend(read_lines(path))
    framework = {canonical(n) for n in args.framework.split(",") if n}
    have = installed()
    # Pinned: the vendor's framework wherever it lives (with what it needs), and our venv, as
    # before. Other packages of the image's Python may get a newer copy in the venv (a CPU
    # torch wheel needs a newer setuptools than Debian's).
    kept = framework_closure(have, framework)
    venv = os.path.realpath(sys.prefix)
    for key, dist in have.items():
        if os.path.realpath(str(dist.locate_file(""))).startswith(venv + os.sep):
            kept.add(key)
    keep = []
    for line in wanted:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            keep.append(line)  # options and hashed lock lines pass through to pip
            continue
        key = canonical(req.name)
        if key not in have or req.specifier.contains(have[key].version, prereleases=True):
            keep.append(line)
            continue
        where = have[key].locate_file("")
        if key in framework:
            print(f"mbctl: {line} left out: the base provides {req.name} {have[key].version} at {where} (vendor build kept)")
        else:
            print(f"mbctl: {line}: the base's {req.name} {have[key].version} is not pinned; the venv gets its own copy")
            kept.discard(key)
            keep.append(line)
    pins = {key: f"{key}=={have[key].version}" for key in sorted(kept)}
    # NGC pins its own stack through PIP_CONSTRAINT; carry it over so it holds even where a
    # command-line --constraint would take the variable's place.
    for path in os.environ.get("PIP_CONSTRAINT", "").split():
        if os.path.isfile(path):
            for line in read_lines(path):
                try:
                    pins.setdefault(canonical(Requirement(line).name), line)
                except InvalidRequirement:
                    continue
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "constraints.txt"), "w") as f:
        f.write("".join(line + "\n" for _, line in sorted(pins.items())))
    with open(os.path.join(args.out, "requirements.txt"), "w") as f:
        f.write("".join(line + "\n" for line in keep))
    print(f"mbctl: {len(pins)} packages of {sys.executable} pinned, {len(keep)} requirements to install")


def compile_tree(args):
    root = os.path.abspath(args.dir)
    if not os.path.isdir(root):
        return
    ok = compileall.compile_dir(
        root,
        quiet=1,
        stripdir=root,
        prependdir="/",
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        workers=1,
    )
    # As pip does: a module that does not compile (a py2 test file in a wheel) is left as source.
    print(f"mbctl: byte-compiled {root} with checked-hash pycs" + ("" if ok else " (some files skipped)"))


def manifest(args):
    """DIR/OUT: ``sha256  /path`` of every file under DIR, paths as in the final image, sorted."""
    root = os.path.abspath(args.dir)
    target = os.path.join(root, args.out.lstrip("/"))
    lines = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = os.path.join(folder, name)
            if path == target or os.path.islink(path):
                continue
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            lines.append(f"{digest}  /{os.path.relpath(path, root)}\n")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        f.writelines(sorted(lines, key=lambda line: line[66:]))
    print(f"mbctl: {len(lines)} installed files listed in {args.out}")


def main():
    parser = argparse.ArgumentParser(prog="mbctl-pip.py")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("plan")
    p.add_argument("--framework", default="")
    p.add_argument("--out", required=True)
    p.add_argument("-r", "--requirement", action="append", default=[])
    p.add_argument("requirements", nargs="*")
    p.set_defaults(run=plan)
    c = commands.add_parser("compile")
    c.add_argument("dir")
    c.set_defaults(run=compile_tree)
    m = commands.add_parser("manifest")
    m.add_argument("dir")
    m.add_argument("out")
    m.set_defaults(run=manifest)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
