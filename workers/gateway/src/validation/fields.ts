// Field schemas shared by the chat and FIM bodies. Optional fields are nullish: DeepSeek
// (and the OpenAI SDKs users migrate from) treat an explicit null as "not set".
import { z } from "zod";

export const MAX_STOP_SEQUENCES = 16;

const rangeMessage = (field: string, min: number, max: number) => `Invalid ${field} value, the valid range of ${field} is [${min}, ${max}]`;

/** A number in [min, max]; outside the range is a 422 naming the field and the range. */
export const numberInRange = (field: string, min: number, max: number) => {
  const error = rangeMessage(field, min, max);
  return z.number().min(min, { error }).max(max, { error });
};

/** Marks a failed integer check so the error reads like any other type error (a 400). */
export const EXPECTED_INTEGER = { expected: "an integer" } as const;

/** An integer in [min, max]; a fraction is a malformed body (400), outside the range a 422. */
export const integerInRange = (field: string, min: number, max: number) =>
  numberInRange(field, min, max).refine(Number.isInteger, { params: EXPECTED_INTEGER });

/** An integer without a static range (max_tokens: its range depends on the model). */
export const integer = () => z.number().refine(Number.isInteger, { params: EXPECTED_INTEGER });

export const samplingFields = {
  temperature: numberInRange("temperature", 0, 2).nullish(),
  top_p: numberInRange("top_p", 0, 1).nullish(),
  frequency_penalty: numberInRange("frequency_penalty", -2, 2).nullish(),
  presence_penalty: numberInRange("presence_penalty", -2, 2).nullish(),
};

export const SAMPLING_FIELDS = Object.keys(samplingFields) as (keyof typeof samplingFields)[];

export const stopSchema = z.union([
  z.string(),
  z.array(z.string()).max(MAX_STOP_SEQUENCES, { error: `Invalid stop value, at most ${MAX_STOP_SEQUENCES} stop sequences are allowed` }),
]);

export const streamFields = {
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
};

/** What the gateway always asks of the worker: cumulative usage on every chunk (architecture.md). */
export const UPSTREAM_STREAM_OPTIONS = { include_usage: true, continuous_usage_stats: true } as const;

/** Copies the fields the client set (not null/undefined) into the upstream body. */
export function setFields(target: Record<string, unknown>, source: Record<string, unknown>, keys: readonly string[]): void {
  for (const key of keys) {
    const value = source[key];
    if (value !== undefined && value !== null) target[key] = value;
  }
}

/** Removes null/undefined properties; keys that were nullable become optional. */
export type Compact<T> = { [K in keyof T as null extends T[K] ? never : undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as null extends T[K] ? K : undefined extends T[K] ? K : never]?: NonNullable<T[K]>;
};

export function compact<T extends Record<string, unknown>>(value: T): Compact<T> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) if (v !== undefined && v !== null) out[key] = v;
  return out as Compact<T>;
}
