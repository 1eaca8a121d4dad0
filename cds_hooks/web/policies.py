"""Human-readable policy pages, the target of each card's policy link.

`GET /policies/{service}/{profile}` renders a profile of a rule pack: its criteria (with the
profile's thresholds filled in), which are required, its pathways, and every parameter with the source
(policy, section, date) the pack names for it.
"""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response, abort, current_app

from cds_hooks.pipeline.cards import fill_text, plain_number
from cds_hooks.web.extensions import registry_of

bp = Blueprint("policies", __name__)


def _source(src: dict | None) -> str:
    """Where a threshold comes from (pack data): policy, section, date, and a note."""
    if not src:
        return ""
    text = "; ".join(str(src[k]) for k in ("policy", "section", "date") if src.get(k))
    if src.get("note"):
        text += f" ({src['note']})"
    return escape(text)


@bp.get("/policies/<service_id>/<profile_name>")
def policy(service_id: str, profile_name: str):
    evaluator = registry_of(current_app).get(service_id)
    if evaluator is None or profile_name not in evaluator.pack.profiles:
        abort(404)
    pack = evaluator.pack
    profile = pack.profiles[profile_name]
    values = {k: plain_number(v) for k, v in profile.parameters.items()}
    rows = []
    for c in pack.criteria:
        kind = (
            "required" if c["id"] in profile.required else ("informational" if c.get("informational") else "advisory")
        )
        rows.append(
            f"<tr><td><code>{escape(c['id'])}</code></td><td>{escape(fill_text(c['title'], values))}</td>"
            f"<td>{kind}</td></tr>"
        )
    params = "".join(
        f"<tr><td><code>{escape(k)}</code></td><td>{escape(str(v))}</td><td>{_source(profile.sources.get(k))}</td></tr>"
        for k, v in values.items()
    )
    pathways = "".join(
        f"<tr><td><code>{escape(w['id'])}</code></td><td>{escape(w['label'])}</td>"
        f"<td>{escape(', '.join(rule['required']))}</td><td>{'excluded or restricted' if rule['excluded'] else ''}</td>"
        f"<td>{_source(profile.sources.get(w['id']))}</td></tr>"
        for w, rule in zip(pack.pathways, pack.pathway_rules(profile))
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(profile.label)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}</style></head>
<body><h1>{escape(profile.label)}</h1>
<p>Service <code>{escape(pack.service_id)}</code> · profile <code>{escape(profile.name)}</code> · version {escape(profile.version)}</p>
<h2>Criteria</h2><table><tr><th>id</th><th>criterion</th><th>kind</th></tr>{"".join(rows)}</table>
<h2>Pathways</h2><table><tr><th>id</th><th>pathway</th><th>required criteria</th><th>this policy</th><th>source</th></tr>{pathways}</table>
<h2>Parameters</h2><table><tr><th>parameter</th><th>value</th><th>source</th></tr>{params}</table>
<p>{escape(pack.cards["disclaimer"])}</p></body></html>"""
    return Response(html, mimetype="text/html")
