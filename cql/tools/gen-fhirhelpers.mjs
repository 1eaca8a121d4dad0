#!/usr/bin/env node
// Generates cql/common/FHIRHelpers.cql from the conversionInfo entries of the FHIR 4.0.1 model info
// shipped with cql-exec-fhir, so the library defines exactly the implicit conversions the translator
// asks for (FHIR.X -> System.Y). Usage: node cql/tools/gen-fhirhelpers.mjs [--check]
// --check: exit 1 if the committed file differs from what would be generated.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const OUT = path.join(ROOT, "cql/common/FHIRHelpers.cql");
const require = createRequire(path.join(ROOT, "package.json"));
const MODEL_INFO = path.join(
  path.dirname(require.resolve("cql-exec-fhir/package.json")),
  "lib/modelInfos/fhir-modelinfo-4.0.1.xml",
);

const UCUM = "http://unitsofmeasure.org";

function attrs(text) {
  const out = {};
  for (const m of text.matchAll(/([\w:]+)="([^"]*)"/g)) {
    out[m[1]] = m[2].replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }
  return out;
}

/** Parse the two things we need from the model info: conversions and class elements. */
function parseModelInfo(xml) {
  const conversions = [...xml.matchAll(/<conversionInfo\b((?:[^>"]|"[^"]*")*?)\/>/g)].map((m) => attrs(m[1]));
  const types = new Map();
  for (const m of xml.matchAll(/<typeInfo\b((?:[^>"]|"[^"]*")*?)(?:\/>|>([\s\S]*?)<\/typeInfo>)/g)) {
    const a = attrs(m[1]);
    const elements = new Map();
    for (const e of (m[2] || "").matchAll(/<element\b((?:[^>"]|"[^"]*")*?)\/?>/g)) {
      const ea = attrs(e[1]);
      if (ea.name && ea.elementType) elements.set(ea.name, ea.elementType);
    }
    types.set(`${a.namespace}.${a.name}`, { baseType: a.baseType, elements });
  }
  return { conversions, types };
}

/** Type of `value` on a FHIR primitive, following the base type chain (positiveInt -> integer). */
function primitiveValueType(types, name) {
  for (let t = types.get(name); t; t = types.get(t.baseType)) {
    if (t.elements.has("value")) return t.elements.get("value");
  }
  return null;
}

// Hand-written bodies for the structured conversions; key is "Function(fromType)".
const STRUCTURED = {
  "ToCode(FHIR.Coding)": {
    param: "coding",
    body: `if coding is null then null
  else System.Code {
    code: coding.code.value,
    system: coding.system.value,
    version: coding.version.value,
    display: coding.display.value
  }`,
  },
  "ToConcept(FHIR.CodeableConcept)": {
    param: "concept",
    body: `if concept is null then null
  else System.Concept {
    codes: concept.coding C return ToCode(C),
    display: concept.text.value
  }`,
  },
  "ToQuantity(FHIR.Quantity)": {
    param: "quantity",
    // A comparator ('<', '>=', ...) makes the value a bound, not a measurement: treating '< 5 mm' as
    // 5 mm would make "> 4 'mm'" true. Returning null keeps such values "unknown" in criteria.
    body: `case
    when quantity is null then null
    when quantity.value is null then null
    when quantity.comparator is not null then null
    else System.Quantity { value: quantity.value.value, unit: QuantityUnit(quantity) }
  end`,
  },
  "ToRatio(FHIR.Ratio)": {
    param: "ratio",
    body: `if ratio is null then null
  else System.Ratio { numerator: ToQuantity(ratio.numerator), denominator: ToQuantity(ratio.denominator) }`,
  },
  "ToInterval(FHIR.Period)": {
    param: "period",
    // FHIR: a missing start is unknown (open null low); a missing end means ongoing (closed null
    // high, i.e. unbounded), so "ongoing" periods still contain dates after their start.
    body: `if period is null then null
  else if period."start" is null then Interval(null, period."end".value]
  else Interval[period."start".value, period."end".value]`,
  },
  "ToInterval(FHIR.Range)": {
    param: "range",
    // FHIR: a missing low or high boundary is unknown, hence an open null end.
    body: `if range is null then null
  else if range.low is null and range.high is null then null
  else if range.low is null then Interval(null, ToQuantity(range.high)]
  else if range.high is null then Interval[ToQuantity(range.low), null)
  else Interval[ToQuantity(range.low), ToQuantity(range.high)]`,
  },
};

const HELPERS = `// The unit of a FHIR Quantity as CQL expects it: the UCUM code when the system is UCUM (or absent),
// else the human-readable unit, else '1'. UCUM time units become CQL calendar units so that
// date arithmetic (e.g. "onset + 6 weeks") works on converted values.
define function QuantityUnit(quantity FHIR.Quantity) returns System.String:
  ToCalendarUnit(
    Coalesce(
      if quantity.system is null or quantity.system.value = '${UCUM}' then quantity.code.value else null,
      quantity.unit.value,
      '1'
    )
  )

define function ToCalendarUnit(unit System.String) returns System.String:
  case unit
    when 'a' then 'year'
    when 'mo' then 'month'
    when 'wk' then 'week'
    when 'd' then 'day'
    when 'h' then 'hour'
    when 'min' then 'minute'
    when 's' then 'second'
    when 'ms' then 'millisecond'
    else unit
  end
`;

function generate(xml) {
  const { conversions, types } = parseModelInfo(xml);
  const fhir = conversions.filter((c) => c.functionName?.startsWith("FHIRHelpers."));
  if (fhir.length === 0) throw new Error("no FHIRHelpers conversionInfo entries found in model info");
  fhir.sort((a, b) =>
    a.functionName === b.functionName
      ? a.fromType.localeCompare(b.fromType, "en")
      : a.functionName.localeCompare(b.functionName, "en"),
  );
  const blocks = [];
  const seen = new Set();
  for (const c of fhir) {
    const fn = c.functionName.slice("FHIRHelpers.".length);
    const key = `${fn}(${c.fromType})`;
    if (seen.has(key)) continue;
    seen.add(key);
    const ret = c.toType;
    const valueType = primitiveValueType(types, c.fromType);
    if (STRUCTURED[key]) {
      const { param, body } = STRUCTURED[key];
      blocks.push(`define function ${fn}(${param} ${c.fromType}) returns ${ret}:\n  ${body}\n`);
    } else if (valueType === ret) {
      // Primitive wrapper (FHIR.string, FHIR.dateTime, code enums, ...): cql-exec-fhir has already
      // turned .value into the System type, so the conversion is just the value.
      blocks.push(`define function ${fn}(element ${c.fromType}) returns ${ret}:\n  element.value\n`);
    } else {
      throw new Error(`no conversion body for ${key} -> ${ret} (value type ${valueType}); extend STRUCTURED`);
    }
  }
  return `// GENERATED by cql/tools/gen-fhirhelpers.mjs from the conversionInfo entries of
// cql-exec-fhir's fhir-modelinfo-4.0.1.xml. Do not edit by hand: change the script and rerun
//   node cql/tools/gen-fhirhelpers.mjs && node cql/tools/translate.mjs cql/common
// ${blocks.length} conversion functions. Null in -> null out for every function.
library FHIRHelpers version '4.0.1'

using FHIR version '4.0.1'

${HELPERS}
${blocks.join("\n")}`;
}

const text = generate(fs.readFileSync(MODEL_INFO, "utf8"));
if (process.argv.includes("--check")) {
  const current = fs.existsSync(OUT) ? fs.readFileSync(OUT, "utf8") : null;
  if (current !== text) {
    process.stderr.write(`${path.relative(ROOT, OUT)} is stale: run node cql/tools/gen-fhirhelpers.mjs\n`);
    process.exit(1);
  }
} else {
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, text);
  process.stderr.write(`wrote ${path.relative(ROOT, OUT)}\n`);
}
