// Turns zod issues into the API's errors. The rule for the status: a value of the wrong
// shape (wrong JSON type, missing field, unknown variant, bad format) is a malformed body,
// 400; a value of the right type outside its allowed range is an invalid parameter, 422.
// Messages follow DeepSeek's serde-style wording and always name the field path.
import type { z } from "zod";
import { type ApiError, badRequest, invalidParameter } from "../errors/api-error";

type Issue = z.core.$ZodIssue;
type PathKey = PropertyKey;

const DESERIALIZE = "Failed to deserialize the JSON body into the target type";

/** `messages[1].content[0].text` */
export function formatPath(path: readonly PathKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let value = root;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a sequence";
  switch (typeof value) {
    case "string":
      return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
    case "number":
      return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
    case "boolean":
      return `boolean \`${value}\``;
    case "object":
      return "a map";
    default:
      return typeof value;
  }
}

function describeExpected(expected: string): string {
  switch (expected) {
    case "record":
    case "object":
      return "a JSON object";
    case "array":
      return "an array";
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return "a boolean";
    default:
      return expected;
  }
}

/** A branch failed only because the value has another JSON type than the branch accepts. */
function isRootTypeMismatch(branch: readonly Issue[], value: unknown): boolean {
  return (
    branch.length > 0 &&
    branch.every(
      (i) => i.path.length === 0 && (i.code === "invalid_type" || (i.code === "invalid_value" && !i.values.some((v) => typeof v === typeof value))),
    )
  );
}

function expectedOf(issue: Issue): string {
  if (issue.code === "invalid_type") return describeExpected(issue.expected);
  if (issue.code === "invalid_value") return issue.values.map((v) => JSON.stringify(v)).join(" or ");
  return "";
}

/**
 * Resolves union issues to the branch the value was meant for: a branch that failed only
 * because the value has another JSON type is not the one the client meant.
 */
function flatten(issues: readonly Issue[], body: unknown, prefix: readonly PathKey[] = []): Issue[] {
  const out: Issue[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code !== "invalid_union" || issue.errors.length === 0) {
      out.push({ ...issue, path } as Issue);
      continue;
    }
    const value = valueAt(body, path);
    const meant = issue.errors.find((branch) => !isRootTypeMismatch(branch, value));
    if (meant) {
      out.push(...flatten(meant, body, path));
      continue;
    }
    const expected = [...new Set(issue.errors.flatMap((branch) => branch.map(expectedOf)))].filter(Boolean).join(" or ");
    out.push({ code: "invalid_type", expected, path, message: "" } as unknown as Issue);
  }
  return out;
}

const isRangeIssue = (issue: Issue) => issue.code === "too_big" || issue.code === "too_small";

function shapeMessage(issue: Issue, body: unknown): string {
  const where = formatPath(issue.path);
  const at = where === "" ? "" : `${where}: `;
  const value = valueAt(body, issue.path);
  switch (issue.code) {
    case "invalid_type": {
      if (value === undefined && issue.path.length > 0) {
        const parent = formatPath(issue.path.slice(0, -1));
        return `${DESERIALIZE}: ${parent === "" ? "" : `${parent}: `}missing field \`${String(issue.path.at(-1))}\``;
      }
      const expected = issue.expected.includes(" ") ? issue.expected : describeExpected(issue.expected);
      return `${DESERIALIZE}: ${at}invalid type: ${describeValue(value)}, expected ${expected}`;
    }
    case "invalid_value": {
      const variants = issue.values.map((v) => `\`${String(v)}\``).join(", ");
      return `${DESERIALIZE}: ${at}unknown variant ${typeof value === "string" ? `\`${value}\`` : describeValue(value)}, expected ${issue.values.length > 1 ? `one of ${variants}` : variants}`;
    }
    case "invalid_union": {
      const discriminator = issue as { note?: string; options?: unknown[] };
      if (discriminator.note === "No matching discriminator") {
        const variants = (discriminator.options ?? []).map((v) => `\`${String(v)}\``).join(", ");
        if (value === undefined) {
          return `${DESERIALIZE}: ${formatPath(issue.path.slice(0, -1))}: missing field \`${String(issue.path.at(-1))}\``;
        }
        return `${DESERIALIZE}: ${at}unknown variant ${typeof value === "string" ? `\`${value}\`` : describeValue(value)}, expected one of ${variants}`;
      }
      return `${DESERIALIZE}: ${at}data did not match any accepted form`;
    }
    case "custom":
      if (typeof issue.params?.expected === "string") {
        return `${DESERIALIZE}: ${at}invalid type: ${describeValue(value)}, expected ${issue.params.expected}`;
      }
      return issue.message.startsWith(where) ? issue.message : `${at}${issue.message}`;
    default:
      // Custom checks and formats carry their own wording; prefix the field unless they name it.
      return issue.message.startsWith(where) ? issue.message : `${at}${issue.message}`;
  }
}

/** The first shape problem (400) if any, else the first range problem (422); null when valid. */
export function toApiError(issues: readonly Issue[], body: unknown): ApiError {
  const flat = flatten(issues, body);
  const shape = flat.find((i) => !isRangeIssue(i));
  if (shape) return badRequest(shapeMessage(shape, body), formatPath(shape.path) || null);
  const range = flat[0]!;
  return invalidParameter(range.message, formatPath(range.path) || null);
}

/** Parses with the schema or throws the API's error for the first problem. */
export function parseOrThrow<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body);
  if (!result.success) throw toApiError(result.error.issues, body);
  return result.data;
}
