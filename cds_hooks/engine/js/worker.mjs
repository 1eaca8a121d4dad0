// Long-lived CQL evaluation worker for cds_hooks/engine/bridge.py.
// Protocol: newline-delimited JSON on stdin/stdout, one request per line:
//   {"id": n, "op": "load"|"evaluate"|"ping"|"stats", ...}
//   -> {"id": n, "ok": true, "result": ..., "ms": {"parse", "evaluate", "cpu"}}
//    | {"id": n, "ok": false, "error": {"type", "message"}, "ms": {...}}
// stdout carries protocol lines only; every log goes to stderr (the Python side drains it).
import path from "node:path";
import util from "node:util";
import readline from "node:readline";
import { createRequire } from "node:module";
import { installShortcuts } from "./accelerate.mjs";
import { installModelCache } from "./modelcache.mjs";

for (const k of ["log", "info", "warn", "debug", "trace"]) {
  console[k] = (...args) => process.stderr.write(`${util.format(...args)}\n`);
}

// CDS_NODE_MODULES lets an installed (non-editable) Python package point at the project's
// node_modules; otherwise normal resolution from this file's location applies.
const require = createRequire(import.meta.url);
const load = (name) =>
  require(process.env.CDS_NODE_MODULES ? require.resolve(name, { paths: [process.env.CDS_NODE_MODULES] }) : name);
installModelCache(load, process.env.CDS_NODE_MODULES || path.join(path.dirname(require.resolve("cql-execution/package.json")), ".."));
const cql = load("cql-execution");
const { PatientSource } = load("cql-exec-fhir");

const SYSTEM = "{urn:hl7-org:elm-types:r1}";

class RequestError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

// ---------------------------------------------------------------- terminology

/** TerminologyProvider over FHIR ValueSets, keyed by url then version ("" = unversioned). */
class ValueSetCodeService {
  constructor(valuesets) {
    this.byUrl = new Map();
    for (const vs of valuesets) {
      if (!vs || typeof vs !== "object" || !vs.url) throw new RequestError("bad_request", "every ValueSet needs a url");
      const codes = [];
      const contains = (list) => {
        for (const c of list || []) {
          if (c.code != null && !c.abstract) codes.push(new cql.Code(c.code, c.system, c.version, c.display));
          contains(c.contains); // expansions may nest
        }
      };
      if (vs.expansion && Array.isArray(vs.expansion.contains)) {
        contains(vs.expansion.contains);
      } else {
        for (const inc of vs.compose?.include || []) {
          if (inc.valueSet?.length || inc.filter?.length) {
            throw new RequestError(
              "bad_request",
              `ValueSet ${vs.url}: compose.include with valueSet/filter needs a pre-computed expansion`,
            );
          }
          for (const c of inc.concept || []) codes.push(new cql.Code(c.code, inc.system, inc.version, c.display));
        }
      }
      const version = vs.version ?? "";
      if (!this.byUrl.has(vs.url)) this.byUrl.set(vs.url, new Map());
      this.byUrl.get(vs.url).set(version, new cql.ValueSet(vs.url, vs.version, codes));
    }
  }

  findValueSetsByOid(url) {
    return [...(this.byUrl.get(url)?.values() || [])];
  }

  findValueSet(url, version) {
    const versions = this.byUrl.get(url);
    if (!versions) return null;
    if (version != null) {
      // A versioned CQL declaration also accepts a ValueSet loaded without a version.
      return versions.get(version) ?? versions.get("") ?? null;
    }
    if (versions.size === 1) return versions.values().next().value;
    const keys = [...versions.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    return versions.get(keys[keys.length - 1]);
  }
}

// ---------------------------------------------------------------- state

const state = {
  patientSource: PatientSource.FHIRv401(), // expensive (parses the model info): build once
  elm: [], // ELM JSON of every loaded library
  repository: null,
  libraries: new Map(), // "id|version" -> cql.Library (built lazily, reused)
  codeService: new ValueSetCodeService([]),
};

const shortcuts = installShortcuts(load, state.patientSource);

const libKey = (id, version) => `${id}|${version ?? ""}`;

// ---------------------------------------------------------------- static overload dispatch

// cql-execution picks among overloads at run time by testing each argument against every overload's
// operand types; with FHIRHelpers' 251 ToString overloads that dominated evaluation time (~0.5 ms per
// call). The translator already resolved each call (FunctionRef.signature, signature level
// Overloads), so give every overload an alias named after its operand types and point each call with
// a signature at its alias. Calls without a signature keep dynamic dispatch.
function typeKey(t) {
  if (t == null) return "?";
  if (typeof t === "string") return t;
  switch (t.type) {
    case "NamedTypeSpecifier":
      return t.name;
    case "ListTypeSpecifier":
      return `List<${typeKey(t.elementType)}>`;
    case "IntervalTypeSpecifier":
      return `Interval<${typeKey(t.pointType)}>`;
    case "ChoiceTypeSpecifier":
      return `Choice<${(t.choice || []).map(typeKey).join(",")}>`;
    case "TupleTypeSpecifier":
      return `Tuple{${(t.element || []).map((e) => `${e.name}:${typeKey(e.elementType ?? e.type)}`).join(",")}}`;
    default:
      return "?";
  }
}

const aliasName = (name, types) => `${name}#${types.join(",")}`;

function resolveOverloads(libs) {
  const byId = new Map(); // "id|version" and "id" -> { lib, aliases: Set }
  for (const l of libs) {
    const defs = l.library.statements?.def || [];
    const counts = new Map();
    for (const d of defs) if (d.type === "FunctionDef") counts.set(d.name, (counts.get(d.name) || 0) + 1);
    const aliases = new Set();
    for (const d of [...defs]) {
      if (d.type !== "FunctionDef" || counts.get(d.name) < 2) continue;
      const alias = aliasName(d.name, (d.operand || []).map((o) => typeKey(o.operandTypeSpecifier ?? o.operandType)));
      if (aliases.has(alias) || alias.includes("?")) continue;
      aliases.add(alias);
      defs.push({ ...d, name: alias });
    }
    const entry = { aliases };
    const { id, version } = l.library.identifier;
    byId.set(libKey(id, version), entry);
    if (!byId.has(id)) byId.set(id, entry);
  }
  for (const l of libs) {
    const self = byId.get(libKey(l.library.identifier.id, l.library.identifier.version));
    const includes = new Map(
      (l.library.includes?.def || []).map((i) => [i.localIdentifier, byId.get(libKey(i.path, i.version)) ?? byId.get(i.path)]),
    );
    const walk = (node) => {
      if (Array.isArray(node)) {
        for (const n of node) walk(n);
        return;
      }
      if (node === null || typeof node !== "object") return;
      if (node.type === "FunctionRef" && Array.isArray(node.signature) && node.signature.length > 0) {
        const target = node.libraryName ? includes.get(node.libraryName) : self;
        const alias = aliasName(node.name, node.signature.map(typeKey));
        if (target?.aliases.has(alias)) node.name = alias;
      }
      for (const v of Object.values(node)) if (v !== null && typeof v === "object") walk(v);
    };
    walk(l.library.statements);
    walk(l.library.parameters);
  }
}

function opLoad(req) {
  const libs = req.libraries ?? [];
  if (!Array.isArray(libs)) throw new RequestError("bad_request", "libraries must be an array of ELM JSON objects");
  for (const l of libs) {
    if (!l?.library?.identifier?.id) throw new RequestError("bad_request", "ELM library without library.identifier.id");
  }
  const codeService = new ValueSetCodeService(Array.isArray(req.valuesets) ? req.valuesets : []);
  // Keyed by identifier so a later copy of the same id+version replaces an earlier one.
  const data = {};
  for (const l of libs) data[libKey(l.library.identifier.id, l.library.identifier.version)] = l;
  state.elm = Object.values(data);
  resolveOverloads(state.elm);
  state.repository = new cql.Repository(data);
  state.libraries = new Map();
  state.codeService = codeService;
  return {
    libraries: state.elm.map((l) => ({ id: l.library.identifier.id, version: l.library.identifier.version ?? null })),
    valuesets: [...codeService.byUrl.keys()].length,
  };
}

function resolveLibrary(ref) {
  if (!ref || typeof ref.id !== "string") throw new RequestError("bad_request", "library.id is required");
  const candidates = state.elm
    .map((l) => l.library.identifier)
    .filter((i) => i.id === ref.id && (ref.version == null || i.version === ref.version));
  if (candidates.length === 0) {
    throw new RequestError("not_loaded", `library ${ref.id}${ref.version ? ` version '${ref.version}'` : ""} is not loaded`);
  }
  if (candidates.length > 1) {
    throw new RequestError("bad_request", `library ${ref.id} is loaded in several versions; give library.version`);
  }
  const version = candidates[0].version;
  const key = libKey(ref.id, version);
  let lib = state.libraries.get(key);
  if (!lib) {
    lib = state.repository.resolve(ref.id, version);
    for (const [name, inc] of Object.entries(lib.includes)) {
      if (!inc) throw new RequestError("not_loaded", `library ${ref.id} includes ${name}, which is not loaded`);
    }
    state.libraries.set(key, lib);
  }
  return lib;
}

// ---------------------------------------------------------------- parameters

function parseDateTime(v, name) {
  const d = typeof v === "string" ? cql.DateTime.parse(v) : null;
  if (!d) throw new RequestError("parameter", `parameter ${name}: expected an ISO 8601 date-time string, got ${JSON.stringify(v)}`);
  return d;
}

function convertParam(value, spec, name) {
  if (value == null) return null;
  const fail = (what) => {
    throw new RequestError("parameter", `parameter ${name}: expected ${what}, got ${JSON.stringify(value)}`);
  };
  switch (spec.type) {
    case "ListTypeSpecifier":
      if (!Array.isArray(value)) fail("an array");
      return value.map((v, i) => convertParam(v, spec.elementType, `${name}[${i}]`));
    case "IntervalTypeSpecifier":
      if (typeof value !== "object" || Array.isArray(value)) fail("an interval {low, high, lowClosed, highClosed}");
      return new cql.Interval(
        convertParam(value.low, spec.pointType, `${name}.low`),
        convertParam(value.high, spec.pointType, `${name}.high`),
        value.lowClosed ?? true,
        value.highClosed ?? true,
      );
    case "TupleTypeSpecifier": {
      if (typeof value !== "object" || Array.isArray(value)) fail("an object");
      const out = {};
      for (const el of spec.element || []) out[el.name] = convertParam(value[el.name], el.elementType ?? el.type, `${name}.${el.name}`);
      return out;
    }
    case "NamedTypeSpecifier":
      break;
    default:
      throw new RequestError("parameter", `parameter ${name}: unsupported parameter type ${spec.type}`);
  }
  switch (spec.name) {
    case `${SYSTEM}String`:
      return typeof value === "string" ? value : fail("a string");
    case `${SYSTEM}Boolean`:
      return typeof value === "boolean" ? value : fail("a boolean");
    case `${SYSTEM}Integer`:
      return Number.isInteger(value) ? value : fail("an integer");
    case `${SYSTEM}Decimal`:
      return typeof value === "number" && Number.isFinite(value) ? value : fail("a number");
    case `${SYSTEM}DateTime`:
      return parseDateTime(value, name);
    case `${SYSTEM}Date`: {
      const d = typeof value === "string" && /^\d{4}(-\d{2}(-\d{2})?)?$/.test(value) ? cql.Date.parse(value) : null;
      return d ?? fail("an ISO 8601 date string (YYYY[-MM[-DD]])");
    }
    case `${SYSTEM}Quantity`:
      if (typeof value !== "object" || typeof value.value !== "number") fail('{"value": number, "unit": string}');
      try {
        return new cql.Quantity(value.value, value.unit ?? "1");
      } catch (e) {
        throw new RequestError("parameter", `parameter ${name}: ${e.message}`);
      }
    case `${SYSTEM}Code`:
      if (typeof value !== "object" || typeof value.code !== "string") fail('{"code", "system", ...}');
      return new cql.Code(value.code, value.system, value.version, value.display);
    case `${SYSTEM}Concept`:
      if (typeof value !== "object" || !Array.isArray(value.codes)) fail('{"codes": [...], "display"}');
      return new cql.Concept(
        value.codes.map((c, i) => convertParam(c, { type: "NamedTypeSpecifier", name: `${SYSTEM}Code` }, `${name}.codes[${i}]`)),
        value.display,
      );
    default:
      throw new RequestError("parameter", `parameter ${name}: unsupported parameter type ${spec.name}`);
  }
}

function paramSpec(def) {
  if (def.parameterTypeSpecifier) return def.parameterTypeSpecifier;
  // Untyped parameters with a default: the translator records the default's type when
  // EnableResultTypes is on.
  const d = def.default;
  if (d?.resultTypeSpecifier) return d.resultTypeSpecifier;
  if (d?.resultTypeName) return { type: "NamedTypeSpecifier", name: d.resultTypeName };
  return null;
}

function convertParameters(lib, params) {
  if (params == null) return {};
  if (typeof params !== "object" || Array.isArray(params)) throw new RequestError("parameter", "parameters must be an object");
  const defs = new Map((lib.source.library.parameters?.def || []).map((d) => [d.name, d]));
  const out = {};
  for (const [name, value] of Object.entries(params)) {
    const def = defs.get(name);
    if (!def) {
      throw new RequestError("parameter", `unknown parameter ${JSON.stringify(name)} for library ${lib.name} (known: ${[...defs.keys()].join(", ") || "none"})`);
    }
    const spec = paramSpec(def);
    if (!spec) throw new RequestError("parameter", `parameter ${name}: cannot tell its type from the ELM`);
    out[name] = convertParam(value, spec, name);
  }
  return out;
}

// ---------------------------------------------------------------- results

function serialize(v) {
  if (v == null) return null;
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      return Number.isFinite(v) ? v : null;
    case "bigint":
      return Number(v);
    case "object":
      break;
    default:
      return String(v);
  }
  if (Array.isArray(v)) return v.map(serialize);
  if (v.isDateTime || v.isDate) return v.toString();
  if (typeof v.isTime === "function" && v.isTime()) return v.toString();
  if (v.isQuantity) return { value: v.value, unit: v.unit };
  if (v.isCode) return { code: v.code ?? null, system: v.system ?? null, display: v.display ?? null };
  if (v.isConcept) return { codes: (v.codes || []).map(serialize), display: v.display ?? null };
  if (v.isInterval) return { low: serialize(v.low), high: serialize(v.high), lowClosed: v.lowClosed, highClosed: v.highClosed };
  if (v.isRatio) return { numerator: serialize(v.numerator), denominator: serialize(v.denominator) };
  if (v.isValueSet) return { id: v.oid ?? v.id ?? null, version: v.version ?? null };
  // Imprecise date arithmetic yields a range; collapse it when it is exact.
  if (v.isUncertainty) return v.isPoint() ? serialize(v.low) : { low: serialize(v.low), high: serialize(v.high) };
  if (typeof v.getTypeInfo === "function" && "_json" in v) return fhirJson(v);
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = serialize(x);
    return out;
  }
  return String(v);
}

/** cql-exec-fhir objects wrap raw JSON; primitives are {value, extension...} wrappers. */
function fhirJson(o) {
  const json = o._json;
  if (json == null || typeof json !== "object") return json ?? null;
  const info = o.getTypeInfo();
  const isPrimitive =
    info && "value" in json && info.elements?.length <= 1 && !json.resourceType && Object.keys(json).every((k) => k === "value" || k === "id" || k === "extension");
  return isPrimitive ? json.value : json;
}

// ---------------------------------------------------------------- evaluate

function bundleFor(resources, patientId) {
  const entries = [];
  let patient = null;
  for (const r of resources) {
    if (!r || typeof r !== "object" || typeof r.resourceType !== "string") {
      throw new RequestError("bad_request", "every resource needs a resourceType");
    }
    if (r.resourceType === "Patient" && (patient === null || (r.id === patientId && patient.id !== patientId))) patient = r;
    else entries.push({ resource: r });
  }
  // cql-exec-fhir takes the first Patient entry as the context patient.
  entries.unshift({ resource: patient ?? { resourceType: "Patient", id: patientId } });
  return { resourceType: "Bundle", type: "collection", entry: entries };
}

async function opEvaluate(req) {
  if (!state.repository) throw new RequestError("not_loaded", "no libraries loaded (send op=load first)");
  const lib = resolveLibrary(req.library);
  if (typeof req.patientId !== "string" || !req.patientId) throw new RequestError("bad_request", "patientId is required");
  const resources = req.resources ?? [];
  if (!Array.isArray(resources)) throw new RequestError("bad_request", "resources must be an array");
  const params = convertParameters(lib, req.parameters);
  let names = req.expressions;
  if (names == null) {
    names = Object.keys(lib.expressions);
  } else {
    if (!Array.isArray(names)) throw new RequestError("bad_request", "expressions must be an array of define names");
    const missing = names.filter((n) => !(n in lib.expressions));
    if (missing.length) throw new RequestError("bad_request", `library ${lib.name} has no define ${missing.map((n) => JSON.stringify(n)).join(", ")}`);
  }
  const executionDateTime = req.executionDateTime != null ? parseDateTime(req.executionDateTime, "executionDateTime") : undefined;

  const source = state.patientSource;
  source.reset();
  source.loadBundles([bundleFor(resources, req.patientId)]);
  try {
    const patient = source.currentPatient();
    let ctx;
    try {
      ctx = new cql.PatientContext(lib, patient, state.codeService, params, executionDateTime);
    } catch (e) {
      throw new RequestError("parameter", e.message);
    }
    const result = {};
    // One context for all defines, so shared sub-expressions are computed once.
    for (const name of names) {
      // A define already computed for another one is cached on the context: don't redo it.
      const value = name in ctx.context_values ? ctx.context_values[name] : await lib.expressions[name].execute(ctx);
      result[name] = serialize(value);
    }
    return result;
  } finally {
    source.reset(); // don't keep the patient's data alive between calls
    shortcuts?.endEvaluation();
  }
}

function opStats() {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    libraries: state.elm.length,
    valuesets: state.codeService.byUrl.size,
    uptime: process.uptime(),
    accelerated: shortcuts !== null,
  };
}

async function handle(req) {
  switch (req.op) {
    case "ping":
      return "pong";
    case "stats":
      return opStats();
    case "load":
      return opLoad(req);
    case "evaluate":
      return opEvaluate(req);
    default:
      throw new RequestError("bad_request", `unknown op ${JSON.stringify(req.op)}`);
  }
}

function errorOf(e) {
  if (e instanceof RequestError) return { type: e.type, message: e.message };
  // AnnotatedError (cql-execution) already names the library, expression and locator.
  return { type: "evaluation", message: e?.message ?? String(e) };
}

/** Milliseconds: reading the line, evaluating it, and the worker's CPU time for both (all threads). */
function timing(t0, t1, cpu0) {
  const cpu = process.cpuUsage(cpu0);
  return { parse: t1 - t0, evaluate: performance.now() - t1, cpu: (cpu.user + cpu.system) / 1000 };
}

const write = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// Requests are handled strictly one at a time: the patient source is shared state.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    let req;
    try {
      req = JSON.parse(line);
    } catch (e) {
      write({ id: null, ok: false, error: { type: "bad_request", message: `invalid JSON: ${e.message}` } });
      return;
    }
    const t1 = performance.now();
    const id = req && typeof req === "object" ? (req.id ?? null) : null;
    try {
      if (!req || typeof req !== "object" || Array.isArray(req)) throw new RequestError("bad_request", "request must be a JSON object");
      const result = await handle(req);
      write({ id, ok: true, result, ms: timing(t0, t1, cpu0) });
    } catch (e) {
      write({ id, ok: false, error: errorOf(e), ms: timing(t0, t1, cpu0) });
    }
  });
});
rl.on("close", () => {
  chain.then(() => process.exit(0));
});
process.on("uncaughtException", (e) => {
  process.stderr.write(`worker: uncaught exception: ${e?.stack ?? e}\n`);
});
process.on("unhandledRejection", (e) => {
  process.stderr.write(`worker: unhandled rejection: ${e?.stack ?? e}\n`);
});
