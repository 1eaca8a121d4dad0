// A disk cache of the parsed FHIR model info, for worker.mjs.
//
// cql-exec-fhir builds its model (PatientSource.FHIRv401()) by parsing a 760 KB model-info XML with
// xml2js: about 0.4 s of the ~0.8 s a worker needs before it can answer, paid by every worker start.
// xml2js's result is plain JSON (objects, arrays, strings), so it is kept on disk as JSON after the
// first parse, under a name made of the XML's SHA-256, and read back (~15 ms) by later starts. Only
// the exact call cql-exec-fhir makes (synchronous, stripPrefix name processors) is served from the
// cache; anything else, or any I/O problem, falls through to xml2js. The cache folder is
// CDS_ENGINE_CACHE_DIR, by default node_modules/.cache/fusion-cds; a read-only one only costs the
// parse. CDS_ENGINE_CACHE_DIR=off turns the cache off.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/**
 * @param {Function} load - resolves a package the way worker.mjs does
 * @param {string} nodeModules - the node_modules folder holding cql-exec-fhir
 */
export function installModelCache(load, nodeModules) {
  const configured = process.env.CDS_ENGINE_CACHE_DIR;
  if (configured === "off") return null;
  const dir = configured || path.join(nodeModules, ".cache", "fusion-cds");
  const xml2js = load("xml2js");
  const processors = load("xml2js/lib/processors");
  const parseString = xml2js.parseString;
  if (typeof parseString !== "function" || typeof processors.stripPrefix !== "function") return null;

  const isModelInfoCall = (xml, opts, cb) =>
    typeof xml === "string" &&
    xml.length > 100_000 &&
    typeof cb === "function" &&
    opts?.async === false &&
    Object.keys(opts).length === 3 &&
    opts.tagNameProcessors?.length === 1 &&
    opts.tagNameProcessors[0] === processors.stripPrefix &&
    opts.attrNameProcessors?.length === 1 &&
    opts.attrNameProcessors[0] === processors.stripPrefix;

  xml2js.parseString = function cachedParseString(xml, opts, cb) {
    if (!isModelInfoCall(xml, opts, cb)) return parseString.apply(this, arguments);
    const digest = crypto.createHash("sha256").update(xml).digest("hex");
    const file = path.join(dir, `modelinfo-${digest}.json`);
    let cached;
    try {
      cached = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch {
      cached = undefined; // absent or unreadable: parse the XML
    }
    if (cached !== undefined) return cb(null, cached);
    return parseString.call(this, xml, opts, (err, result) => {
      if (err == null && result != null) {
        try {
          fs.mkdirSync(dir, { recursive: true });
          const tmp = `${file}.${process.pid}.tmp`;
          fs.writeFileSync(tmp, JSON.stringify(result));
          fs.renameSync(tmp, file); // atomic: a concurrent reader sees all of it or nothing
        } catch {
          // a read-only cache folder only costs the parse next time
        }
      }
      cb(err, result);
    });
  };
  return dir;
}
