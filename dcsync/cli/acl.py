"""``dcsync acl show|check|grant|revoke``: the workspace's access rules."""

from __future__ import annotations

from typing import Annotated

import typer

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, emit_json, say
from dcsync.errors import UsageError
from dcsync.workspace import acl as acl_module
from dcsync.workspace.acl import ACL, PERMISSIONS, Identity, Rule, current_identity

app = typer.Typer(no_args_is_help=True)


@app.command()
def show(ctx: typer.Context, json: JsonOpt = False) -> None:
    """The location kind, its defaults and the rules."""
    acl = state(ctx).workspace().acl()
    if json:
        emit_json(acl.summary())
        return
    say(_kind_line(acl))
    for i, rule in enumerate(acl.rules, 1):
        scope = ""
        if rule.detectors:
            scope += f" detectors={','.join(rule.detectors)}"
        if rule.ctypes:
            scope += f" ctypes={','.join(rule.ctypes)}"
        say(f"{i}. {' '.join(rule.principals)}: {','.join(rule.allow)}{scope}")


@app.command()
def check(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="A user name (its groups come from the OS).")],
    permission: Annotated[str, typer.Argument(help=f"One of {', '.join(PERMISSIONS)}.")],
    det: Annotated[str | None, typer.Argument(help="A detector (default: the workspace).")] = None,
    ctype: Annotated[str | None, typer.Option("--ctype", help="A ctype.", metavar="CTYPE")] = None,
    json: JsonOpt = False,
) -> None:
    """Whether USER may PERMISSION (exit 10 when not)."""
    st = state(ctx)
    acl = st.workspace().acl()
    name = st.detname(det) if det else None
    allowed = acl.allows(Identity.of_user(user), permission, name, ctype)
    if json:
        emit_json(
            {"user": user, "permission": permission, "detector": name, "ctype": ctype, "allowed": allowed}
        )
    else:
        say(f"{user} {'may' if allowed else 'may not'} {permission}" + (f" on {name}" if name else ""))
    if not allowed:
        raise typer.Exit(10)


def _edit(
    ctx: typer.Context,
    principal: str,
    permissions: list[str],
    detectors: list[str] | None,
    ctypes: list[str] | None,
    grant: bool,
) -> None:
    ws = state(ctx).workspace()
    acl = ws.acl()
    who = current_identity()
    acl.require(who, "admin")
    principal = acl_module.check_principal(principal)
    perms = tuple(acl_module.check_permissions(permissions))
    rule = Rule((principal,), perms, tuple(detectors or ()), tuple(ctypes or ()))
    if grant:
        acl.rules.append(rule)
    else:
        before = len(acl.rules)
        acl.rules = [r for r in acl.rules if r != rule]
        if len(acl.rules) == before:
            raise UsageError(
                f"no rule exactly like {principal} {','.join(perms)} to revoke (see 'dcsync acl show')"
            )
    acl_module.save(ws.root, acl, who, f"{'grant' if grant else 'revoke'} {principal} {','.join(perms)}")
    say(f"{'granted' if grant else 'revoked'}: {principal} {','.join(perms)}")


DetsOpt = Annotated[
    list[str] | None, typer.Option("--detector", help="Only detectors matching this glob.", metavar="GLOB")
]
CtypesOpt = Annotated[list[str] | None, typer.Option("--ctype", help="Only these ctypes.", metavar="CTYPE")]
PrincipalArg = Annotated[str, typer.Argument(help="user:NAME, group:NAME or *.")]
PermsArg = Annotated[list[str], typer.Argument(help=f"Permissions: {', '.join(PERMISSIONS)}.")]


@app.command()
def grant(
    ctx: typer.Context,
    principal: PrincipalArg,
    permissions: PermsArg,
    detector: DetsOpt = None,
    ctype: CtypesOpt = None,
) -> None:
    """Add a rule (needs admin; logged in .dcsync/acl.log)."""
    _edit(ctx, principal, permissions, detector, ctype, grant=True)


@app.command()
def revoke(
    ctx: typer.Context,
    principal: PrincipalArg,
    permissions: PermsArg,
    detector: DetsOpt = None,
    ctype: CtypesOpt = None,
) -> None:
    """Remove a rule added by grant (needs admin; logged)."""
    _edit(ctx, principal, permissions, detector, ctype, grant=False)


@app.command("set")
def set_(
    ctx: typer.Context,
    kind: Annotated[
        str | None, typer.Option("--kind", help="repository, experiment or local.", metavar="KIND")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="The experiment's Unix group.", metavar="GROUP")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="The owner (local kind; admin everywhere).", metavar="USER")
    ] = None,
) -> None:
    """Set the location kind, experiment group or owner (needs admin; logged)."""
    ws = state(ctx).workspace()
    acl = ws.acl()
    who = current_identity()
    acl.require(who, "admin")
    if kind is not None:
        if kind not in ("repository", "experiment", "local"):
            raise UsageError(f"invalid location kind {kind!r}")
        acl.kind = kind
    acl.group = group if group is not None else acl.group
    acl.owner = owner if owner is not None else acl.owner
    fields = {"kind": acl.kind, "group": acl.group, "owner": acl.owner}
    acl_module.save(ws.root, acl, who, "set " + " ".join(f"{k}={v}" for k, v in fields.items() if v))
    say(_kind_line(acl))


def _kind_line(acl: ACL) -> str:
    """The location kind, its group (experiments) and owner; an unset owner shows as ``?``."""
    return (
        f"kind: {acl.kind}" + (f"  group: {acl.group}" if acl.group else "") + f"  owner: {acl.owner or '?'}"
    )
