// Money is integer micro-units (1 USD = 1_000_000). Formatting to the contract's strings happens
// only at the edge of a response.
export const MICROS_PER_UNIT = 1_000_000;

export function formatAmount(micros: number): string {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  const units = Math.floor(abs / MICROS_PER_UNIT);
  const cents = Math.floor((abs % MICROS_PER_UNIT) / 10_000);
  return `${sign}${units}.${String(cents).padStart(2, "0")}`;
}

// "12.5" / "12" / "0.000001" -> micros; refuses anything that is not a plain decimal.
export function parseAmount(text: string): number {
  const match = /^(\d+)(?:\.(\d{1,6}))?$/.exec(text.trim());
  if (!match) throw new Error(`not an amount: ${JSON.stringify(text)} (use a plain decimal like 10 or 12.50)`);
  const micros = Number(match[1]) * MICROS_PER_UNIT + Number((match[2] ?? "").padEnd(6, "0"));
  if (!Number.isSafeInteger(micros)) throw new Error(`amount too large: ${text}`);
  return micros;
}
