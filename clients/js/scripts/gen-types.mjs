#!/usr/bin/env node
// Generates the client's types from the server's own description of itself.
//
//   node scripts/gen-types.mjs ws://localhost:8765/ws [out-dir]   (a running server)
//   node scripts/gen-types.mjs discover.json [out-dir]            (a saved rpc.discover answer)
//
// Reads the OpenRPC document `rpc.discover` returns (docs/protocol.md) and writes into
// out-dir (default: src/):
//   types.d.ts  every schema of components.schemas as a TypeScript type, `Methods`
//               (name -> {params, result}), `Events` (logged events: name -> data),
//               `LiveEvents` (live notifications: name -> params) and the error names;
//   client.js   src/client.js with its list of idempotent methods (those whose params
//               take an idempotencyKey) brought up to date.
// Node 20 needs --experimental-websocket to reach a server (npm run gen-types passes it).

import { readFile, writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), "..");
const BEGIN = "// generated:idempotent-methods:begin";
const END = "// generated:idempotent-methods:end";

async function main(argv) {
  const [source, outDir = join(PACKAGE, "src")] = argv;
  if (!source) {
    process.stderr.write("usage: gen-types.mjs <ws://host:port/ws | discover.json> [out-dir]\n");
    process.exit(2);
  }
  const doc = /^wss?:\/\//.test(source) ? await discover(source) : JSON.parse(await readFile(source, "utf8"));
  const client = await readFile(join(PACKAGE, "src", "client.js"), "utf8");
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, "types.d.ts"), typesOf(doc));
  await writeFile(join(outDir, "client.js"), withIdempotentMethods(client, doc));
}

/** The server's `rpc.discover` answer, over a socket of its own. */
function discover(url) {
  const WebSocket = globalThis.WebSocket;
  if (!WebSocket) {
    throw new Error("no global WebSocket: use Node 22+, or Node 20 with --experimental-websocket");
  }
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => fail(new Error(`no answer from ${url} in 15 s`)), 15000);
    function fail(error) {
      clearTimeout(timer);
      ws.close();
      reject(error);
    }
    ws.onopen = () => ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "rpc.discover" }));
    ws.onerror = () => fail(new Error(`cannot reach ${url}`));
    ws.onmessage = (message) => {
      const frame = JSON.parse(String(message.data));
      if (frame.id !== 1) return;
      clearTimeout(timer);
      ws.close();
      if (frame.error) reject(new Error(`rpc.discover: ${JSON.stringify(frame.error)}`));
      else resolve(frame.result);
    };
  });
}

// ---- src/client.js: the idempotent methods ---------------------------------------------

function idempotentMethods(doc) {
  return doc.methods
    .filter((method) => method.params.some((param) => param.name === "idempotencyKey"))
    .map((method) => method.name)
    .sort();
}

function withIdempotentMethods(source, doc) {
  const begin = source.indexOf(BEGIN);
  const end = source.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`src/client.js has no "${BEGIN}" ... "${END}"`);
  const list = idempotentMethods(doc)
    .map((name) => `  ${JSON.stringify(name)},\n`)
    .join("");
  const block = `${BEGIN}\nconst IDEMPOTENT_METHODS = new Set([\n${list}]);\n`;
  return source.slice(0, begin) + block + source.slice(end);
}

// ---- types.d.ts --------------------------------------------------------------------------

/** A component's name as a TypeScript identifier ("Device-Input" -> "DeviceInput"). */
function typeName(name) {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((part) => part[0].toUpperCase() + part.slice(1))
    .join("");
}

function refName(ref) {
  const prefix = "#/components/schemas/";
  if (!ref.startsWith(prefix)) throw new Error(`unsupported $ref ${ref}`);
  return typeName(ref.slice(prefix.length));
}

function comment(text, indent) {
  if (!text) return "";
  const lines = String(text).trim().replace(/\*\//g, "*\u200b/").split("\n");
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((line) => `${indent} * ${line}`.trimEnd()).join("\n")}\n${indent} */\n`;
}

function key(name) {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

/**
 * The TypeScript type of a JSON schema. `output`: the schema describes what the server
 * sends (results, events), where every field with a default is present; params are
 * input, where such fields may be left out.
 */
function tsType(schema, output, indent = "") {
  if (schema === true || schema === undefined || Object.keys(schema).length === 0) return "unknown";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(" | ");
  if (schema.anyOf || schema.oneOf) {
    const members = (schema.anyOf || schema.oneOf).map((s) => tsType(s, output, indent));
    return [...new Set(members)].join(" | ");
  }
  if (Array.isArray(schema.type)) {
    return schema.type.map((type) => tsType({ ...schema, type }, output, indent)).join(" | ");
  }
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "null":
      return "null";
    case "array": {
      const item = tsType(schema.items, output, indent);
      return /[|&\s]/.test(item) ? `Array<${item}>` : `${item}[]`;
    }
    case "object":
      return objectType(schema, output, indent);
    default:
      return "unknown";
  }
}

function objectType(schema, output, indent) {
  const inner = indent + "  ";
  const required = new Set(schema.required || []);
  const lines = Object.entries(schema.properties || {}).map(([name, property]) => {
    const always =
      required.has(name) || (output && property.default !== undefined && property.default !== null);
    const optional = !always || (!output && name === "idempotencyKey");
    return (
      comment(property.description, inner) +
      `${inner}${key(name)}${optional ? "?" : ""}: ${tsType(property, output, inner)};\n`
    );
  });
  const extra = schema.patternProperties
    ? Object.values(schema.patternProperties)
        .map((s) => tsType(s, output, inner))
        .join(" | ")
    : schema.additionalProperties === true
      ? "unknown"
      : schema.additionalProperties
        ? tsType(schema.additionalProperties, output, inner)
        : null;
  if (extra !== null) lines.push(`${inner}[key: string]: ${extra};\n`);
  if (lines.length === 0) return "{}";
  return `{\n${lines.join("")}${indent}}`;
}

/** The names of the components `roots` reach through $ref, themselves included. */
function reachable(roots, components) {
  const seen = new Set();
  const walk = (node) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== "object") return;
    if (typeof node.$ref === "string") {
      const name = node.$ref.split("/").pop();
      if (!seen.has(name)) {
        seen.add(name);
        walk(components[name]);
      }
    }
    Object.values(node).forEach(walk);
  };
  walk(roots);
  return seen;
}

function typesOf(doc) {
  const components = doc.components?.schemas || {};
  const events = doc["x-events"] || [];
  const inputs = reachable(
    doc.methods.map((m) => m.params.map((p) => p.schema)),
    components,
  );
  const names = new Map();
  for (const name of Object.keys(components)) {
    const ts = typeName(name);
    if (names.has(ts)) throw new Error(`schemas ${names.get(ts)} and ${name} are both ${ts}`);
    names.set(ts, name);
  }

  let out =
    "// Generated by scripts/gen-types.mjs from the server's rpc.discover: do not edit by hand.\n" +
    "// Regenerate with `npm run gen-types -- ws://HOST:PORT/ws` (or see tests/e2e/test_js_client.py).\n" +
    `// ${doc.info?.title ?? "server"} ${doc.info?.version ?? ""}: ${doc.methods.length} methods, ${events.length} events.\n\n`;

  for (const [ts, name] of [...names].sort(([a], [b]) => a.localeCompare(b))) {
    const schema = components[name];
    // A schema params use is read as input: fields with a default may be left out.
    const output = !inputs.has(name);
    const type = tsType(schema, output);
    out += comment(schema.description, "");
    out += type.startsWith("{\n") ? `export interface ${ts} ${type}\n\n` : `export type ${ts} = ${type};\n\n`;
  }

  out += "/** Every method: its params (by name) and its result. */\nexport interface Methods {\n";
  for (const method of [...doc.methods].sort((a, b) => a.name.localeCompare(b.name))) {
    const access = method["x-roles"]
      ? `${method["x-access"]}: ${method["x-roles"].join(", ")}`
      : method["x-access"];
    const params = objectType(
      {
        properties: Object.fromEntries(method.params.map((p) => [p.name, p.schema])),
        required: method.params.filter((p) => p.required).map((p) => p.name),
      },
      false,
      "    ",
    );
    out += comment(`${method.summary}\n\nAccess: ${access}.`, "  ");
    out += `  ${JSON.stringify(method.name)}: {\n`;
    out += `    params: ${params};\n`;
    out += `    result: ${tsType(method.result.schema, true, "    ")};\n  };\n`;
  }
  out += "}\n\n";

  const logged = events.filter((event) => event.params && event.params.seq);
  const live = events.filter((event) => !(event.params && event.params.seq));
  out +=
    "/** Events of the user's log (params {seq, data}): each event's data. */\nexport interface Events {\n";
  for (const event of logged) {
    out += comment(event.summary, "  ");
    out += `  ${JSON.stringify(event.name)}: ${tsType(event.params.data, true, "  ")};\n`;
  }
  out += "}\n\n";
  out +=
    "/** Live notifications outside the log (no seq, not replayed): each one's params. */\nexport interface LiveEvents {\n";
  for (const event of live) {
    out += comment(event.summary, "  ");
    out += `  ${JSON.stringify(event.name)}: ${tsType(event.params, true, "  ")};\n`;
  }
  out += "}\n\n";

  const errors = doc["x-errors"] || [];
  out +=
    "/** `data.error` of each error the server sends, and its JSON-RPC code. */\nexport interface ErrorCodes {\n";
  for (const error of errors) out += `  ${key(error.message)}: ${error.code};\n`;
  out += "}\n\nexport type ErrorName = keyof ErrorCodes;\n";
  out += "export type MethodName = keyof Methods;\n";
  out += "export type EventName = keyof Events | keyof LiveEvents;\n";
  return out;
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`gen-types: ${error.message}\n`);
  process.exit(1);
});
