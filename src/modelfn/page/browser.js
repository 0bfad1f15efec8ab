// modelfn in the browser: a model card's `browser` entry run with ONNX Runtime Web, its JavaScript
// hooks (hooks.js) around it, as POST /predict runs the Python ones. Everything is fetched from this
// page's own origin (the runtime, its WebAssembly, the model, the hooks), nothing from a CDN.
// One thread unless the page is cross-origin isolated (COOP and COEP headers), when
// WebAssembly threads are available.

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array,
};
const runtimes = new Map();

export function threads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}

function runtime(base) {
  if (!runtimes.has(base)) {
    runtimes.set(base, import(new URL("ort.wasm.min.mjs", base).href).then((ort) => {
      ort.env.wasm.wasmPaths = base;
      ort.env.wasm.numThreads = threads();
      return ort;
    }));
  }
  return runtimes.get(base);
}

export class InvalidInput extends Error {
  name = "InvalidInput";
}

// Opens the model of `card.browser` (paths relative to `site`, the folder the bundle is served from).
export async function openModel(card, site) {
  const spec = card.browser;
  const ort = await runtime(new URL(spec.runtime, site).href);
  const [session, hooks] = await Promise.all([
    ort.InferenceSession.create(new URL(spec.model, site).href, { executionProviders: ["wasm"] }),
    spec.hooks ? import(new URL(spec.hooks, site).href) : null,
  ]);
  const pre = hooks && spec.pre ? hooks[spec.pre] : null;
  const post = hooks && spec.post ? hooks[spec.post] : null;
  const read = spec.table ? (payload) => tableInputs(spec, payload) : (payload) => namedInputs(spec.inputs, payload);
  let queue = Promise.resolve();  // one run at a time: a session is not re-entrant

  async function infer(feeds) {
    const tensors = {};
    for (const input of spec.inputs) {
      const tensor = feeds[input.name];
      if (!tensor) throw new InvalidInput(`missing input tensor ${input.name}`);
      checkTensor(input, tensor);
      tensors[input.name] = new ort.Tensor(tensor.type, tensor.data, tensor.dims);
    }
    const run = queue.then(() => session.run(tensors));
    queue = run.catch(() => undefined);
    const results = await run;
    return Object.fromEntries(spec.outputs.map(({ name }) => {
      const { type, data, dims } = results[name];
      return [name, { type, data, dims: Array.from(dims) }];
    }));
  }

  return {
    name: card.name,
    version: card.version,
    threads: threads(),
    infer,
    // The model's outputs for a body (after the pre hook), as nested lists: what post receives.
    async outputs(payload) {
      return nested(await infer(pre ? await pre(payload) : read(payload)));
    },
    async predict(payload) {
      const feeds = pre ? await pre(payload) : read(payload);
      const outputs = await infer(feeds);
      return post ? post(outputs, payload) : nested(outputs);
    },
  };
}

function checkTensor(input, tensor) {
  if (tensor.type !== input.type) throw new InvalidInput(`${input.name} must be ${input.type}, got ${tensor.type}`);
  const dims = tensor.dims;
  const fits = dims.length === input.shape.length && input.shape.every((d, i) => d === -1 || d === dims[i]);
  if (!fits) throw new InvalidInput(`${input.name} must have shape [${input.shape}], got [${dims}]`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (tensor.data.length !== count) throw new InvalidInput(`${input.name}: ${tensor.data.length} values for shape [${dims}]`);
}

// Without a pre hook the body maps each input's name to nested lists, as POST /predict reads it.
function namedInputs(inputs, payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new InvalidInput("the body must map input names to values");
  }
  const feeds = {};
  for (const input of inputs) {
    if (!(input.name in payload)) throw new InvalidInput(`body: missing input ${input.name}`);
    const dims = [];
    for (let level = payload[input.name]; Array.isArray(level); level = level[0]) dims.push(level.length);
    const flat = input.shape.length ? payload[input.name].flat(input.shape.length) : [payload[input.name]];
    if (dims.length !== input.shape.length) throw new InvalidInput(`${input.name} must have ${input.shape.length} dimensions`);
    let data;
    if (input.type === "string") {
      if (!flat.every((value) => typeof value === "string")) throw new InvalidInput(`${input.name} must hold strings`);
      data = flat;
    } else {
      if (!flat.every((value) => typeof value === "number" || typeof value === "boolean")) {
        throw new InvalidInput(`${input.name} must hold numbers`);
      }
      const big = input.type === "int64" || input.type === "uint64";
      data = ARRAYS[input.type].from(flat, (value) => (big ? BigInt(Math.trunc(Number(value))) : Number(value)));
    }
    feeds[input.name] = { type: input.type, data, dims };
  }
  return feeds;
}

// A tabular model (`table:`) takes rows as POST /predict does: one object keyed by column, or
// {"rows": [...]}. Errors name the column in the function's own words.
function tableInputs(spec, payload) {
  const names = spec.inputs.map((input) => input.name);
  const many = isObject(payload) && "rows" in payload && !names.includes("rows");
  const rows = many ? payload.rows : [payload];
  if (!Array.isArray(rows) || !rows.length) {
    throw new InvalidInput(`body: \`rows\` must be a non-empty list of objects keyed by ${JSON.stringify(names)}`);
  }
  const nullable = new Set(spec.table.nullable || []);
  const categories = spec.table.categories || {};
  const columns = Object.fromEntries(names.map((name) => [name, []]));
  rows.forEach((row, index) => {
    const at = many ? `rows[${index}]` : "the row";
    if (!isObject(row)) throw new InvalidInput(`body: ${at} must be an object keyed by the columns ${JSON.stringify(names)}`);
    const unknown = Object.keys(row).filter((key) => !names.includes(key));
    if (unknown.length) {
      throw new InvalidInput(`body: ${at} has unknown column(s) ${JSON.stringify(unknown.slice(0, 5))}; the model takes ${JSON.stringify(names)}`);
    }
    for (const input of spec.inputs) {
      const value = row[input.name];
      if (value === undefined || value === null) {
        if (!nullable.has(input.name)) {
          throw new InvalidInput(`column '${input.name}': ${value === null ? "null" : "missing"} in ${at}; every row needs a value`);
        }
        columns[input.name].push(NaN);  // a missing value, for the model's imputer
        continue;
      }
      const text = input.type === "string";
      if (text ? typeof value !== "string" : typeof value !== "number" && typeof value !== "boolean") {
        throw new InvalidInput(`column '${input.name}': values must be ${text ? "strings" : "numbers"}, got ${JSON.stringify(value).slice(0, 40)}`);
      }
      if (/int/.test(input.type) && !Number.isInteger(Number(value))) {
        throw new InvalidInput(`column '${input.name}': ${value} is not an integer`);
      }
      const known = categories[input.name];
      if (known && !known.includes(value)) {
        const listed = known.map(String).sort();
        const shown = listed.slice(0, 20).map((c) => `'${c}'`).join(", ") + (listed.length > 20 ? ", ..." : "");
        throw new InvalidInput(`column '${input.name}': unknown category '${String(value).slice(0, 60)}'; the model knows ${shown}`);
      }
      columns[input.name].push(value);
    }
  });
  const feeds = {};
  for (const input of spec.inputs) {
    const values = columns[input.name];
    const dims = input.shape.length === 2 ? [values.length, 1] : [values.length];
    const big = input.type === "int64" || input.type === "uint64";
    const data = input.type === "string"
      ? values
      : ARRAYS[input.type].from(values, (value) => (big ? BigInt(Math.trunc(Number(value))) : Number(value)));
    feeds[input.name] = { type: input.type, data, dims };
  }
  return feeds;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Without a post hook the answer maps each output's name to nested lists.
function nested(outputs) {
  const answer = {};
  for (const [name, { data, dims }] of Object.entries(outputs)) {
    const values = Array.from(data, (value) => (typeof value === "bigint" ? Number(value) : value));
    answer[name] = reshape(values, dims);
  }
  return answer;
}

function reshape(values, dims) {
  if (dims.length <= 1) return dims.length ? values : values[0];
  const size = values.length / dims[0];
  return Array.from({ length: dims[0] }, (_, i) => reshape(values.slice(i * size, (i + 1) * size), dims.slice(1)));
}
