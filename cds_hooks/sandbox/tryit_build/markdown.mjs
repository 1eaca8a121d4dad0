// The try-it page's renderer for card markdown (CDS Hooks 2.0, "Card Attributes": `detail` is
// GitHub-flavoured markdown written by the service, which an EHR treats as untrusted input).
//
// markdown-it renders (raw HTML off, so markup in the input is text), DOMPurify sanitises what it
// rendered (a second line of defence), and a card can never make the browser fetch anything: images
// show as their alt text, links keep only http:, https: and mailto: targets and open in a new tab
// without an opener. `scripts/build-tryit` bundles this file with both libraries into
// ../tryit_static/markdown.js (committed; tests/test_tryit_bundle.py keeps it fresh), so the page
// loads nothing from another origin.
import DOMPurify from "dompurify";
import MarkdownIt from "markdown-it";

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

function safeHref(raw) {
  try {
    const url = new URL(String(raw).trim(), window.location.href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch (e) {
    return null;
  }
}

const md = new MarkdownIt({ html: false, linkify: true });
md.validateLink = (url) => safeHref(url) !== null;
// An image becomes "[image: its alt text]": no request leaves the page because of a card.
md.renderer.rules.image = (tokens, idx, options, env, self) =>
  md.utils.escapeHtml("[image: " + self.renderInlineAsText(tokens[idx].children, options, env) + "]");

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = safeHref(node.getAttribute("href") || "");
    if (href) {
      node.setAttribute("href", href);
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    } else {
      node.removeAttribute("href");
    }
  }
});
const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["img", "style", "form", "input", "button", "iframe", "object", "embed", "svg", "math"],
  FORBID_ATTR: ["style", "class", "id"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
};

// A DocumentFragment for `markdown`; never throws on odd input (it then shows the text as is).
function render(markdown) {
  const text = String(markdown == null ? "" : markdown);
  try {
    return purify.sanitize(md.render(text), PURIFY);
  } catch (e) {
    const fragment = document.createDocumentFragment();
    const pre = document.createElement("pre");
    pre.textContent = text;
    fragment.appendChild(pre);
    return fragment;
  }
}

window.FusionMarkdown = { render, safeHref };
