"""`asn mine` start-up: wallet -> chain -> registered? -> port -> model -> metagraph -> publish -> serve.

`build_miner` does every blocking step and returns the app (tests call it with a SimChain and the fake
engine); `run_miner` adds the socket, publishing and uvicorn.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
from dataclasses import dataclass
from typing import Any

from audiosubnet import heap
from audiosubnet.chain.base import Chain, RateLimitedError, check_registered, is_sim, open_chain
from audiosubnet.config import Settings, view
from audiosubnet.errors import AsnError, UsageError
from audiosubnet.miner.app import MinerContext, create_app
from audiosubnet.miner.deadlines import uvicorn_config
from audiosubnet.miner.metrics import MinerMetrics
from audiosubnet.miner.nonces import SqliteNonceStore
from audiosubnet.miner.policy import CallerPolicy, PolicyConfig, default_min_stake
from audiosubnet.miner.seen_log import NoSeenLog, PromptLog
from audiosubnet.service.batching import ServiceConfig, TtsService

log = logging.getLogger(__name__)


@dataclass
class Miner:
    settings: Settings
    wallet: Any
    chain: Chain
    uid: int
    context: MinerContext
    app: Any  # FastAPI


def build_miner(settings: Settings, *, wallet: Any = None, chain: Chain | None = None, cache: Any = None) -> Miner:
    """Every blocking start-up step except binding and publishing. Raises typed errors with hints."""
    from audiosubnet.engines.registry import configure_cache

    s, m = settings.subnet, settings.mine
    if wallet is None:
        from audiosubnet.chain.bittensor import load_wallet

        wallet = load_wallet(s.wallet_name, s.wallet_hotkey, settings.wallet_folder)
    if chain is None:
        chain = open_chain(settings, wallet)
    uid = check_registered(chain, settings, wallet.hotkey)
    log.info("hotkey %s is uid %d on netuid %d (%s)", wallet.hotkey, uid, s.netuid, chain.network)

    metrics = MinerMetrics()
    if cache is None and (m.isolate_engine or settings.devices):
        cache = isolated_cache(settings, metrics)
    elif cache is None:
        cache = configure_cache(settings.device, settings.dtype, settings.cache_budget)
    procs = getattr(cache, "procs", None) or [p for p in [getattr(cache, "proc", None)] if p is not None]
    for proc in procs:  # an IsolatedCache or EnginePool made by the caller: count its restarts here
        if proc.on_restart is None:
            proc.on_restart = metrics.engine_restart
    if procs:
        metrics.watch_engine(lambda: procs[0].pid)
    if hasattr(cache, "procs"):  # an engine pool (--devices): per-device metrics
        metrics.watch_devices(cache)
    parallel = getattr(cache, "parallel", 1)  # engine processes of a pool: that many batches at once
    models: tuple[str, ...] = (settings.model.strip() or "auto",)
    if m.clone_model:
        models += (_clone_model(m.clone_model),)
    if m.music_model:
        models += (m.music_model,)
    service = TtsService(ServiceConfig.of(m, models=models, voice=settings.voice, concurrency=m.concurrency * parallel),
                         cache=cache, observer=metrics)
    service.load()

    min_stake = default_min_stake(s.network) if m.min_validator_stake is None else m.min_validator_stake
    policy = CallerPolicy(chain, PolicyConfig.of(m, s.netuid, min_stake))
    n = policy.refresh()
    log.info("metagraph of netuid %d: %d neurons, %d with a validator permit; validators need stake >= %g", s.netuid,
             n, sum(1 for p in policy.peers() if p.validator_permit), min_stake)

    nonces = SqliteNonceStore(settings.home / "miner" / f"nonces-{wallet.hotkey}.db",
                              retention=max(60.0, m.auth_max_age_s + 5.0))
    ctx = view(m, MinerContext, MinerContext.FROM_SECTION, hotkey=wallet.hotkey, netuid=s.netuid, service=service,
               policy=policy, nonce_store=nonces, metrics=metrics, seen_log=PromptLog() if m.seen_log else NoSeenLog())
    return Miner(settings, wallet, chain, uid, ctx, create_app(ctx))


def isolated_cache(settings: Settings, metrics: Any = None) -> Any:
    """The engine in a supervised child process (engines/isolated.py): a native crash answers the requests of
    that batch 503 and the engine restarts; requests wait up to 20 s for a restarting engine; a batch that takes
    longer than `engine_timeout_s` (stuck in native code) kills the engine, answers 503 and restarts it.
    With `devices` (--devices): an EnginePool, one such engine process per device (engines/pool.py)."""
    from audiosubnet.engines.isolated import EngineProcess, IsolatedCache

    on_restart = None if metrics is None else metrics.engine_restart
    if settings.devices:
        from audiosubnet.engines.pool import engine_pool, parse_devices

        return engine_pool(parse_devices(settings.devices, settings.device), settings.dtype, settings.cache_budget,
                           threads=settings.mine.concurrency, wait_s=20.0, timeout_s=settings.mine.engine_timeout_s,
                           on_restart=on_restart)

    proc = EngineProcess(settings.device, settings.dtype, settings.cache_budget,
                         threads=settings.mine.concurrency,
                         on_restart=on_restart)
    return IsolatedCache(proc, wait_s=20.0, timeout_s=settings.mine.engine_timeout_s)


def _clone_model(requested: str) -> str:
    try:
        from audiosubnet.jobs.clone_watch import resolve_clone_model
    except ImportError:  # pragma: no cover - the clone job is not installed
        return requested
    return resolve_clone_model(requested)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket early, so a busy port fails before anything is published."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="Pick another --port, or stop the process using it.") from e
    sock.set_inheritable(True)
    return sock


def external_address(settings: Settings) -> tuple[str, int]:
    """The ip:port to publish: --external-ip/--external-port, else a best guess (127.0.0.1 for sim)."""
    m = settings.mine
    port = m.external_port or m.port
    if m.external_ip:
        try:
            ipaddress.ip_address(m.external_ip)
        except ValueError as e:
            raise UsageError(f"--external-ip '{m.external_ip}' is not an IP address") from e
        return m.external_ip, port
    wildcard = m.host in ("0.0.0.0", "::", "")
    if is_sim(settings.subnet.network):
        return ("127.0.0.1" if wildcard else m.host), port
    if not wildcard and not ipaddress.ip_address(m.host).is_loopback:
        return m.host, port
    try:  # the address of the interface that routes outwards (a UDP connect sends nothing)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("8.8.8.8", 80))
            ip = s.getsockname()[0]
    except OSError as e:
        raise UsageError("cannot work out this machine's public IP address",
                         hint="Pass --external-ip (and --external-port if a NAT forwards another port).") from e
    if ipaddress.ip_address(ip).is_private:
        log.warning("publishing the private address %s; validators outside this network cannot reach it "
                    "(pass --external-ip)", ip)
    return ip, port


def publish(chain: Chain, settings: Settings, hotkey: str) -> str:
    """Publish ip:port unless the chain already has it. Returns the endpoint."""
    ip, port = external_address(settings)
    endpoint = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    netuid = settings.subnet.netuid
    current = next((p.endpoint for p in chain.peers(netuid) if p.hotkey == hotkey), None)
    if current == endpoint:
        log.info("endpoint %s already published", endpoint)
        return endpoint
    try:
        chain.publish_endpoint(netuid, ip, port)
        log.info("published endpoint %s on netuid %d", endpoint, netuid)
    except RateLimitedError as e:
        log.warning("could not publish %s yet (%s); the chain still lists %s", endpoint, e, current or "nothing")
    return endpoint


def run_miner(settings: Settings) -> None:
    """Blocking: start the miner and serve until SIGINT/SIGTERM (then drain)."""
    import uvicorn

    m = settings.mine
    if settings.devices:  # a bad --devices fails before anything is bound or loaded
        from audiosubnet.engines.pool import parse_devices

        parse_devices(settings.devices, settings.device)
    raise_open_files_limit()
    heap.tune_long_running()  # weeks of small allocations from several threads: see heap.py
    sock = bind(m.host, m.port)  # fail fast on a busy port, before loading anything
    miner = None
    try:
        miner = build_miner(settings)
        endpoint = publish(miner.chain, settings, miner.wallet.hotkey) if m.publish else "(not published)"
        log.info("serving %s on %s:%d (published %s) as uid %d", miner.context.service.default_model, m.host,
                 m.port, endpoint, miner.uid)
        if m.workers > 1:
            _run_with_workers(miner, sock)
            return
        server = uvicorn.Server(uvicorn_config(miner.app, uvicorn_options(settings)))
        previous = signal.signal(signal.SIGTERM, _exit_quietly)  # uvicorn re-raises it after draining
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C: uvicorn has drained already
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        sock.close()
        cache = getattr(miner.context.service, "cache", None) if miner is not None else None  # a TtsService's
        close = getattr(cache, "close", None)
        if close is not None:  # the engine process (isolate_engine)
            close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options of the miner (httptools and uvloop when installed: the `subnet` extra has them),
    plus the connection deadlines of miner/deadlines.py (`uvicorn_config` turns them into the protocol class)."""
    m = settings.mine
    return {"log_config": None, "access_log": False, "lifespan": "on", "server_header": False,
            "timeout_graceful_shutdown": int(max(1, m.drain_timeout_s)), "timeout_keep_alive": m.keep_alive_s,
            "backlog": 2048, "h11_max_incomplete_event_size": 16 * 1024,
            "header_timeout_s": m.header_timeout_s, "body_timeout_s": m.body_timeout_s}


def raise_open_files_limit() -> None:
    """Lift the soft open-files limit to the hard one: every connection is a descriptor."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1 << 20), hard))
    except (ImportError, ValueError, OSError) as e:  # pragma: no cover - not Linux, or not allowed
        log.debug("cannot raise the open-files limit: %s", e)


def _run_with_workers(miner: Miner, sock: socket.socket) -> None:
    from audiosubnet.miner.workers import serve_with_workers

    if serve_with_workers(miner.context, sock, miner.settings.mine.workers, uvicorn_options(miner.settings)):
        raise AsnError("the miner's HTTP workers kept dying; stopped",
                       hint="The lines above say why; try `--workers 1` to serve from one process.")


def _exit_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(0)
