"""``mbctl build``, ``mbctl push`` and ``mbctl lock show|verify``: benchmark images and their lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.console import err, out
from orchestrator.cli.options import ExcludeOpt, Format, FormatOpt, SelectOpt, SuiteOpt, VendorOpt

if TYPE_CHECKING:
    from rich.status import Status

    from orchestrator.images import BuildOptions, Built, ImageSpec, Lock, SourceInfo
    from orchestrator.vendors import Vendor

RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        envvar="MBCTL_REGISTRY",
        help="Registry part of the tags (default: localhost).",
    ),
]
BaseImageOpt = Annotated[
    list[str] | None,
    typer.Option("--base-image", help="VENDOR=REF: the vendor image to build on (repeatable)."),
]
CaBundleOpt = Annotated[
    Path | None,
    typer.Option("--ca-bundle", help="PEM CA bundle to trust in the build and the images."),
]
WheelhouseOpt = Annotated[
    Path | None,
    typer.Option("--wheelhouse", help="Folder of wheels: pip installs from it only (no network)."),
]
BuildArgOpt = Annotated[
    list[str] | None,
    typer.Option("--build-arg", help="K=V build argument, seen by pip (repeatable)."),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="Rebuild everything, existing tags included.")
]
PlatformOpt = Annotated[
    str | None, typer.Option("--platform", help="Target platform, e.g. linux/arm64.")
]
NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help="Network of the build steps: none (prove a wheelhouse build is offline), host.",
    ),
]
BuildDryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the tags and Dockerfiles; build nothing.")
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show every line of the engine's output.")
]
LockOpt = Annotated[Path, typer.Option("--lock", help="Images lock file to write or update.")]
LockArg = Annotated[Path, typer.Argument(help="Images lock file.")]
#: images.LOCK_FILE, spelled out so that loading the CLI does not import the images library
DEFAULT_LOCK = Path("images.lock.yaml")


def _vendor(name: str | None) -> Vendor:
    from orchestrator import vendors

    return vendors.get(name).vendor if name else vendors.detect().vendor


def _image_names(
    suite: str, vendor: Vendor, select: list[str] | None, exclude: list[str] | None
) -> list[str]:
    from orchestrator import config, images
    from orchestrator.errors import ConfigError

    chosen = config.load_selected(suite, select=select or (), exclude=exclude or ())
    names = images.image_names(chosen, vendor)
    for name, reason in images.unsupported(chosen, vendor).items():
        err.print(f"note: no image of {name}: {reason}")
    if not names:
        raise ConfigError(f"no benchmark of suite {chosen.name!r} runs on {vendor.value}")
    return names


def _options(
    registry: str | None,
    base_image: list[str] | None,
    ca_bundle: Path | None,
    wheelhouse: Path | None,
    build_arg: list[str] | None,
    platform: str | None,
) -> BuildOptions:
    """The build options of the command line, checked (every one of them shapes the tags)."""
    from orchestrator import images

    options = images.BuildOptions(
        registry=registry or images.DEFAULT_REGISTRY,
        base_images=images.parse_base_images(base_image or ()),
        ca_bundle=ca_bundle,
        wheelhouse=wheelhouse,
        build_args=images.parse_pairs(build_arg or (), "--build-arg"),
        platform=platform,
    )
    options.check()
    return options


def _current_specs(
    client: object, names: list[str], vendor: Vendor, options: BuildOptions
) -> tuple[ImageSpec, list[ImageSpec]]:
    """What the current tree builds with ``options``, its vendor base found in the engine."""
    from orchestrator import config, images
    from orchestrator.errors import ImageError

    base_name = images.base_image_name(vendor, options.base_images)
    base = images.resolve_base(client, base_name, fetch=False)
    if base.digest is None:
        raise ImageError(
            f"base image {base_name} is not in the engine: the current tree's tags are unknown",
            hint=f"mbctl build --vendor {vendor.value} first",
        )
    return images.plan_images(
        names, vendor, options, base, source=images.source_info(config.benchmarks_root())
    )


class _Progress:
    """The engine's output as a spinner on the current Dockerfile step (every line with --verbose)."""

    def __init__(self, status: Status, *, verbose: bool) -> None:
        self.status = status
        self.verbose = verbose

    def __call__(self, name: str, line: str) -> None:
        from rich.markup import escape

        if line.startswith("Step ") or not self.verbose:
            self.status.update(f"{escape(name)}: {escape(line[:110])}")
        if self.verbose:
            err.print(f"[dim]{escape(name)} |[/] {escape(line)}", highlight=False)


def build(
    suite: SuiteOpt = "smoke",
    vendor: VendorOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    registry: RegistryOpt = None,
    base_image: BaseImageOpt = None,
    ca_bundle: CaBundleOpt = None,
    wheelhouse: WheelhouseOpt = None,
    build_arg: BuildArgOpt = None,
    no_cache: NoCacheOpt = False,
    platform: PlatformOpt = None,
    network: NetworkOpt = None,
    dry_run: BuildDryRunOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build the images of a suite's benchmarks for one vendor (content-hash tags; existing ones are kept)."""
    from orchestrator import config, images

    chosen_vendor = _vendor(vendor)
    names = _image_names(suite, chosen_vendor, select, exclude)
    options = _options(registry, base_image, ca_bundle, wheelhouse, build_arg, platform)
    base_name = images.base_image_name(chosen_vendor, options.base_images)
    source = images.source_info(config.benchmarks_root())
    if dry_run:
        _dry_run(names, chosen_vendor, options, base_name, source)
        return
    client = images.engine()
    started = time.monotonic()
    with err.status(f"resolving {base_name}") as status:
        progress = _Progress(status, verbose=verbose)
        base = images.resolve_base(client, base_name, platform=platform, log=progress)
        base_spec, specs = images.plan_images(names, chosen_vendor, options, base, source=source)
        built = images.build_images(
            client, base_spec, specs, no_cache=no_cache, network=network, log=progress
        )
    if base.local:
        err.print(
            f"note: {base_name} has no registry digest (imported or built here); its image ID is recorded"
        )
    _print_built(built)
    err.print(
        f"{sum(not b.cached for b in built)} built, {sum(b.cached for b in built)} up to date "
        f"in {time.monotonic() - started:.1f}s"
    )


def _dry_run(
    names: list[str], vendor: Vendor, options: BuildOptions, base_name: str, source: SourceInfo
) -> None:
    from orchestrator import images
    from orchestrator.errors import BackendUnavailable

    try:
        base = images.resolve_base(images.engine(), base_name, fetch=False)
    except BackendUnavailable:
        base = images.BaseRef(name=base_name)
    if base.digest is None:
        err.print(
            f"note: {base_name} is not in a reachable engine: FROM is not pinned and the tags "
            "will differ from those of a real build"
        )
    base_spec, specs = images.plan_images(names, vendor, options, base, source=source)
    for spec in (base_spec, *specs):
        out.rule(spec.tag)
        out.print(spec.dockerfile, markup=False, highlight=False, end="")


def _print_built(built: list[Built]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("image", "status", "tag", "id"):
        table.add_column(col)
    for item in built:
        status = "[dim]up to date[/]" if item.cached else "[green]built[/]"
        table.add_row(
            item.spec.name, status, item.spec.tag, item.image_id.removeprefix("sha256:")[:12]
        )
    out.print(table)


def push(
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            envvar="MBCTL_REGISTRY",
            help="Registry to push to: HOST, HOST:PORT or HOST:PORT/PATH.",
        ),
    ],
    suite: SuiteOpt = "smoke",
    vendor: VendorOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    lock: LockOpt = DEFAULT_LOCK,
    base_image: BaseImageOpt = None,
    ca_bundle: CaBundleOpt = None,
    wheelhouse: WheelhouseOpt = None,
    build_arg: BuildArgOpt = None,
    platform: PlatformOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Push the images the current tree builds (same options as `mbctl build`) and pin their digests in the lock."""
    from orchestrator import images

    chosen_vendor = _vendor(vendor)
    names = _image_names(suite, chosen_vendor, select, exclude)
    options = _options(None, base_image, ca_bundle, wheelhouse, build_arg, platform)
    client = images.engine()
    _, specs = _current_specs(client, names, chosen_vendor, options)
    with err.status(f"pushing to {registry}") as status:
        entries = images.push_images(
            client,
            names,
            chosen_vendor,
            registry.strip("/"),
            versions={spec.name: spec.version for spec in specs},
            log=_Progress(status, verbose=verbose),
        )
    current = images.read_lock(lock) if lock.exists() else images.Lock()
    images.write_lock(current.updated(chosen_vendor, entries), lock)
    for name, entry in entries.items():
        out.print(f"{name:<16} {entry.ref}", markup=False, highlight=False)
    err.print(f"lock: {lock}")


lock_app = typer.Typer(
    help="Show or verify an images lock (repo@sha256 per benchmark and vendor).",
    no_args_is_help=True,
)


@lock_app.command("show")
def lock_show(file: LockArg = DEFAULT_LOCK, fmt: FormatOpt = Format.TABLE) -> None:
    """Print the images a lock pins."""
    from orchestrator import images

    lock = images.read_lock(file)
    if fmt is Format.JSON:
        out.print_json(lock.model_dump_json())
        return
    _print_lock(lock)


def _print_lock(lock: Lock) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("benchmark", "vendor", "ref", "base"):
        table.add_column(col, overflow="fold")
    for name, vendor, entry in lock.entries():
        base = f"{entry.base.name} ({'image ID' if entry.base.local else 'digest'} {entry.base.digest[7:19]})"
        table.add_row(name, vendor.value, entry.ref, base)
    out.print(table)


@lock_app.command("deps")
def lock_deps(
    suite: SuiteOpt = "smoke",
    vendor: VendorOpt = None,
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    base_image: BaseImageOpt = None,
    ca_bundle: CaBundleOpt = None,
    wheelhouse: WheelhouseOpt = None,
    build_arg: BuildArgOpt = None,
    platform: PlatformOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Pin and hash each benchmark's requirements for a vendor (requirements.<vendor>.lock), resolved in its base image."""
    from orchestrator import images

    chosen_vendor = _vendor(vendor)
    names = _image_names(suite, chosen_vendor, select, exclude)
    options = _options(None, base_image, ca_bundle, wheelhouse, build_arg, platform)
    client = images.engine()
    base_name = images.base_image_name(chosen_vendor, options.base_images)
    with err.status(f"resolving in {base_name}") as status:
        progress = _Progress(status, verbose=verbose)
        base = images.resolve_base(client, base_name, platform=platform, log=progress)
        written = images.lock_dependencies(
            client, names, chosen_vendor, options, base, log=progress
        )
    for name, (path, count) in written.items():
        out.print(f"{name:<16} {count:>3} packages  {path}", markup=False, highlight=False)
    skipped = sorted(set(names) - set(written))
    if skipped:
        err.print(f"no requirements, nothing to lock: {', '.join(skipped)}")


RebuildOpt = Annotated[
    bool,
    typer.Option(
        "--rebuild",
        help="Instead: build the suite's images again from scratch and compare their installed files.",
    ),
]


@lock_app.command("verify")
def lock_verify(
    file: LockArg = DEFAULT_LOCK,
    vendor: Annotated[
        str | None, typer.Option("--vendor", help="Only this vendor's images (default: all).")
    ] = None,
    rebuild: RebuildOpt = False,
    suite: SuiteOpt = "smoke",
    select: SelectOpt = None,
    exclude: ExcludeOpt = None,
    base_image: BaseImageOpt = None,
    wheelhouse: WheelhouseOpt = None,
    build_arg: BuildArgOpt = None,
    network: NetworkOpt = None,
) -> None:
    """Pull every locked image by digest and check its image ID (exit 4 on any mismatch); with
    --rebuild, check that a rebuild from the same tree, locks and wheelhouse installs the same files."""
    from rich.markup import escape

    from orchestrator import images
    from orchestrator.errors import ImageError

    if rebuild:
        _verify_rebuild(vendor, suite, select, exclude, base_image, wheelhouse, build_arg, network)
        return
    lock = images.read_lock(file)
    client = images.engine()
    with err.status(f"verifying {file}"):
        results = images.verify_lock(client, lock, vendor=vendor)
    for r in results:
        mark = "[green]ok[/]  " if r.ok else "[red]FAIL[/]"
        out.print(f"{mark} {escape(r.name)} ({r.vendor.value}) {escape(r.ref)}: {escape(r.detail)}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise ImageError(f"{len(failed)} of {len(results)} locked images failed verification")
    if not results:
        raise ImageError(f"{file} pins no image" + (f" for {vendor}" if vendor else ""))


def _verify_rebuild(
    vendor: str | None,
    suite: str,
    select: list[str] | None,
    exclude: list[str] | None,
    base_image: list[str] | None,
    wheelhouse: Path | None,
    build_arg: list[str] | None,
    network: str | None,
) -> None:
    from rich.markup import escape

    from orchestrator import images
    from orchestrator.errors import ImageError

    chosen_vendor = _vendor(vendor)
    names = _image_names(suite, chosen_vendor, select, exclude)
    options = _options(None, base_image, None, wheelhouse, build_arg, None)
    client = images.engine()
    base = images.resolve_base(client, images.base_image_name(chosen_vendor, options.base_images))
    base_spec, specs = images.plan_images(names, chosen_vendor, options, base)
    with err.status("building twice"):
        results = images.rebuild_and_compare(client, base_spec, specs, network=network)
    for r in results:
        mark = "[green]ok[/]  " if r.ok else "[red]FAIL[/]"
        ids = "same image ID" if r.same_image_id else "new image ID (layer times differ)"
        detail = (
            f"{r.files} installed files identical"
            if r.ok
            else f"differs: {', '.join(r.differing[:5])}"
        )
        out.print(f"{mark} {escape(r.name)} {escape(r.tag)}: {escape(detail)}; {ids}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        raise ImageError(f"a rebuild installed different files for {', '.join(failed)}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("push")(push)
    app.add_typer(lock_app, name="lock")
