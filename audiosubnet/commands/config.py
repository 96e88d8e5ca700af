"""`asn config`: the effective settings and where each came from."""

from __future__ import annotations

from audiosubnet.commands import _options as o
from audiosubnet.commands._cli import AsnTyper, out, print_json

app = AsnTyper(help="Settings: flag > ASN_* environment > asn.toml (ASN_CONFIG) > defaults.")


@app.command("show")
def show(json_out: o.JsonOpt = False) -> None:
    """Print every setting, its effective value, its origin (flag, env, file or default) and the ASN_* variable
    that sets it (sections and keys joined by two underscores: ASN_MINE__PORT).

    Examples:
      asn config show
      ASN_DEVICE=cpu asn config show --json
    """
    from audiosubnet.config import ENV_NOT_SETTINGS, config_path, env_name, settings_origins

    rows = settings_origins()
    if json_out:
        print_json({k: {"value": v, "origin": src, "env": env_name(k)} for k, v, src in rows})
        return
    from rich.table import Table

    path = config_path()
    t = Table(title=f"asn settings (config file: {path or 'none'})")
    t.add_column("setting")
    t.add_column("value")
    t.add_column("from")
    t.add_column("environment variable")
    for key, value, origin in rows:
        t.add_row(key, "" if value is None else str(value), origin, env_name(key))
    t.caption = f"Other ASN_* variables (not settings): {', '.join(sorted(ENV_NOT_SETTINGS))}"
    out.print(t)
