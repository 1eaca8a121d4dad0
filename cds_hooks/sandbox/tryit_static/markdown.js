// A small, safe markdown renderer for CDS Hooks card details (CDS Hooks 2.0, "Card Attributes":
// `detail` is GitHub-flavoured markdown).
//
// Safety comes from construction: the output is built with document.createElement and text nodes
// only, never innerHTML, so markup in the input is shown as text and cannot run. Links keep only
// http:, https: and mailto: targets (anything else stays plain text) and open in a new tab without
// an opener. Images are shown as their alt text: a card must not make the browser fetch anything.
//
// Supported: ATX headings, paragraphs (soft breaks as spaces, as CommonMark renders them; hard
// breaks with two trailing spaces or a backslash), nested bullet and ordered lists, task list items,
// block quotes, fenced code, thematic breaks, pipe tables, and inline code, strong, emphasis,
// strikethrough, links and autolinks, backslash escapes.
(function (global) {
  "use strict";

  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const PUNCT = /[!-\/:-@\[-`{-~]/;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children || []) node.appendChild(c);
    return node;
  }

  function safeHref(raw) {
    const href = raw.trim();
    try {
      const url = new URL(href, global.location.href);
      return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(href, children) {
    const safe = safeHref(href);
    if (!safe) return children;
    return [el("a", { href: safe, target: "_blank", rel: "noopener noreferrer" }, children)];
  }

  // ------------------------------------------------------------------ inline

  // The end of a `[...]` label starting at `start` (the index of "["), or -1.
  function closeBracket(text, start) {
    let depth = 0;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (c === "\\") { i++; continue; }
      if (c === "`") {
        const end = text.indexOf("`", i + 1);
        if (end > 0) { i = end; continue; }
      }
      if (c === "[") depth++;
      else if (c === "]" && --depth === 0) return i;
    }
    return -1;
  }

  // `(url "title")` after a label; returns {url, end} or null.
  function destination(text, open) {
    if (text[open] !== "(") return null;
    const m = /^\(\s*(<[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+("[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/.exec(text.slice(open));
    if (!m) return null;
    let url = m[1];
    if (url.startsWith("<")) url = url.slice(1, -1);
    return { url: url, end: open + m[0].length };
  }

  function isSpace(c) { return c === undefined || /\s/.test(c); }

  // The index of the closing delimiter run `delim` for an opener at `from`, or -1.
  function closeDelimiter(text, from, delim) {
    let i = from;
    while ((i = text.indexOf(delim, i)) !== -1) {
      const before = text[i - 1];
      const after = text[i + delim.length];
      const escaped = before === "\\";
      const intraword = delim[0] === "_" && /[A-Za-z0-9]/.test(after || "");
      if (i > from && !isSpace(before) && !escaped && !intraword) {
        // `*` inside `**` is not a close for `*`
        if (!(delim === "*" && (text[i + 1] === "*" || before === "*"))) return i;
      }
      i += delim.length;
    }
    return -1;
  }

  function inline(text) {
    const out = [];
    let buf = "";
    const flush = () => { if (buf) { out.push(document.createTextNode(buf)); buf = ""; } };
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      const next = text[i + 1];
      if (c === "\\" && next === "\n") { flush(); out.push(el("br")); i += 2; continue; }
      if (c === "\\" && next !== undefined && PUNCT.test(next)) { buf += next; i += 2; continue; }
      if (c === "\n") {
        if (/ {2,}$/.test(buf)) { buf = buf.replace(/ +$/, ""); flush(); out.push(el("br")); }
        else { buf = buf.replace(/ +$/, ""); buf += "\n"; }
        i += 1;
        while (text[i] === " ") i++;
        continue;
      }
      if (c === "`") {
        let run = 1;
        while (text[i + run] === "`") run++;
        const fence = "`".repeat(run);
        let end = i + run;
        let found = -1;
        while ((end = text.indexOf(fence, end)) !== -1) {
          if (text[end + run] !== "`" && text[end - 1] !== "`") { found = end; break; }
          end += run;
        }
        if (found !== -1) {
          let code = text.slice(i + run, found).replace(/\n/g, " ");
          if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
          flush();
          const node = el("code");
          node.textContent = code;
          out.push(node);
          i = found + run;
          continue;
        }
        buf += fence; i += run; continue;
      }
      if (c === "<") {
        const m = /^<((?:https?|mailto):[^\s<>]+)>/i.exec(text.slice(i));
        if (m) {
          flush();
          out.push(...link(m[1], [document.createTextNode(m[1])]));
          i += m[0].length;
          continue;
        }
      }
      if ((c === "[" || (c === "!" && next === "[")) ) {
        const start = c === "!" ? i + 1 : i;
        const close = closeBracket(text, start);
        const dest = close > 0 ? destination(text, close + 1) : null;
        if (dest) {
          flush();
          const label = text.slice(start + 1, close);
          if (c === "!") {
            // An image becomes its alt text: nothing is fetched.
            out.push(document.createTextNode(label ? "[image: " + label + "]" : "[image]"));
          } else {
            out.push(...link(dest.url, inline(label)));
          }
          i = dest.end;
          continue;
        }
      }
      if (c === "*" || c === "_" || c === "~") {
        let run = 1;
        while (text[i + run] === c) run++;
        const strong = run >= 2 && c !== "~";
        const delim = c === "~" ? (run >= 2 ? "~~" : null) : (strong ? c + c : c);
        const opensWord = !isSpace(text[i + (delim ? delim.length : 1)]);
        const prev = text[i - 1];
        const intraword = c === "_" && /[A-Za-z0-9]/.test(prev || "");
        if (delim && opensWord && !intraword) {
          const close = closeDelimiter(text, i + delim.length, delim);
          if (close !== -1) {
            flush();
            const tag = c === "~" ? "del" : (strong ? "strong" : "em");
            out.push(el(tag, {}, inline(text.slice(i + delim.length, close))));
            i = close + delim.length;
            continue;
          }
        }
        buf += text.slice(i, i + run); i += run; continue;
      }
      buf += c;
      i += 1;
    }
    flush();
    return out;
  }

  // ------------------------------------------------------------------ blocks

  const RE = {
    blank: /^\s*$/,
    heading: /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/,
    rule: /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/,
    fence: /^( {0,3})(`{3,}|~{3,})(.*)$/,
    quote: /^ {0,3}> ?(.*)$/,
    item: /^(\s*)([-+*]|\d{1,9}[.)])(?:[ \t]+(.*))?$/,
    tableDelim: /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/,
  };

  function width(indent) { return indent.replace(/\t/g, "    ").length; }

  function cells(row) {
    let s = row.trim();
    if (s.startsWith("|")) s = s.slice(1);
    if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
    const out = [];
    let cur = "";
    for (let i = 0; i < s.length; i++) {
      if (s[i] === "\\" && s[i + 1] === "|") { cur += "|"; i++; continue; }
      if (s[i] === "|") { out.push(cur.trim()); cur = ""; continue; }
      cur += s[i];
    }
    out.push(cur.trim());
    return out;
  }

  function table(lines, start) {
    const head = cells(lines[start]);
    const aligns = cells(lines[start + 1]).map((d) =>
      d.startsWith(":") && d.endsWith(":") ? "center" : d.endsWith(":") ? "right" : d.startsWith(":") ? "left" : null);
    const thead = el("thead", {}, [el("tr", {}, head.map((h, k) =>
      el("th", Object.assign({ scope: "col" }, aligns[k] ? { class: "align-" + aligns[k] } : {}), inline(h))))]);
    const rows = [];
    let i = start + 2;
    while (i < lines.length && !RE.blank.test(lines[i]) && lines[i].includes("|")) {
      const row = cells(lines[i]);
      rows.push(el("tr", {}, head.map((_, k) =>
        el("td", aligns[k] ? { class: "align-" + aligns[k] } : {}, inline(row[k] || "")))));
      i++;
    }
    return { node: el("table", {}, [thead, el("tbody", {}, rows)]), next: i };
  }

  // A list starting at `start`: items at the same indentation, nested lists for deeper ones.
  function list(lines, start) {
    const first = RE.item.exec(lines[start]);
    const indent = width(first[1]);
    const ordered = /\d/.test(first[2]);
    const attrs = ordered && parseInt(first[2], 10) !== 1 ? { start: String(parseInt(first[2], 10)) } : {};
    const node = el(ordered ? "ol" : "ul", attrs);
    let i = start;
    while (i < lines.length) {
      const m = RE.item.exec(lines[i]);
      if (!m || width(m[1]) !== indent || /\d/.test(m[2]) !== ordered) break;
      const bodyIndent = width(m[1]) + m[2].length + 1;
      const body = [m[3] || ""];
      i++;
      // Continuation lines and nested blocks: anything indented past the marker, or a lazy line.
      while (i < lines.length) {
        const line = lines[i];
        if (RE.blank.test(line)) {
          const after = lines[i + 1];
          if (after !== undefined && width(/^\s*/.exec(after)[0]) >= bodyIndent) { body.push(""); i++; continue; }
          break;
        }
        const lead = width(/^\s*/.exec(line)[0]);
        const sub = RE.item.exec(line);
        if (lead >= bodyIndent || (sub && width(sub[1]) > indent)) {
          body.push(line.replace(new RegExp("^\\s{0," + bodyIndent + "}"), ""));
          i++;
          continue;
        }
        if (!sub && lead > indent && !RE.heading.test(line)) { body.push(line.trim()); i++; continue; }
        break;
      }
      const li = el("li");
      const task = /^\[([ xX])\][ \t]+/.exec(body[0]);
      if (task) {
        const box = el("input", { type: "checkbox", disabled: "" });
        box.checked = task[1].toLowerCase() === "x";
        if (box.checked) box.setAttribute("checked", "");
        li.className = "task";
        li.appendChild(box);
        li.appendChild(document.createTextNode(" "));
        body[0] = body[0].slice(task[0].length);
      }
      const inner = blocks(body);
      // A tight item's single paragraph is shown without a <p>.
      if (inner.length >= 1 && inner[0].tagName === "P" && !body.includes("")) {
        for (const child of Array.from(inner[0].childNodes)) li.appendChild(child);
        inner.shift();
      }
      for (const b of inner) li.appendChild(b);
      node.appendChild(li);
      while (i < lines.length && RE.blank.test(lines[i])) {
        const after = lines[i + 1];
        const am = after !== undefined ? RE.item.exec(after) : null;
        if (am && width(am[1]) === indent) { i++; } else break;
      }
    }
    return { node: node, next: i };
  }

  function blocks(lines) {
    const out = [];
    let para = [];
    const endPara = () => {
      if (para.length) { out.push(el("p", {}, inline(para.join("\n").trim()))); para = []; }
    };
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (RE.blank.test(line)) { endPara(); i++; continue; }
      let m;
      if ((m = RE.fence.exec(line))) {
        endPara();
        const fence = m[2];
        const body = [];
        i++;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) { body.push(lines[i]); i++; }
        i++;
        const code = el("code");
        code.textContent = body.join("\n");
        out.push(el("pre", {}, [code]));
        continue;
      }
      if ((m = RE.heading.exec(line))) {
        endPara();
        out.push(el("h" + m[1].length, {}, inline((m[2] || "").trim())));
        i++;
        continue;
      }
      if (RE.rule.test(line) && !(para.length && /^ {0,3}-+\s*$/.test(line))) {
        endPara();
        out.push(el("hr"));
        i++;
        continue;
      }
      if (RE.quote.test(line)) {
        endPara();
        const body = [];
        while (i < lines.length && (m = RE.quote.exec(lines[i]))) { body.push(m[1]); i++; }
        out.push(el("blockquote", {}, blocks(body)));
        continue;
      }
      if (RE.item.test(line) && (RE.item.exec(line)[3] || !para.length)) {
        endPara();
        const r = list(lines, i);
        out.push(r.node);
        i = r.next;
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && RE.tableDelim.test(lines[i + 1]) && lines[i + 1].includes("-")) {
        endPara();
        const r = table(lines, i);
        out.push(r.node);
        i = r.next;
        continue;
      }
      para.push(line);
      i++;
    }
    endPara();
    return out;
  }

  // A DocumentFragment for `markdown`; never throws on odd input.
  function render(markdown) {
    const fragment = document.createDocumentFragment();
    const text = String(markdown == null ? "" : markdown).replace(/\r\n?/g, "\n");
    try {
      for (const node of blocks(text.split("\n"))) fragment.appendChild(node);
    } catch (e) {
      const pre = el("pre");
      pre.textContent = text;
      fragment.appendChild(pre);
    }
    return fragment;
  }

  global.FusionMarkdown = { render: render, safeHref: safeHref };
})(window);
