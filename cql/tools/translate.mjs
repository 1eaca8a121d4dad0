#!/usr/bin/env node
// Translates CQL to ELM JSON with @cqframework/cql.
//   node cql/tools/translate.mjs [--check] [DIR ...]
// DIR defaults to every folder under cql/ holding .cql files. Each DIR/X.cql becomes DIR/elm/X.json.
// Includes resolve from the same folder, then its rule pack's folder (for a folder such as
// cql/<pack>/dtr/), then cql/common/. --check translates in memory and exits 1
// listing every ELM file that is missing, differs, or has no CQL source any more.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// The translator logs through console.* and Kotlin's println (straight to process.stdout); only this
// script's own messages, all on stderr, should be seen. Nothing of ours goes to stdout.
for (const k of ["log", "info", "warn", "debug", "trace", "error"]) console[k] = () => {};
process.stdout.write = (_chunk, encoding, cb) => {
  const done = typeof encoding === "function" ? encoding : cb;
  if (typeof done === "function") done();
  return true;
};
const say = (msg) => process.stderr.write(`${msg}\n`);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CQL_ROOT = path.join(ROOT, "cql");
const COMMON = path.join(CQL_ROOT, "common");
const require = createRequire(path.join(ROOT, "package.json"));

const {
  CqlTranslator,
  LibraryManager,
  ModelManager,
  createModelInfoProvider,
  createLibrarySourceProvider,
  stringAsSource,
  createUcumService,
  CqlCompilerOptions,
  LibraryBuilder,
} = await import("@cqframework/cql/cql-to-elm");
const { SystemModelInfoProvider } = await import("@cqframework/cql/cql");
const { Pair } = await import("@cqframework/cql/kotlin-kotlin-stdlib");
const { BigDecimal } = await import("@cqframework/cql/shared");
const { UcumLhcUtils } = require("@lhncbc/ucum-lhc");

const FHIR_MODEL_INFO = path.join(
  path.dirname(require.resolve("cql-exec-fhir/package.json")),
  "lib/modelInfos/fhir-modelinfo-4.0.1.xml",
);

function makeUcumService() {
  const ucum = UcumLhcUtils.getInstance();
  const valid = new Map();
  // The translator only validates quantity-literal units; conversion/arithmetic are for its engine.
  return createUcumService(
    (value, from, to) => {
      const r = ucum.convertUnitTo(from, Number(value), to);
      if (r.status !== "succeeded") throw new Error(`cannot convert ${value} '${from}' to '${to}'`);
      return String(r.toVal);
    },
    (unit) => {
      if (!valid.has(unit)) {
        const r = ucum.validateUnitString(unit, false);
        valid.set(unit, r.status === "valid" ? null : `invalid UCUM unit '${unit}': ${r.msg.join("; ")}`);
      }
      return valid.get(unit);
    },
    (a, b) => new Pair(a.first.multiply(b.first), `(${a.second}).(${b.second})`),
    (a, b) => new Pair(BigDecimal.fromDouble(a.first.toDouble() / b.first.toDouble()), `(${a.second})/(${b.second})`),
  );
}

function makeModelManager() {
  const xml = fs.readFileSync(FHIR_MODEL_INFO, "utf8");
  const mm = new ModelManager();
  mm.modelInfoLoader.registerModelInfoProvider(new SystemModelInfoProvider(), true);
  mm.modelInfoLoader.registerModelInfoProvider(
    createModelInfoProvider((id, _system, version) =>
      id === "FHIR" && (version == null || version === "4.0.1") ? stringAsSource(xml) : null,
    ),
  );
  return mm;
}

function compilerOptions() {
  // No annotations/locators: they embed source text and positions, which churn ELM diffs. Result
  // types document each define's type; Overloads signatures let the engine dispatch statically.
  const o = new CqlCompilerOptions();
  const O = CqlCompilerOptions.Options;
  o.setOptions([O.EnableResultTypes, O.DisableListDemotion, O.DisableListPromotion]);
  o.signatureLevel = LibraryBuilder.SignatureLevel.Overloads;
  return o;
}

/** Folders under cql/ (recursively) that hold .cql files, skipping elm/ and tools/. */
function defaultDirs() {
  const out = [];
  const walk = (dir) => {
    const entries = fs.readdirSync(dir, { withFileTypes: true });
    if (entries.some((e) => e.isFile() && e.name.endsWith(".cql"))) out.push(dir);
    for (const e of entries) {
      if (e.isDirectory() && !["elm", "tools", "node_modules"].includes(e.name) && !e.name.startsWith(".")) {
        walk(path.join(dir, e.name));
      }
    }
  };
  walk(CQL_ROOT);
  return out.sort();
}

// TrackBack's fields are minified Kotlin names; its toString() and its VersionedIdentifier are stable.
function describeLocation(err, sourceFiles) {
  const tb = err.locator;
  if (!tb) return "";
  const s = String(tb);
  const line = /startLine=(\d+)/.exec(s)?.[1];
  const col = /startChar=(\d+)/.exec(s)?.[1];
  const lib = Object.values(tb).find((v) => v && typeof v === "object" && "id" in v && "version" in v);
  const libId = lib?.id ?? "?";
  const file = sourceFiles.get(libId) ?? `${libId}.cql`;
  return `${file}:${line ?? "?"}:${col ?? "?"}: [library ${libId}${lib?.version ? ` version '${lib.version}'` : ""}] `;
}

function translateDir(dir, modelManager, ucumService) {
  const rel = (p) => path.relative(process.cwd(), p) || ".";
  const sourceFiles = new Map(); // library id -> display path, for error messages
  const findSource = (id) => {
    // A folder inside a rule pack (its dtr/ libraries) also includes the pack's own libraries.
    const pack = fs.existsSync(path.join(path.dirname(dir), "pack.json")) ? [path.dirname(dir)] : [];
    for (const d of [dir, ...pack, COMMON]) {
      const p = path.join(d, `${id}.cql`);
      if (fs.existsSync(p)) return p;
    }
    return null;
  };
  const libraryManager = new LibraryManager(modelManager, compilerOptions(), null, ucumService);
  libraryManager.librarySourceLoader.registerProvider(
    createLibrarySourceProvider((id) => {
      const p = findSource(id);
      if (!p) return null;
      sourceFiles.set(id, rel(p));
      return stringAsSource(fs.readFileSync(p, "utf8"));
    }),
  );
  const results = [];
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".cql")).sort();
  for (const f of files) {
    const src = path.join(dir, f);
    const name = f.slice(0, -4);
    sourceFiles.set(name, rel(src));
    const translator = CqlTranslator.fromText(fs.readFileSync(src, "utf8"), libraryManager);
    const errors = translator.errors.asJsReadonlyArrayView();
    // The translator can report the same problem twice (parser and semantic pass).
    const report = (list, kind) => {
      for (const m of new Set(list.map((e) => `${describeLocation(e, sourceFiles) || `${rel(src)}: `}${kind}: ${e.message}`))) say(m);
    };
    report(translator.warnings.asJsReadonlyArrayView(), "warning");
    if (errors.length > 0) {
      report(errors, "error");
      results.push({ src, out: null });
      continue;
    }
    const elm = `${JSON.stringify(JSON.parse(translator.toJson()), null, 2)}\n`;
    results.push({ src, out: path.join(dir, "elm", `${name}.json`), elm });
  }
  return results;
}

function main(argv) {
  const check = argv.includes("--check");
  const unknown = argv.filter((a) => a.startsWith("-") && a !== "--check");
  if (unknown.length) {
    say(`unknown option ${unknown[0]}\nusage: node cql/tools/translate.mjs [--check] [DIR ...]`);
    return 2;
  }
  const dirs = argv.filter((a) => !a.startsWith("-")).map((d) => path.resolve(d));
  const targets = dirs.length ? dirs : defaultDirs();
  const modelManager = makeModelManager();
  const ucumService = makeUcumService();
  let failed = false;
  const stale = [];
  for (const dir of targets) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      say(`${dir}: not a directory`);
      failed = true;
      continue;
    }
    const results = translateDir(dir, modelManager, ucumService);
    const expected = new Set();
    for (const r of results) {
      if (!r.out) {
        failed = true;
        continue;
      }
      expected.add(path.basename(r.out));
      const current = fs.existsSync(r.out) ? fs.readFileSync(r.out, "utf8") : null;
      if (check) {
        if (current === null) stale.push(`${path.relative(ROOT, r.out)} (missing)`);
        else if (current !== r.elm) stale.push(`${path.relative(ROOT, r.out)} (differs from ${path.basename(r.src)})`);
      } else if (current !== r.elm) {
        fs.mkdirSync(path.dirname(r.out), { recursive: true });
        fs.writeFileSync(r.out, r.elm);
        say(`wrote ${path.relative(ROOT, r.out)}`);
      }
    }
    const elmDir = path.join(dir, "elm");
    if (check && fs.existsSync(elmDir)) {
      for (const f of fs.readdirSync(elmDir).sort()) {
        if (f.endsWith(".json") && !expected.has(f) && results.every((r) => path.basename(r.src, ".cql") !== f.slice(0, -5))) {
          stale.push(`${path.relative(ROOT, path.join(elmDir, f))} (no ${f.slice(0, -5)}.cql source)`);
        }
      }
    }
  }
  if (stale.length) {
    say(`stale ELM (run node cql/tools/translate.mjs):\n${stale.map((s) => `  ${s}`).join("\n")}`);
    return 1;
  }
  return failed ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
