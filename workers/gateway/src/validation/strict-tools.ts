// Strict function calling (/beta only): the model's output is constrained to the schema, which
// is only possible when every object is closed and every property is required. Returns the
// first violation as a sentence, or null when the schema qualifies.
type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

function describesObject(schema: Json): boolean {
  const type = schema.type;
  return type === "object" || (Array.isArray(type) && type.includes("object")) || isObject(schema.properties);
}

/** Sub-schemas reachable from a schema node, with the JSON-pointer-ish path to each. */
function* children(schema: Json, at: string): Generator<[Json, string]> {
  for (const key of ["properties", "$defs", "definitions", "patternProperties"]) {
    const map = schema[key];
    if (isObject(map)) for (const [name, sub] of Object.entries(map)) if (isObject(sub)) yield [sub, `${at}/${key}/${name}`];
  }
  for (const key of ["anyOf", "oneOf", "allOf", "prefixItems"]) {
    const list = schema[key];
    if (Array.isArray(list)) for (const [i, sub] of list.entries()) if (isObject(sub)) yield [sub, `${at}/${key}/${i}`];
  }
  for (const key of ["items", "additionalProperties", "not", "if", "then", "else"]) {
    const sub = schema[key];
    if (isObject(sub)) yield [sub, `${at}/${key}`];
    else if (key === "items" && Array.isArray(sub)) for (const [i, s] of sub.entries()) if (isObject(s)) yield [s, `${at}/items/${i}`];
  }
}

export function strictSchemaViolation(parameters: Json): string | null {
  const pending: [Json, string][] = [[parameters, "#"]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [schema, at] = next;
    if (describesObject(schema)) {
      if (schema.additionalProperties !== false) return `the object at '${at}' must set 'additionalProperties' to false`;
      const properties = isObject(schema.properties) ? Object.keys(schema.properties) : [];
      const required = Array.isArray(schema.required) ? schema.required : [];
      const missing = properties.filter((p) => !required.includes(p));
      if (missing.length > 0) return `the object at '${at}' must list every property in 'required' (missing: ${missing.map((m) => `'${m}'`).join(", ")})`;
    }
    pending.push(...[...children(schema, at)].reverse());
  }
  return null;
}
