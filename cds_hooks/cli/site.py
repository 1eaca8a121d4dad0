"""`cds-hooks site list | enable | disable | shadow | clear`: the per-site switch (audit/go_live.py).

Changes go to the `site_switch` table of the audit database; every process of every replica reads
it again within `site_switch_cache_seconds`. Each change is also written to the access log, with
the actor and the reason.
"""

from __future__ import annotations

import sys

from cds_hooks.audit.go_live import ALL_SITES, LIVE, OFF, SHADOW, SiteSwitch, decide_mode
from cds_hooks.config import Config

_MODE_OF = {"enable": LIVE, "disable": OFF, "shadow": SHADOW}


def _open():
    from cds_hooks.audit.setup import open_store

    config = Config.from_env()
    store = open_store(config)
    return config, store, SiteSwitch(store.engine, ttl=0)


def _site(args) -> int:
    from cds_hooks.cli.audit import _actor

    config, store, switch = _open()
    default = SHADOW if config.shadow_mode else LIVE
    if args.action == "list":
        rows = switch.rows()
        print(
            f"sites are named by: {config.site_by}; without a row of their own: "
            f"{decide_mode({r['site']: r['mode'] for r in rows}, None, default)}"
        )
        if not rows:
            print("no site has a switch of its own")
        for r in rows:
            when = r["changed_at"].isoformat(timespec="seconds") + "Z"
            print(f"{r['site']}\t{r['mode']}\t{when}\t{r['changed_by']}\t{r['reason'] or ''}")
        return 0
    if not args.site:
        print(f"cds-hooks site {args.action}: name a site (or '{ALL_SITES}' for every site)", file=sys.stderr)
        return 2
    actor = _actor(args)
    try:
        if args.action == "clear":
            found = switch.clear(args.site)
            detail = f"site {args.site}: cleared" + ("" if found else " (had no switch)")
        else:
            switch.set(args.site, _MODE_OF[args.action], actor, args.reason)
            detail = f"site {args.site}: {_MODE_OF[args.action]}"
    except ValueError as exc:
        print(f"cds-hooks site {args.action}: {exc}", file=sys.stderr)
        return 2
    store.log_access(actor, f"site {args.action}", detail + (f" ({args.reason})" if args.reason else ""), 0)
    print(f"{detail}; every replica applies it within {config.site_switch_cache_seconds:g} s")
    return 0


def register(sub) -> None:
    p = sub.add_parser("site", help="the per-site switch: list, enable (live), disable (off), shadow, clear")
    p.add_argument("action", choices=("list", "enable", "disable", "shadow", "clear"))
    p.add_argument("site", nargs="?", help=f"the site (see site_by), or '{ALL_SITES}' for every site")
    p.add_argument("--reason", help="why, kept with the switch and in the access log")
    p.add_argument("--actor", help="who, for the access log (default: user@host)")
    p.set_defaults(func=_site)
