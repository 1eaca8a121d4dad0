// The try-it page's CRD and DTR side.
//
// Da Vinci CRD 2.2.1 "Coverage Information": the response's systemActions carry each order with the
// ext-coverage-information extension; they are listed under the cards. When one asks for
// documentation with a questionnaire, Da Vinci DTR 2.x: the page calls the service's
// $questionnaire-package (as an EHR's DTR client would), has the questionnaire pre-populated from the
// record it sent (/try/api/prepopulate runs the package's CQL), shows it as a form, and on
// completion signs the order again with the completed QuestionnaireResponse in the prefetch.
// Every text from the service is inserted as text, never as HTML.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const CI = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information";
  const state = { serviceId: null, request: null, questionnaire: null };

  function text(node, value) { node.textContent = value == null ? "" : String(value); return node; }

  function parts(ext) {
    const out = {};
    for (const p of ext.extension || []) {
      const key = Object.keys(p).find((k) => k.startsWith("value"));
      (out[p.url] = out[p.url] || []).push(p[key]);
    }
    return out;
  }

  async function post(url, body) {
    const r = await fetch(url, { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", Accept: "application/json" } });
    let parsed = null;
    try { parsed = await r.json(); } catch (e) { /* not JSON */ }
    return { ok: r.ok, status: r.status, body: parsed };
  }

  function show(response, serviceId, request) {
    state.serviceId = serviceId;
    state.request = request;
    const list = $("coverage-list");
    list.replaceChildren();
    $("questionnaire-form").hidden = true;
    text($("dtr-status"), "");
    let questionnaire = null;
    for (const action of (response && response.systemActions) || []) {
      const resource = action.resource || {};
      for (const ext of (resource.extension || []).filter((e) => e.url === CI)) {
        const p = parts(ext);
        const dl = document.createElement("dl");
        dl.className = "coverage-info";
        const rows = [
          ["Order", resource.resourceType + "/" + resource.id],
          ["Coverage", ((p.coverage || [])[0] || {}).reference || ((p.coverage || [])[0] || {}).display],
          ["Covered", (p.covered || []).join(", ")],
          ["Prior authorization", (p["pa-needed"] || []).join(", ")],
          ["Documentation", (p["doc-needed"] || []).join(", ") + ((p["doc-purpose"] || []).length ? " (" + p["doc-purpose"].join(", ") + ")" : "")],
          ["Reason", ((p.reason || [])[0] || {}).text],
          ["Questionnaire", (p.questionnaire || [])[0]],
          ["Assertion", (p["coverage-assertion-id"] || [])[0] + " on " + (p.date || [])[0]],
        ];
        for (const [label, value] of rows) {
          if (!value || value === " ()") continue;
          dl.append(text(document.createElement("dt"), label), text(document.createElement("dd"), value));
        }
        list.appendChild(dl);
        if ((p.questionnaire || []).length) questionnaire = p.questionnaire[0];
      }
    }
    $("coverage").hidden = !list.children.length;
    $("open-questionnaire").hidden = !questionnaire;
  }

  async function openQuestionnaire() {
    text($("dtr-status"), "Fetching the questionnaire package…");
    const coverage = ((((state.request.prefetch || {}).coverage || {}).entry || [])[0] || {}).resource;
    const base = "../cds-services/" + encodeURIComponent(state.serviceId) + "/dtr/Questionnaire/$questionnaire-package";
    const pkg = await post(base, { resourceType: "Parameters", parameter: coverage ? [{ name: "coverage", resource: coverage }] : [] });
    if (!pkg.ok) { text($("dtr-status"), "The questionnaire package could not be fetched: HTTP " + pkg.status); return; }
    text($("dtr-status"), "Pre-populating from the record…");
    const filled = await post("api/prepopulate", { service: state.serviceId, request: state.request });
    if (!filled.ok) { text($("dtr-status"), "Pre-population failed: " + ((filled.body || {}).message || filled.status)); return; }
    const bundle = pkg.body.parameter.find((p) => p.name === "PackageBundle").resource;
    state.questionnaire = bundle.entry[0].resource;
    renderForm(state.questionnaire, filled.body.response);
    text($("dtr-status"), "Pre-populated: " + filled.body.response.item.filter((i) => i.answer).length + " of "
      + filled.body.response.item.length + " items answered from the record.");
  }

  function answerValue(response, linkId) {
    const item = response.item.find((i) => i.linkId === linkId);
    const a = item && item.answer && item.answer[0];
    return a ? a[Object.keys(a).find((k) => k.startsWith("value"))] : null;
  }

  function renderForm(questionnaire, response) {
    text($("questionnaire-title"), questionnaire.title);
    const holder = $("questionnaire-items");
    holder.replaceChildren();
    for (const item of questionnaire.item) {
      const value = answerValue(response, item.linkId);
      const wrap = document.createElement("div");
      wrap.className = "field";
      const id = "q-" + item.linkId;
      const label = text(document.createElement("label"), item.text);
      label.htmlFor = id;
      let input;
      if (item.type === "choice") {
        input = document.createElement("select");
        input.appendChild(new Option("(not answered)", ""));
        for (const o of item.answerOption || []) input.appendChild(new Option(o.valueCoding.display, o.valueCoding.code));
        input.value = value ? value.code : "";
      } else if (item.type === "boolean") {
        input = document.createElement("select");
        for (const [v, l] of [["", "(not answered)"], ["true", "Yes"], ["false", "No"]]) input.appendChild(new Option(l, v));
        input.value = value == null ? "" : String(value);
      } else {
        input = document.createElement("input");
        input.type = { integer: "number", decimal: "number", date: "date" }[item.type] || "text";
        if (item.type === "decimal") input.step = "any";
        input.value = value == null ? "" : String(value);
      }
      input.id = id;
      input.dataset.linkId = item.linkId;
      input.dataset.type = item.type;
      wrap.className = "field" + (value == null ? "" : " prepopulated");
      wrap.append(label, input);
      holder.appendChild(wrap);
    }
    $("questionnaire-form").hidden = false;
  }

  function answers() {
    const items = [];
    for (const input of $("questionnaire-items").querySelectorAll("[data-link-id]")) {
      const item = state.questionnaire.item.find((i) => i.linkId === input.dataset.linkId);
      const out = { linkId: item.linkId, text: item.text };
      const v = input.value;
      if (v !== "") {
        if (item.type === "choice") out.answer = [{ valueCoding: item.answerOption.find((o) => o.valueCoding.code === v).valueCoding }];
        else if (item.type === "boolean") out.answer = [{ valueBoolean: v === "true" }];
        else if (item.type === "integer") out.answer = [{ valueInteger: parseInt(v, 10) }];
        else if (item.type === "decimal") out.answer = [{ valueDecimal: Number(v) }];
        else if (item.type === "date") out.answer = [{ valueDate: v }];
        else out.answer = [{ valueString: v }];
      }
      items.push(out);
    }
    return items;
  }

  async function completeAndResign(event) {
    event.preventDefault();
    const request = JSON.parse(JSON.stringify(state.request));
    const qr = {
      resourceType: "QuestionnaireResponse",
      id: "tryit-dtr-" + Date.now(),
      questionnaire: state.questionnaire.url + "|" + state.questionnaire.version,
      status: "completed",
      subject: { reference: "Patient/" + request.context.patientId },
      author: { reference: request.context.userId, display: "Try-it surgeon" },
      authored: new Date().toISOString().slice(0, 19) + "Z",
      item: answers(),
    };
    request.hookInstance = crypto.randomUUID();
    request.prefetch = request.prefetch || {};
    request.prefetch.questionnaireResponses = { resourceType: "Bundle", type: "searchset", entry: [{ resource: qr }] };
    await window.FusionTryit.send(state.serviceId, request);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("open-questionnaire").addEventListener("click", () => {
      openQuestionnaire().catch((e) => text($("dtr-status"), "Something went wrong: " + e.message));
    });
    $("questionnaire-form").addEventListener("submit", (e) => {
      completeAndResign(e).catch((err) => text($("dtr-status"), "Something went wrong: " + err.message));
    });
  });
  window.FusionDtr = { show: show };
})();
