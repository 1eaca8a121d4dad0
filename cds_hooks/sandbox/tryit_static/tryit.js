// The try-it page: a CDS client (an EHR simulator) for this service.
//
// CDS Hooks 2.0: "Discovery" (GET /cds-services), "Calling a CDS Service" (POST /cds-services/{id}),
// "Card Attributes" (indicator, summary, source, markdown detail, suggestions with actions, links,
// overrideReasons, selectionBehavior) and "Feedback" (POST /cds-services/{id}/feedback with
// {"feedback": [{card, outcome, acceptedSuggestions | overrideReason, outcomeTimestamp}]}).
// The page prepares the request body with /try/api/request (patients, prefetch) and then calls the
// service itself, as an EHR would. Every text from the service is inserted as text, never as HTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const state = { patients: [], services: [], offers: {}, lastServiceId: null };
  const INDICATOR_TEXT = { info: "Info", warning: "Warning", critical: "Critical" };

  function text(node, value) { node.textContent = value == null ? "" : String(value); return node; }

  function option(value, label) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(url + " answered HTTP " + r.status);
    return r.json();
  }

  async function postJSON(url, body) {
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const raw = await r.text();
    let parsed = raw;
    try { parsed = raw ? JSON.parse(raw) : null; } catch (e) { /* not JSON: keep the text */ }
    return { status: r.status, ok: r.ok, body: parsed };
  }

  function setStatus(message, isError) {
    const s = $("status");
    s.textContent = message;
    s.classList.toggle("error", Boolean(isError));
  }

  // ------------------------------------------------------------------ the form

  function fillOrder(order) {
    const o = order || {};
    if (o.cpt && Array.from($("cpt").options).some((x) => x.value === o.cpt)) $("cpt").value = o.cpt;
    const boxes = Array.from($("levels").querySelectorAll("input"));
    // Without an order of its own: the lowest interspace the chosen service checks.
    const fallback = boxes.length ? [boxes[boxes.length - 1].value] : [];
    const levels = new Set(o.levels && o.levels.length ? o.levels : fallback);
    for (const box of boxes) box.checked = levels.has(box.value);
    $("priority").value = o.priority || "routine";
    $("date").value = o.date || state.today || "";
  }

  // The order codes and levels offered are those of the chosen service's rule pack and spinal region.
  function offerServiceOrders() {
    const offer = state.offers[$("service").value] || { orders: [], levels: [] };
    $("cpt").replaceChildren();
    for (const o of offer.orders) {
      const role = o.role === "add-on" ? " (add-on)" : "";
      $("cpt").appendChild(option(o.code, o.code + " " + (o.display || o.label || "") + role));
    }
    $("levels").replaceChildren();
    for (const level of offer.levels) {
      const id = "level-" + level;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = id;
      box.value = level;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = level;
      const wrap = document.createElement("span");
      wrap.className = "level";
      wrap.append(box, label);
      $("levels").appendChild(wrap);
    }
  }

  function onServiceChange() {
    offerServiceOrders();
    const p = state.patients.find((x) => x.key === $("patient").value);
    fillOrder(p && p.service === $("service").value ? p.order : null);
  }

  function onPatientChange() {
    const p = state.patients.find((x) => x.key === $("patient").value);
    // A fixture's orders go to the service whose pack claims them, as an EHR's call would.
    if (p && p.service && state.offers[p.service]) $("service").value = p.service;
    offerServiceOrders();
    fillOrder(p && p.order);
    $("prefetch-field").hidden = !(p && p.source === "fhir");
    const written = Boolean(p && p.ordersText);
    $("as-written-field").hidden = !written;
    text($("as-written-text"), written ? p.ordersText : "").hidden = !written;
    $("as-written").checked = false;
    onAsWrittenChange();
  }

  // Signing the fixture's own orders leaves nothing to edit.
  function onAsWrittenChange() {
    $("order-fields").disabled = $("as-written").checked && !$("as-written-field").hidden;
  }

  async function load() {
    try {
      const [discovery, patients, orders] = await Promise.all([
        getJSON("../cds-services"), getJSON("api/patients"), getJSON("api/orders"),
      ]);
      state.services = (discovery.services || []).filter((s) => s.hook === "order-sign");
      for (const s of state.services) $("service").appendChild(option(s.id, s.title || s.id));

      state.patients = patients.patients || [];
      const groups = { fixture: "Bundled fixture patients", fhir: "FHIR server: " + (patients.fhirServer || "") };
      for (const source of ["fixture", "fhir"]) {
        const members = state.patients.filter((p) => p.source === source);
        if (!members.length) continue;
        const group = document.createElement("optgroup");
        group.label = groups[source];
        for (const p of members) group.appendChild(option(p.key, p.label));
        $("patient").appendChild(group);
      }
      if (patients.fhirError) { text($("fhir-error"), patients.fhirError).hidden = false; }

      state.today = orders.today;
      state.offers = orders.services || {};
      for (const p of orders.priorities) $("priority").appendChild(option(p, p));
      const seed = state.patients.find((p) => p.key === "fixture:seed");
      if (seed) $("patient").value = seed.key;
      onPatientChange();
      $("order-form").dataset.ready = "true";
    } catch (e) {
      setStatus("The page could not load its data: " + e.message, true);
    }
  }

  // ------------------------------------------------------------------ signing

  async function sign(event) {
    event.preventDefault();
    const serviceId = $("service").value;
    const levels = Array.from($("levels").querySelectorAll("input:checked")).map((b) => b.value);
    $("cards").replaceChildren();
    setStatus("Preparing the order-sign request…");
    const prepared = await postJSON("api/request", {
      service: serviceId, patient: $("patient").value, cpt: $("cpt").value, levels: levels,
      priority: $("priority").value, date: $("date").value || null, prefetch: $("prefetch").checked,
      asWritten: !$("as-written-field").hidden && $("as-written").checked,
    });
    if (!prepared.ok) {
      setStatus("The order could not be prepared: " + describeError(prepared), true);
      return;
    }
    await send(serviceId, prepared.body.request);
  }

  // Sends an order-sign request and shows the answer (also used to sign again after DTR, dtr.js).
  async function send(serviceId, request) {
    $("cards").replaceChildren();
    text($("request-json"), JSON.stringify(request, null, 2));
    setStatus("Calling " + serviceId + "…");
    const started = performance.now();
    const answer = await postJSON("../cds-services/" + encodeURIComponent(serviceId), request);
    const ms = Math.round(performance.now() - started);
    text($("response-json"), typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body, null, 2));
    if (!answer.ok) {
      setStatus("The service answered HTTP " + answer.status + ": " + describeError(answer), true);
      return;
    }
    state.lastServiceId = serviceId;
    const cards = (answer.body && answer.body.cards) || [];
    setStatus(cards.length
      ? "HTTP " + answer.status + " in " + ms + " ms: " + cards.length + " card" + (cards.length > 1 ? "s" : "") + "."
      : "HTTP " + answer.status + " in " + ms + " ms: no cards (nothing to say about this order).");
    cards.forEach((card, n) => $("cards").appendChild(renderCard(card, n, serviceId)));
    if (window.FusionDtr) window.FusionDtr.show(answer.body, serviceId, request);
  }
  window.FusionTryit = { send: send };

  function describeError(exchange) {
    const b = exchange.body;
    if (b && typeof b === "object" && b.message) return b.message + (b.error ? " (" + b.error + ")" : "");
    return typeof b === "string" && b ? b.slice(0, 200) : "HTTP " + exchange.status;
  }

  // ------------------------------------------------------------------ cards

  function renderCard(card, n, serviceId) {
    const node = $("card-template").content.firstElementChild.cloneNode(true);
    const indicator = INDICATOR_TEXT[card.indicator] ? card.indicator : "info";
    const summaryId = "card-" + n + "-summary";
    node.classList.add("card--" + indicator);
    node.setAttribute("aria-labelledby", summaryId);
    node.dataset.uuid = card.uuid || "";
    text(node.querySelector(".indicator"), INDICATOR_TEXT[indicator]);
    const summary = node.querySelector(".summary");
    summary.id = summaryId;
    text(summary, card.summary);

    const source = card.source || {};
    const sourceNode = node.querySelector(".source");
    sourceNode.append("Source: ");
    const sourceHref = source.url && FusionMarkdown.safeHref(source.url);
    if (sourceHref) {
      const a = document.createElement("a");
      a.href = sourceHref; a.target = "_blank"; a.rel = "noopener noreferrer";
      sourceNode.appendChild(text(a, source.label || sourceHref));
    } else {
      sourceNode.append(source.label || "unknown");
    }
    if (source.topic && source.topic.display) sourceNode.append(" · " + source.topic.display);

    node.querySelector(".detail").appendChild(FusionMarkdown.render(card.detail || ""));
    renderSuggestions(node, card, serviceId);
    renderLinks(node, card);
    renderOverride(node, card, serviceId);
    return node;
  }

  function renderSuggestions(node, card, serviceId) {
    const suggestions = card.suggestions || [];
    if (!suggestions.length) return;
    const section = node.querySelector(".suggestions");
    section.hidden = false;
    if (card.selectionBehavior) {
      const hint = document.createElement("p");
      hint.className = "help";
      text(hint, card.selectionBehavior === "at-most-one" ? "Choose at most one." : "Choose any.");
      section.insertBefore(hint, section.querySelector(".suggestion-list"));
    }
    suggestions.forEach((s, k) => {
      const wrap = document.createElement("div");
      wrap.className = "suggestion";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "suggestion-button";
      button.setAttribute("aria-expanded", "false");
      const panelId = "card-" + (card.uuid || "x") + "-suggestion-" + k;
      button.setAttribute("aria-controls", panelId);
      text(button, s.label);
      const panel = document.createElement("div");
      panel.className = "actions";
      panel.id = panelId;
      panel.hidden = true;
      for (const action of s.actions || []) {
        const p = document.createElement("p");
        p.className = "action-description";
        const type = document.createElement("strong");
        text(type, (action.type || "action") + ": ");
        p.append(type, action.description || "");
        panel.appendChild(p);
        if (action.resource) {
          const pre = document.createElement("pre");
          pre.className = "json action-resource";
          pre.tabIndex = 0;
          pre.setAttribute("aria-label", "FHIR " + (action.resource.resourceType || "resource") + " of this action");
          text(pre, JSON.stringify(action.resource, null, 2));
          panel.appendChild(pre);
        } else if (action.resourceId) {
          panel.appendChild(text(document.createElement("p"), "Resource: " + action.resourceId));
        }
      }
      const accept = document.createElement("button");
      accept.type = "button";
      accept.className = "accept";
      text(accept, "Accept this suggestion");
      accept.disabled = !(card.uuid && s.uuid);
      accept.addEventListener("click", async () => {
        accept.disabled = true;
        wrap.classList.add("accepted");
        if (card.selectionBehavior === "at-most-one") {
          for (const other of node.querySelectorAll(".accept")) other.disabled = true;
        }
        await sendFeedback(node, serviceId, {
          card: card.uuid, outcome: "accepted", acceptedSuggestions: [{ id: s.uuid }],
          outcomeTimestamp: new Date().toISOString(),
        });
      });
      panel.appendChild(accept);
      button.addEventListener("click", () => {
        panel.hidden = !panel.hidden;
        button.setAttribute("aria-expanded", String(!panel.hidden));
      });
      wrap.append(button, panel);
      section.querySelector(".suggestion-list").appendChild(wrap);
    });
  }

  function renderLinks(node, card) {
    const links = card.links || [];
    if (!links.length) return;
    node.querySelector(".links").hidden = false;
    const list = node.querySelector(".link-list");
    for (const l of links) {
      const li = document.createElement("li");
      const href = FusionMarkdown.safeHref(l.url || "");
      if (href) {
        const a = document.createElement("a");
        a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
        li.appendChild(text(a, l.label || href));
      } else {
        li.append(l.label || "");
      }
      if (l.type === "smart") li.append(" (SMART app: an EHR would launch it with its launch context)");
      list.appendChild(li);
    }
  }

  function renderOverride(node, card, serviceId) {
    const uid = "card-" + (card.uuid || Math.random().toString(36).slice(2));
    const select = node.querySelector(".override-reason");
    const comment = node.querySelector(".override-comment");
    select.id = uid + "-reason";
    comment.id = uid + "-comment";
    node.querySelector(".override-reason-label").htmlFor = select.id;
    node.querySelector(".override-comment-label").htmlFor = comment.id;
    select.appendChild(option("", "No reason given"));
    (card.overrideReasons || []).forEach((r, k) => select.appendChild(option(String(k), r.display || r.code)));
    const button = node.querySelector(".dismiss");
    button.disabled = !card.uuid; // CDS Hooks 2.0: no uuid, no feedback
    button.addEventListener("click", async () => {
      const item = { card: card.uuid, outcome: "overridden", outcomeTimestamp: new Date().toISOString() };
      const reason = select.value === "" ? null : card.overrideReasons[Number(select.value)];
      const userComment = comment.value.trim();
      if (reason || userComment) {
        item.overrideReason = {};
        if (reason) {
          item.overrideReason.reason = { code: reason.code, system: reason.system };
          if (reason.display) item.overrideReason.reason.display = reason.display;
        }
        if (userComment) item.overrideReason.userComment = userComment;
      }
      button.disabled = true;
      node.classList.add("dismissed");
      await sendFeedback(node, serviceId, item);
      button.disabled = false;
    });
  }

  async function sendFeedback(node, serviceId, item) {
    const out = node.querySelector(".feedback-result");
    text(out, "Sending feedback…");
    try {
      const answer = await postJSON("../cds-services/" + encodeURIComponent(serviceId) + "/feedback", { feedback: [item] });
      const body = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
      out.classList.toggle("error", !answer.ok);
      const verdict = answer.ok ? "Feedback sent (" + item.outcome + ")" : "Feedback not accepted";
      text(out, verdict + ": HTTP " + answer.status + (body ? " " + body.slice(0, 300) : ""));
      out.dataset.status = String(answer.status);
    } catch (e) {
      out.classList.add("error");
      text(out, "Feedback failed: " + e.message);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("patient").addEventListener("change", onPatientChange);
    $("service").addEventListener("change", onServiceChange);
    $("as-written").addEventListener("change", onAsWrittenChange);
    $("order-form").addEventListener("submit", (e) => {
      sign(e).catch((err) => setStatus("Something went wrong: " + err.message, true));
    });
    load();
  });
})();
