"""Cards rendered for a terminal, the way an EHR would show them on screen.

CDS Hooks 2.0, "Card Attributes": the indicator (info, warning, critical) sets the colour and is
also spelled out, so nothing depends on colour alone; the summary leads; the markdown `detail` is
shown as indented text (headings, bold, lists and checklists kept readable, links spelled out);
then the suggestions with what each action would do, the links, and the override reasons. The
response's `systemActions` follow the cards: for each order, its Da Vinci CRD coverage information.
"""

from __future__ import annotations

import re
import shutil
import textwrap

from cds_hooks.pipeline.coverage_info import EXTENSION_URL as COVERAGE_INFORMATION

RESET = "\033[0m"
BOLD = "\033[1m"
DIM = "\033[2m"
REVERSE = "\033[7m"
COLOURS = {"info": "\033[34m", "warning": "\033[33m", "critical": "\033[31m"}
_BOLD_MD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK_MD = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE_MD = re.compile(r"`([^`]+)`")


class Style:
    def __init__(self, colour: bool):
        self.colour = colour

    def __call__(self, text: str, *codes: str) -> str:
        if not self.colour or not codes:
            return text
        return "".join(codes) + text + RESET


def _inline(text: str, style: Style) -> str:
    text = _LINK_MD.sub(lambda m: f"{m.group(1)} <{m.group(2)}>", text)
    text = _CODE_MD.sub(lambda m: m.group(1), text)
    return _BOLD_MD.sub(lambda m: style(m.group(1) or m.group(2), BOLD), text)


def _wrap(text: str, indent: str, hanging: str, width: int) -> list[str]:
    wrapper = textwrap.TextWrapper(
        width=max(40, width),
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapper.wrap(text) or [indent.rstrip()]


def markdown_lines(markdown: str, style: Style, width: int, indent: str = "  ") -> list[str]:
    """The card detail as terminal lines: headings bold, bullets and nesting kept, text wrapped."""
    out: list[str] = []
    for raw in markdown.splitlines():
        if not raw.strip():
            if out and out[-1] != "":
                out.append("")
            continue
        heading = re.match(r"^\s*(#{1,6})\s+(.*)$", raw)
        if heading:
            out.append(indent + style(_inline(heading.group(2), style), BOLD))
            continue
        bullet = re.match(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$", raw)
        if bullet:
            depth = len(bullet.group(1).replace("\t", "    ")) // 2
            marker = "•" if bullet.group(2) in "-*+" else bullet.group(2)
            body = bullet.group(3)
            task = re.match(r"^\[([ xX])\]\s+(.*)$", body)
            if task:
                marker, body = ("[x]" if task.group(1).lower() == "x" else "[ ]"), task.group(2)
            lead = indent + "  " * depth
            first = f"{lead}{marker} "
            out.extend(_wrap(_inline(body, style), first, " " * len(first), width))
            continue
        out.extend(_wrap(_inline(raw.strip(), style), indent, indent, width))
    while out and out[-1] == "":
        out.pop()
    return out


def _action_line(action: dict) -> str:
    kind = action.get("type", "?")
    resource = action.get("resource") if isinstance(action.get("resource"), dict) else None
    what = action.get("description") or ""
    if resource:
        codings = (resource.get("code") or {}).get("coding") or []
        code = next((f"{c.get('code')}" for c in codings if c.get("code")), None)
        target = resource.get("resourceType", "resource") + (f" {code}" if code else "")
        return f"{kind} {target}: {what}".rstrip(": ")
    if action.get("resourceId"):
        return f"{kind} {action['resourceId']}: {what}".rstrip(": ")
    return f"{kind}: {what}".rstrip(": ")


def render_card(card: dict, style: Style, width: int) -> list[str]:
    indicator = card.get("indicator", "info")
    colour = COLOURS.get(indicator, "")
    lines = [style(f" {indicator.upper()} ", BOLD, colour, REVERSE) + " " + style(card.get("summary", ""), BOLD)]
    source = card.get("source") or {}
    if source.get("label"):
        lines.append(
            "  " + style(f"from {source['label']}" + (f" <{source['url']}>" if source.get("url") else ""), DIM)
        )
    if card.get("detail"):
        lines.append("")
        lines.extend(markdown_lines(card["detail"], style, width))
    suggestions = card.get("suggestions") or []
    if suggestions:
        lines.append("")
        how = card.get("selectionBehavior")
        lines.append("  " + style("Suggestions", BOLD) + (f" (choose {how})" if how else ""))
        for i, s in enumerate(suggestions, 1):
            lines.extend(_wrap(s.get("label", ""), f"   [{i}] ", "       ", width))
            for action in s.get("actions") or []:
                lines.extend(_wrap(_action_line(action), "       → ", "         ", width))
    links = card.get("links") or []
    if links:
        lines.append("")
        lines.append("  " + style("Links", BOLD))
        for link in links:
            kind = " (SMART app)" if link.get("type") == "smart" else ""
            lines.extend(_wrap(f"{link.get('label', '')}{kind}: {link.get('url', '')}", "   • ", "     ", width))
    reasons = card.get("overrideReasons") or []
    if reasons:
        lines.append("")
        lines.append("  " + style("Override reasons", BOLD))
        for reason in reasons:
            lines.extend(_wrap(reason.get("display") or reason.get("code", ""), "   • ", "     ", width))
    return lines


def coverage_information(resource: dict) -> list[dict]:
    """The CRD coverage-information extensions of a resource, each as {part url: [values]}."""
    out = []
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == COVERAGE_INFORMATION:
            parts: dict[str, list] = {}
            for part in ext.get("extension") or []:
                value = next((v for k, v in part.items() if k.startswith("value")), None)
                parts.setdefault(part.get("url"), []).append(value)
            out.append(parts)
    return out


def _coverage_line(parts: dict) -> str:
    coverage = (parts.get("coverage") or [{}])[0] or {}
    bits = [
        f"{coverage.get('reference') or coverage.get('display') or 'coverage'}",
        f"covered: {', '.join(parts.get('covered') or ['?'])}",
    ]
    if parts.get("pa-needed"):
        bits.append(f"prior auth: {', '.join(parts['pa-needed'])}")
    if parts.get("doc-needed"):
        bits.append(
            f"documentation: {', '.join(parts['doc-needed'])}"
            + (f" ({', '.join(parts.get('doc-purpose') or [])})" if parts.get("doc-purpose") else "")
        )
    if parts.get("questionnaire"):
        bits.append(f"questionnaire: {parts['questionnaire'][0]}")
    reason = (parts.get("reason") or [{}])[0] or {}
    if reason.get("text"):
        bits.append(f"reason: {reason['text']}")
    return " · ".join(bits)


def render_system_actions(actions: list, style: Style, width: int) -> list[str]:
    """CDS Hooks 2.0 `systemActions`: what the EHR applies without asking (here, coverage information)."""
    lines = [style("System actions", BOLD) + style(" (applied by the EHR without a click)", DIM)]
    for action in actions:
        if not isinstance(action, dict):
            continue
        resource = action.get("resource") if isinstance(action.get("resource"), dict) else {}
        target = f"{resource.get('resourceType', 'resource')}/{resource.get('id', '?')}"
        lines.extend(_wrap(f"{action.get('type', '?')} {target}", "  • ", "    ", width))
        for parts in coverage_information(resource):
            lines.extend(_wrap("coverage information: " + _coverage_line(parts), "    ", "      ", width))
    return lines


def render_response(response: dict, colour: bool = False, width: int | None = None) -> str:
    """Every card of a response, separated by a blank line, then its system actions; a plain sentence
    when there is neither."""
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    style = Style(colour)
    cards = response.get("cards") if isinstance(response, dict) else None
    actions = response.get("systemActions") if isinstance(response, dict) else None
    if not cards and not actions:
        return "No cards: the service has nothing to say about these orders."
    blocks = ["\n".join(render_card(c, style, width)) for c in cards or [] if isinstance(c, dict)]
    if isinstance(actions, list) and actions:
        blocks.append("\n".join(render_system_actions(actions, style, width)))
    return ("\n\n" + "─" * min(width, 80) + "\n\n").join(blocks)
