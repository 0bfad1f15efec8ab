// Runs a model's JavaScript hooks under Node for `modelfn check` (modelfn/tooling/js_hooks.py).
// stdin: {"module": path, "stage": "pre"|"post", "function": name, "cases": [...]}; a pre case is a
// payload, a post case {"outputs": {name: {type, dims, data}}, "payload": ...}. stdout: one result
// per case, {"value": ...} or {"refused": message}; typed arrays become lists, int64 values strings.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

function tensorIn({ type, dims, data }) {
  if (type === "string") return { type, dims, data };
  const Array = ARRAYS[type];
  const values = type === "int64" || type === "uint64" ? data.map((value) => BigInt(value)) : data;
  return { type, dims, data: Array.from(values) };
}

function plain(value) {
  if (typeof value === "bigint") return value.toString();
  if (ArrayBuffer.isView(value)) return Array.from(value, plain);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, plain(item)]));
  }
  return value;
}

const request = JSON.parse(readFileSync(0, "utf8"));
const hooks = await import(pathToFileURL(request.module).href);
const hook = hooks[request.function];
if (typeof hook !== "function") {
  process.stderr.write(`${request.module} exports no function ${request.function}\n`);
  process.exit(2);
}
const results = [];
for (const item of request.cases) {
  try {
    const value = request.stage === "pre"
      ? await hook(item)
      : await hook(Object.fromEntries(Object.entries(item.outputs).map(([name, t]) => [name, tensorIn(t)])), item.payload);
    results.push({ value: plain(value) });
  } catch (error) {
    results.push({ refused: String(error && error.message ? error.message : error), kind: error && error.name });
  }
}
process.stdout.write(JSON.stringify(results));
