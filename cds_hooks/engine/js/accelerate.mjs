// Exact shortcuts inside cql-execution and cql-exec-fhir, installed by worker.mjs.
//
// Profiles of one seed evaluation (node --cpu-prof on the worker) showed about half of the time in
// one place: every CQL query is `distinct` unless it says `all`, and cql-execution deduplicates a
// list (list.toDistinctList) by computing a value key (immutableUtil.toNormalizedKey) for each
// element. For a FHIR resource that key walks every element of the resource, wrapping each one in a
// new FHIRObject and parsing every date with luxon (~45 µs per resource), and most query results
// here are single values or lists of resources. Seven shortcuts, none of which changes what any
// expression returns:
//
// 1. Lists of fewer than two elements are distinct (most query results here are single values).
// 2. Distinct FHIR resources. Two resources with different `id`s always have different keys (the key
//    holds the `id` element), and resources of different types too (it holds the type hierarchy).
//    So a list made only of FHIR resources whose (type, id) pairs are all different is already
//    distinct, and is returned as it is (in order, as toDistinctList would). Any other list (a
//    repeated or missing id, nulls, tuples, mixed values) goes through the original.
// 3. Distinct strings, numbers and booleans: keyed by themselves in both (SameValueZero), so a JS Set
//    gives the same result without building an immutable Set.
// 4. Memoised keys and class lookups. The key of a FHIR element is a pure function of its JSON and
//    its model type, and nothing mutates the JSON of an evaluation, so it is computed once per (JSON
//    object, type); `ModelInfo.findClass` (a lookup by name for every wrapped element) once per name.
// 5. Memoised element access. `FHIRObject.get(field)` wraps the element in a new FHIRObject on every
//    access (defining a getter per model element each time), and CQL functions such as
//    "Procedure Start"(P) read the same elements of the same resources again and again. The result
//    is a pure function of (JSON, type, field): FHIR wrappers, lists of them and plain values are
//    kept per (JSON object, type, field); lists are handed out as copies. CQL system values (DateTime,
//    Quantity, ...) are not kept, since cql-execution mutates a few of them in place. FHIR wrappers
//    themselves have getters only: nothing can change a kept one.
// 6. Date and time parsing once per string and evaluation. cql-execution's DateTime.parse and
//    Date.parse validate every string with luxon (~30 µs each), and the same dates are read many
//    times. A parse is a pure function of its string (a DateTime without an offset takes the
//    current local offset, which cannot change within one evaluation), so the first result of an
//    evaluation is kept and every call gets a copy (the values are mutable); the worker calls
//    `endEvaluation()` after each evaluation, which empties the cache.
// 7. Retrieve wrappers once per evaluation. `Patient.findRecords` filters the bundle and wraps every
//    resource of the type in a new FHIRObject on every retrieve (a getter per model element each
//    time), and the library retrieves Observations, Procedures and Conditions many times. Its result
//    is a pure function of (patient, profile, datatype) within an evaluation, and the wrappers have
//    getters only, so the first result is kept and every retrieve gets a copy of the list.
//
// tests/test_engine_accelerate.py evaluates every fixture with these on and off (CDS_ENGINE_ACCELERATE=0,
// the reference engine as published) and requires identical results.

/**
 * @param {Function} load - resolves a package path the way worker.mjs does
 * @param {object} patientSource - the worker's cql-exec-fhir PatientSource (idle: no bundle loaded)
 * @returns {{endEvaluation: Function} | null} null when the shortcuts are turned off
 */
export function installShortcuts(load, patientSource) {
  if (process.env.CDS_ENGINE_ACCELERATE === "0") return null;
  const immutableUtil = load("cql-execution/lib/util/immutableUtil");
  const datetime = load("cql-execution/lib/datatypes/datetime");
  const list = load("cql-execution/lib/elm/list");
  // cql-exec-fhir does not export FHIRObject: take it (and the model) from a wrapped Patient.
  patientSource.loadBundles([
    { resourceType: "Bundle", type: "collection", entry: [{ resource: { resourceType: "Patient", id: "probe" } }] },
  ]);
  const patient = patientSource.currentPatient();
  patientSource.reset();
  const FHIRObject = Object.getPrototypeOf(Object.getPrototypeOf(patient)).constructor;
  const modelInfo = patient._modelInfo;
  if (
    typeof immutableUtil.toNormalizedKey !== "function" ||
    typeof list.toDistinctList !== "function" ||
    typeof FHIRObject !== "function" ||
    !(patient instanceof FHIRObject) ||
    patient._json?.id !== "probe" ||
    typeof modelInfo?.findClass !== "function" ||
    typeof datetime.DateTime?.parse !== "function" ||
    typeof datetime.Date?.parse !== "function" ||
    typeof datetime.DateTime.prototype.copy !== "function" ||
    typeof datetime.Date.prototype.copy !== "function"
  ) {
    throw new Error("cql-execution/cql-exec-fhir internals changed: the engine shortcuts do not fit this version");
  }

  // 1 to 3: distinct lists.
  const originalDistinct = list.toDistinctList;
  const isResource = (x) =>
    x instanceof FHIRObject &&
    x._json !== null &&
    typeof x._json === "object" &&
    typeof x._json.resourceType === "string" &&
    typeof x._json.id === "string" &&
    x._typeInfo != null;
  list.toDistinctList = function distinctList(items) {
    const n = items.length;
    if (n < 2) return items.slice(); // nothing to compare: the original returns a copy too
    const first = items[0];
    const kind = typeof first;
    if (kind === "string" || kind === "number" || kind === "boolean") {
      for (let i = 1; i < n; i++) if (typeof items[i] !== kind) return originalDistinct(items);
      return [...new Set(items)];
    }
    if (!isResource(first)) return originalDistinct(items);
    const seen = new Set();
    for (let i = 0; i < n; i++) {
      const x = items[i];
      if (!isResource(x)) return originalDistinct(items);
      const ident = `${x._typeInfo.name}\u0000${x._json.id}`;
      if (seen.has(ident)) return originalDistinct(items);
      seen.add(ident);
    }
    return items.slice();
  };

  // 4: memoised keys (WeakMap: they live as long as the evaluation's JSON, no longer).
  const keys = new WeakMap(); // FHIRObject._json -> Map(typeInfo -> normalized key)
  const originalKey = immutableUtil.toNormalizedKey;
  immutableUtil.toNormalizedKey = function normalizedKey(js) {
    if (js instanceof FHIRObject) {
      const json = js._json;
      if (json !== null && typeof json === "object") {
        let byType = keys.get(json);
        if (byType === undefined) {
          byType = new Map();
          keys.set(json, byType);
        }
        let key = byType.get(js._typeInfo);
        if (key === undefined) {
          key = originalKey(js);
          byType.set(js._typeInfo, key);
        }
        return key;
      }
    }
    return originalKey(js);
  };

  // 5: memoised element access.
  const originalGet = FHIRObject.prototype.get;
  if (typeof originalGet !== "function") throw new Error("cql-exec-fhir internals changed: no FHIRObject.get");
  const keepable = (v) => v == null || typeof v !== "object" || v instanceof FHIRObject;
  const elements = new WeakMap(); // FHIRObject._json -> Map(typeInfo -> Map(field -> value))
  FHIRObject.prototype.get = function memoGet(field) {
    const json = this._json;
    if (json === null || typeof json !== "object") return originalGet.call(this, field);
    let byType = elements.get(json);
    if (byType === undefined) {
      byType = new Map();
      elements.set(json, byType);
    }
    let byField = byType.get(this._typeInfo);
    if (byField === undefined) {
      byField = new Map();
      byType.set(this._typeInfo, byField);
    }
    const hit = byField.get(field);
    if (hit !== undefined || byField.has(field)) return Array.isArray(hit) ? hit.slice() : hit;
    const value = originalGet.call(this, field);
    if (Array.isArray(value) ? value.every(keepable) : keepable(value)) {
      byField.set(field, Array.isArray(value) ? value.slice() : value);
    }
    return value;
  };

  const proto = Object.getPrototypeOf(modelInfo);
  const findClass = proto.findClass;
  const classes = new WeakMap(); // ModelInfo -> Map(name -> ClassInfo)
  proto.findClass = function memoFindClass(klass) {
    let byName = classes.get(this);
    if (byName === undefined) {
      byName = new Map();
      classes.set(this, byName);
    }
    let found = byName.get(klass);
    if (found === undefined && !byName.has(klass)) {
      found = findClass.call(this, klass);
      byName.set(klass, found);
    }
    return found;
  };

  // 6: date and time parsing once per string and evaluation.
  const parsed = [];
  for (const cls of [datetime.DateTime, datetime.Date]) {
    const parse = cls.parse;
    const cache = new Map(); // string -> parsed value (null for an invalid string)
    parsed.push(cache);
    cls.parse = function memoParse(string) {
      if (typeof string !== "string") return parse.call(this, string);
      const hit = cache.get(string);
      if (hit !== undefined) return hit === null ? null : hit.copy();
      const value = parse.call(this, string);
      cache.set(string, value == null ? null : value.copy());
      return value;
    };
  }
  // 7: retrieve wrappers once per evaluation.
  const patientProto = Object.getPrototypeOf(patient);
  const findRecords = patientProto.findRecords;
  if (typeof findRecords !== "function") throw new Error("cql-exec-fhir internals changed: no Patient.findRecords");
  let retrieved = new WeakMap(); // Patient -> Map(profile and datatype -> records)
  patientProto.findRecords = function memoFindRecords(profile, retrieveDetails) {
    let byKey = retrieved.get(this);
    if (byKey === undefined) {
      byKey = new Map();
      retrieved.set(this, byKey);
    }
    const key = `${profile}\u0000${retrieveDetails?.datatype ?? ""}`;
    let records = byKey.get(key);
    if (records === undefined) {
      records = findRecords.call(this, profile, retrieveDetails);
      if (!Array.isArray(records)) return records;
      byKey.set(key, records);
    }
    return records.slice();
  };

  return {
    endEvaluation() {
      for (const cache of parsed) cache.clear();
      retrieved = new WeakMap();
    },
  };
}
