"""``twinmesh federation ...``: partners' data export, the SuperLink, a partner's
SuperNode (``join``), a training run whose model enters the registry, and development
certificates."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from twinmesh.core.settings import Settings

__all__ = ["federation_app"]

federation_app = typer.Typer(
    help="Federated training with Flower: partners keep their data on site; the trained "
    "model enters the twin's model registry.",
    no_args_is_help=True,
)

_INSECURE = typer.Option("--insecure", help="Development only: no TLS and no node authentication.")
_TLS_DIR = typer.Option(
    "--certs", help="Directory made by `twinmesh federation certs` (TLS and node keys)."
)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _flower(ctx: typer.Context) -> Any:
    from twinmesh.federation.launcher import FlowerEnv

    return FlowerEnv(_settings(ctx).federation.flower_env)


def _need_security(insecure: bool, certs: Path | None) -> None:
    if not insecure and certs is None:
        raise typer.BadParameter(
            "TLS is on by default: pass --certs DIR (see `twinmesh federation certs`) or "
            "--insecure for a development run"
        )


@federation_app.command("app-hash")
def app_hash() -> None:
    """Print the digest of the app bundle's code (what `join --allow-app` takes)."""
    from twinmesh.federation.app.twinmesh_fl.bundle import bundle_digest
    from twinmesh.federation.launcher import APP_DIR

    typer.echo(bundle_digest(APP_DIR / "twinmesh_fl"))


@federation_app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="One directory per partner goes here.")],
    partner: Annotated[
        list[str] | None, typer.Option("--partner", help="Demo partner (default: all).")
    ] = None,
) -> None:
    """Export demo partners' data, each to a directory of its own."""
    from twinmesh.core.engine import Engine
    from twinmesh.federation.partners import export_demo_partners

    engine = Engine(_settings(ctx))
    try:
        dirs = export_demo_partners(engine, out, partner)
    finally:
        engine.close()
    typer.echo(json.dumps({name: str(path) for name, path in dirs.items()}, indent=2))


@federation_app.command("superlink")
def superlink(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="The one HTTP port (Fleet, Control, /health).")] = 9092,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    database: Annotated[
        Path | None, typer.Option(help="SuperLink state (a restart loses nothing).")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="FLWR_HOME of the SuperLink.")] = None,
    insecure: Annotated[bool, _INSECURE] = False,
    certs: Annotated[Path | None, _TLS_DIR] = None,
) -> None:
    """Run the SuperLink in the foreground (TLS and node authentication unless --insecure)."""
    from twinmesh.federation.certs import CertDir
    from twinmesh.federation.launcher import Tls, superlink_argv

    _need_security(insecure, certs)
    data_dir = _settings(ctx).data_dir / "federation"
    home = home or data_dir / "superlink"
    home.mkdir(parents=True, exist_ok=True)
    flower = _flower(ctx)
    tls = None
    if not insecure and certs is not None:
        cd = CertDir(certs)
        tls = Tls(cd.ca_cert, cd.server_cert, cd.server_key)
    argv = superlink_argv(
        flower,
        port=port,
        host=host,
        database=database or home / "state.db",
        tls=tls,
        node_auth=not insecure,
    )
    os.execve(argv[0], argv, flower.env(home))


@federation_app.command("join")
def join(
    ctx: typer.Context,
    superlink: Annotated[str, typer.Option(help="HOST:PORT of the SuperLink.")],
    data: Annotated[Path, typer.Option(help="The partner's data directory (never sent).")],
    port: Annotated[int, typer.Option(help="This node's own ClientAppIo/runtime port.")] = 9094,
    home: Annotated[Path | None, typer.Option(help="FLWR_HOME of this node.")] = None,
    allow_app: Annotated[
        list[str] | None,
        typer.Option("--allow-app", help="App bundle digest this node runs (`app-hash`)."),
    ] = None,
    audit_log: Annotated[
        Path | None, typer.Option(help="What this node sent (JSON lines).")
    ] = None,
    insecure: Annotated[bool, _INSECURE] = False,
    certs: Annotated[Path | None, _TLS_DIR] = None,
    auth_key: Annotated[
        Path | None, typer.Option(help="This node's EC private key (registered with the link).")
    ] = None,
) -> None:
    """Join a federation as a SuperNode; supervised: restarted with backoff if it exits."""
    from twinmesh.federation.app.twinmesh_fl.bundle import bundle_digest
    from twinmesh.federation.launcher import APP_DIR, supernode_argv, supervise

    _need_security(insecure, certs)
    if not insecure and auth_key is None:
        raise typer.BadParameter(
            "node authentication is on: pass --auth-key (this node's private key, made by "
            "`twinmesh federation certs --node NAME`, registered with `federation register`)"
        )
    home = home or _settings(ctx).data_dir / "federation" / f"node-{port}"
    home.mkdir(parents=True, exist_ok=True)
    flower = _flower(ctx)
    allowed = allow_app or [bundle_digest(APP_DIR / "twinmesh_fl")]
    argv = supernode_argv(
        flower,
        superlink=superlink,
        port=port,
        data=data.resolve(),
        allowed_apps=allowed,
        audit_log=(audit_log or home / "audit.jsonl").resolve(),
        root_cert=None if insecure or certs is None else certs / "ca.crt",
        auth_key=None if insecure or auth_key is None else auth_key.resolve(),
    )
    raise typer.Exit(supervise(argv, flower.env(home), home / "supernode.log"))


@federation_app.command("run")
def run(
    ctx: typer.Context,
    superlink: Annotated[str, typer.Option(help="HOST:PORT of the SuperLink.")],
    twin: Annotated[
        list[str] | None, typer.Option("--twin", help="Register the model for this twin.")
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = 3,
    strategy: Annotated[
        str, typer.Option(help="fedprox (default: better here, see the benchmark) or fedavg.")
    ] = "fedprox",
    proximal_mu: Annotated[float, typer.Option(help="FedProx's proximal weight.")] = 0.1,
    local_steps: Annotated[int, typer.Option(min=1, help="Local Adam steps per round.")] = 300,
    learning_rate: Annotated[
        float, typer.Option(min=1e-6, help="Adam's step size at the nodes.")
    ] = 0.02,
    min_nodes: Annotated[int, typer.Option(min=1, help="Fewer nodes fail the run.")] = 2,
    deadline: Annotated[
        float | None, typer.Option(help="Seconds until the watchdog stops the run.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where the ServerApp writes the model.")] = None,
    approve: Annotated[bool, typer.Option(help="Make the new version current.")] = True,
    insecure: Annotated[bool, _INSECURE] = False,
    certs: Annotated[Path | None, _TLS_DIR] = None,
) -> None:
    """Train the model across the connected SuperNodes and register it (prints JSON)."""
    from twinmesh.federation.training import TrainingRequest, train

    _need_security(insecure, certs)
    result = train(
        _settings(ctx),
        TrainingRequest(
            superlink=superlink,
            twins=twin or ["delaware"],
            rounds=rounds,
            strategy=strategy,
            proximal_mu=proximal_mu,
            local_steps=local_steps,
            learning_rate=learning_rate,
            min_nodes=min_nodes,
            deadline_s=deadline,
            out=out,
            approve=approve,
            certs=certs,
            insecure=insecure,
        ),
        say=lambda line: typer.echo(line, err=True),
    )
    typer.echo(json.dumps(result.report, indent=2))
    if not result.completed:
        raise typer.Exit(1)


@federation_app.command("retrain-check")
def retrain_check(
    ctx: typer.Context,
    twin: Annotated[str, typer.Argument(help="The twin whose recent skill is checked.")],
    submit: Annotated[
        bool, typer.Option("--submit", help="Also submit the retraining job when it is due.")
    ] = False,
) -> None:
    """Print the current model's skill on the twin's recent observations and what the
    retraining trigger decides (JSON); with --submit, act on it as the trigger does."""
    from twinmesh.core.engine import Engine
    from twinmesh.core.retraining import RetrainTrigger

    engine = Engine(_settings(ctx))
    try:
        trigger = RetrainTrigger(engine, threaded=False)
        twin_doc = engine.twin(twin)
        decision = trigger.decide(twin_doc) if submit else trigger.evaluate(twin_doc)
    finally:
        engine.close()
    typer.echo(json.dumps(decision.to_dict(), indent=2))


@federation_app.command("certs")
def certs_command(
    out: Annotated[Path, typer.Option("--out", help="Directory of the certificates and keys.")],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Extra SuperLink host name or IP for the certificate."),
    ] = None,
    node: Annotated[
        list[str] | None, typer.Option("--node", help="Make an EC key pair for this node.")
    ] = None,
) -> None:
    """Development certificates: a CA, the SuperLink's certificate (SAN 127.0.0.1 and
    localhost) and EC P-384 node keys (OpenSSH format); existing files are kept."""
    from twinmesh.federation.certs import make_certs

    made = make_certs(out, host, node)
    files = {
        "ca": str(made.ca_cert),
        "server_cert": str(made.server_cert),
        "server_key": str(made.server_key),
        "nodes": {
            n: {"private": str(made.node_key(n)), "public": str(made.node_public_key(n))}
            for n in node or []
        },
    }
    typer.echo(json.dumps(files, indent=2))


@federation_app.command("register")
def register(
    ctx: typer.Context,
    superlink: Annotated[str, typer.Option(help="HOST:PORT of the SuperLink.")],
    public_key: Annotated[
        Path, typer.Option("--public-key", help="The node's EC public key (OpenSSH format).")
    ],
    certs: Annotated[Path, _TLS_DIR],
    name: Annotated[str | None, typer.Option(help="Name of the node (its partner).")] = None,
) -> None:
    """Allow a SuperNode to connect: register its public key with the SuperLink
    (`flwr supernode register`); prints the node id."""
    from twinmesh.federation.certs import CertDir
    from twinmesh.federation.launcher import register_node, write_cli_config

    home = Path(tempfile.mkdtemp(prefix="twinmesh-flwr-"))
    write_cli_config(home, superlink, CertDir(certs).ca_cert)
    node_id = register_node(_flower(ctx), home, public_key.resolve(), name)
    typer.echo(json.dumps({"node": node_id, "name": name}))
