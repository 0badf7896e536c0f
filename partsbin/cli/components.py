"""Commands on stored components: ``push``, ``pull``, ``ls``, ``show``, ``versions``,
``compatible``, ``alias``, ``yank``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from partsbin.cli._app import (
    PANEL_COMPONENTS,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    app,
    console,
    fail,
    note,
    open_registry,
    print_json,
    table,
)
from partsbin.parts.roles import ROLES, Role

# The card's own roles: the CLI takes what the API lists, from one place (parts/card.py).
RoleOpt = Annotated[Role | None, typer.Option(help=", ".join(ROLES))]


def _read_card(path: Path) -> dict[str, Any]:
    import yaml

    from partsbin.client.errors import InvalidCard, MissingFile

    if not path.is_file():
        raise MissingFile(f"no such card file: {path}")
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidCard(f"{path} is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidCard(f"{path} must hold one JSON (or YAML) object: the card")
    return data


@app.command(rich_help_panel=PANEL_COMPONENTS)
def push(
    file: Annotated[Path, typer.Argument(help=".safetensors file (card embedded, or given with --card)")],
    card: Annotated[Path | None, typer.Option(help="card file, JSON or YAML")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Publish a component file."""
    card_data = _read_card(card) if card else None
    with open_registry(url, token) as reg:
        comp = reg.push(file, card_data)
    if comp.created:
        console.print(f"published {comp.ref} ({comp.digest})")
    else:
        console.print(f"already published as {comp.ref} ({comp.digest}): identical bytes, no new version")


def _output_path(output: str, comp_name: str, version: int) -> Path:
    """Where ``-o`` writes: into a folder (given as one, or ending in a separator), or a file."""
    path = Path(output)
    as_folder = output.endswith(("/", os.sep)) or path.is_dir()
    if as_folder:
        if not path.is_dir():
            raise fail(f"cannot write into {output}: no such folder (make it first, or name a file)")
        return path / f"{comp_name.replace('/', '--')}--{version}.safetensors"
    if not path.parent.is_dir():
        raise fail(f"cannot write {output}: the folder {path.parent} does not exist")
    return path


def _is_safetensors(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and int.from_bytes(head[:8], "little") > 0 and head[8:9] == b"{"


def _copy_out(source: Path, target: Path, force: bool) -> None:
    """Copy through a temporary file beside the target, then rename: a reader never sees
    half a file, and a target that cannot be written fails with its own reason."""
    if target.exists() or target.is_symlink():
        if not target.is_file():
            raise fail(f"cannot write {target}: it exists and is not a regular file")
        if not force and not _is_safetensors(target):
            raise fail(f"{target} exists and is not a .safetensors file: not overwritten (--force overwrites it)")
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as tmp:
            pass
        try:
            shutil.copyfile(source, tmp.name)
            os.replace(tmp.name, target)
        finally:
            Path(tmp.name).unlink(missing_ok=True)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror or exc}") from None


@app.command(rich_help_panel=PANEL_COMPONENTS)
def pull(
    ref: Annotated[str, typer.Argument(help="ns/name, ns/name@VERSION, ns/name:ALIAS or sha256:HEX")],
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="also copy the file here: a file, or a folder (ending in /)"),
    ] = None,
    force: Annotated[bool, typer.Option(help="overwrite an -o file that is not a .safetensors file")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a component into the cache (sha256 verified)."""
    from partsbin.parts.names import parse_ref

    parse_ref(ref)
    if output is not None:
        # Checked before the download, so a typo costs no transfer.
        _output_path(output, "x/y", 1)
    with open_registry(url, token) as reg:
        comp = reg.pull(ref)
    target = None
    if output is not None:
        target = _output_path(output, comp.name, comp.version)
        _copy_out(comp.path, target, force)
    console.print(f"{comp.ref} {comp.digest} -> {target if target is not None else comp.path}")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def _components_table(comps: list[Any]) -> Any:
    # Whole refs, never a shared prefix cut off: a ref is what a reader copies into the next command.
    t = table("ref", "role", "arch", "junction", "dataset", "digest", "size")
    for c in comps:
        j = c.card.interface.junction
        ds = c.card.provenance.dataset.name if c.card.provenance.dataset else ""
        t.add_row(
            c.ref + (" (yanked)" if c.yanked else ""),
            c.role,
            c.card.arch.name,
            f"{j.channels}@{j.spatial}",
            ds,
            c.digest[:19] + "…",
            _size(c.size),
        )
    return t


@app.command("ls", rich_help_panel=PANEL_COMPONENTS)
def ls(
    role: RoleOpt = None,
    arch: Annotated[str | None, typer.Option(help="architecture, e.g. resnet_cifar")] = None,
    group: Annotated[str | None, typer.Option(help="anchor digest of a compatibility group")] = None,
    dataset: Annotated[str | None, typer.Option(help="training data set name")] = None,
    namespace: Annotated[str | None, typer.Option(help="namespace")] = None,
    prefix: Annotated[str | None, typer.Option(help="prefix of ns/name")] = None,
    tag: Annotated[str | None, typer.Option(help="a tag of the card")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="text in names and descriptions")] = None,
    yanked: Annotated[bool, typer.Option("--yanked", help="include yanked versions")] = False,
    limit: Annotated[int, typer.Option(min=1, help="show at most this many")] = 100,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List components (newest last)."""
    with open_registry(url, token) as reg:
        comps = reg.list(
            role=role,
            arch=arch,
            group=group,
            dataset=dataset,
            namespace=namespace,
            prefix=prefix,
            tag=tag,
            q=search,
            include_yanked=yanked or None,
            limit=limit,
        )
    if json_out:
        print_json([c.raw for c in comps])
        return
    if not comps:
        note(
            "no components match"
            + ("" if not any((role, arch, group, dataset, namespace, prefix, tag, search)) else " these filters")
        )
        return
    console.print(_components_table(comps))
    if len(comps) == limit:
        note(f"showing the first {limit}; pass --limit to see more")


def _render_card(comp: Any) -> None:
    from rich.tree import Tree

    card = comp.card
    tree = Tree(f"{comp.ref}  ({card.role}{', yanked: ' + str(comp.raw.get('yank_reason')) if comp.yanked else ''})")
    if card.description:
        tree.add(card.description)
    tree.add(f"digest {comp.digest}, {_size(comp.size)}, published {comp.raw.get('created_at', '')}")
    a = card.arch
    config = ", ".join(f"{k}={v}" for k, v in sorted(a.config.items()))
    tree.add(f"arch {a.name}({config}), the {a.part} of the split at {a.split}")
    i = card.interface
    iface = tree.add("interface")
    if i.input:
        iface.add(f"input: {i.input.channels} channels, {i.input.size}×{i.input.size}")
    iface.add(f"junction: {i.junction.channels} channels at {i.junction.spatial}")
    if i.output:
        labels = i.output.labels
        iface.add(f"output: {len(labels)} classes ({', '.join(labels[:12])}{', …' if len(labels) > 12 else ''})")
    c = card.compat
    compat = tree.add("compatibility")
    compat.add(f"anchors: {', '.join(c.anchors) or 'none (no compatibility group)'}")
    if c.methods or c.scheme:
        compat.add(f"methods {', '.join(c.methods) or '-'}, scheme {c.scheme or '-'}")
    for key in ("init", "sibling"):
        if getattr(c, key):
            compat.add(f"{key}: {getattr(c, key)}")
    p = card.provenance
    prov = tree.add("provenance") if (p.dataset or p.seed is not None or p.job or p.model_extra) else Tree("")
    if p.dataset:
        prov.add(
            f"data set {p.dataset.name}" + (f", classes {', '.join(p.dataset.classes)}" if p.dataset.classes else "")
        )
    if p.seed is not None or p.job:
        prov.add(f"seed {p.seed}, job {p.job or '-'}")
    for key, value in (p.model_extra or {}).items():
        if key != "dataset":
            prov.add(f"{key}: {value}")
    if card.metrics:
        metrics = tree.add("metrics")
        for key, value in card.metrics.items():
            metrics.add(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    if card.tags or card.license:
        tree.add(f"tags {', '.join(card.tags) or '-'}; license {card.license or '-'}")
    console.print(tree)


@app.command(rich_help_panel=PANEL_COMPONENTS)
def show(
    ref: Annotated[str, typer.Argument(help="ns/name, ns/name@VERSION, ns/name:ALIAS or sha256:HEX")],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a component's card."""
    with open_registry(url, token) as reg:
        comp = reg.info(ref)
    if json_out:
        print_json(comp.raw)
    else:
        _render_card(comp)


@app.command(rich_help_panel=PANEL_COMPONENTS)
def versions(
    name: Annotated[str, typer.Argument(help="ns/name")],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every version of a component, yanked ones included, with the aliases pointing at each."""
    with open_registry(url, token) as reg:
        comps = reg.versions(name)
        aliases = reg.aliases(name)
    if json_out:
        print_json([{**c.raw, "aliases": sorted(a for a, v in aliases.items() if v == c.version)} for c in comps])
        return
    t = table("version", "aliases", "digest", "size", "published", "yanked")
    for c in comps:
        yanked = (c.raw.get("yank_reason") or "yes") if c.yanked else ""
        pointing = ", ".join(sorted(a for a, v in aliases.items() if v == c.version))
        t.add_row(str(c.version), pointing, c.digest, _size(c.size), str(c.raw.get("created_at", ""))[:19], yanked)
    console.print(t)


def _why_empty(reg: Any, ref: str, role: str) -> str:
    comp = reg.info(ref)
    anchors = comp.card.compat.anchors if comp.role not in ("aux-rp", "aux-dcc") else [comp.digest]
    if not anchors:
        return (
            f"{comp.ref} was trained against no aux head (its card lists no anchors), so no {role} is declared "
            "compatible with it; measure candidate pairs with `partsbin bench`, or train against an anchor"
        )
    names = []
    for digest in anchors:
        try:
            names.append(f"{reg.info(digest).ref} ({digest[:19]}…)")
        except Exception:  # noqa: BLE001 — best effort for a message
            names.append(digest)
    return (
        f"{comp.ref} is in the group(s) of {', '.join(names)}, but no other {role} there has a matching feature "
        f"interface ({comp.card.interface.junction.channels} channels)"
    )


@app.command(rich_help_panel=PANEL_COMPONENTS)
def compatible(
    head: Annotated[str | None, typer.Option("--head", "-H", help="find extractors for this head")] = None,
    extractor: Annotated[str | None, typer.Option("--extractor", "-e", help="find heads for this extractor")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Components that recombine with a head or an extractor, with the reason."""
    if (head is None) == (extractor is None):
        raise fail("give --head REF (to find extractors) or --extractor REF (to find heads)")
    with open_registry(url, token) as reg:
        items = reg.compatible(head=head, extractor=extractor)
        if not items and not json_out:
            query = head or extractor or ""
            raise fail(_why_empty(reg, query, "extractor" if head else "head"), code=1)
    if json_out:
        print_json([{**it, "component": it["component"].raw} for it in items])
        return
    t = table("ref", "role", "status", "why")
    for it in items:
        why = "; ".join(
            r["detail"] + (f" ({r.get('anchor_ref') or r.get('anchor')})" if r.get("anchor") else "")
            for r in it["reasons"]
        )
        t.add_row(it["component"].ref, it["role"], it["status"], why)
    console.print(t)


@app.command(rich_help_panel=PANEL_COMPONENTS)
def alias(
    name: Annotated[str, typer.Argument(help="ns/name")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[int | None, typer.Argument(help="version to point at")] = None,
    delete: Annotated[bool, typer.Option(help="remove the alias")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Point an alias (e.g. stable) at a version, or remove it (admin or namespace owner)."""
    from partsbin.parts.names import validate_name, validate_part

    validate_name(name)
    validate_part(alias_name, "alias")
    if not delete and version is None:
        raise fail("give the VERSION to point at, or --delete")
    with open_registry(url, token) as reg:
        if delete:
            reg.delete_alias(name, alias_name)
            console.print(f"removed {name}:{alias_name}")
            return
        reg.set_alias(name, alias_name, version)
    console.print(f"{name}:{alias_name} -> {name}@{version}")


@app.command(rich_help_panel=PANEL_COMPONENTS)
def yank(
    ref: Annotated[str, typer.Argument(help="ns/name@VERSION")],
    reason: Annotated[str, typer.Option(help="why (shown to users)")] = "",
    undo: Annotated[bool, typer.Option(help="undo a yank")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Hide a version from lists and lookups (still downloadable by exact version)."""
    from partsbin.parts.names import parse_ref

    if parse_ref(ref).kind != "version":
        raise fail(f"yank takes an exact version: {ref}@VERSION (`partsbin versions {ref.split(':')[0]}` lists them)")
    if not undo and not reason:
        raise fail("say why with --reason TEXT (users see it)")
    with open_registry(url, token) as reg:
        if undo:
            comp = reg.unyank(ref)
            console.print(f"unyanked {comp.ref}")
            return
        comp = reg.yank(ref, reason)
    console.print(f"yanked {comp.ref}: {reason}")
