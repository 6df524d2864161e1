// Display formatting. Money arrives as integer micro-USD and is shown exactly (no float math),
// with at least two decimals; times are shown in the viewer's own time zone.
export function usd(micros: number): string {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(micros));
  const fraction = String(abs % 1_000_000).padStart(6, "0").replace(/0{1,4}$/, "");
  return `${sign}$${Math.floor(abs / 1_000_000).toLocaleString("en-US")}.${fraction.padEnd(2, "0")}`;
}

export function tokens(n: number): string {
  return n.toLocaleString("en-US");
}

export function when(ms: number | null | undefined): string {
  if (!ms) return "never";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

// <input type=date> value (a local calendar day) -> the UTC instant of its local midnight.
export function localDayStart(value: string): number {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y!, (m ?? 1) - 1, d ?? 1).getTime();
}

export function localDayValue(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// "12.50" (USD) -> micros, or null when it is not a plain decimal with up to six places.
export function parseUsd(text: string): number | null {
  const match = /^(\d+)(?:\.(\d{1,6}))?$/.exec(text.trim());
  if (!match) return null;
  return Number(match[1]) * 1_000_000 + Number((match[2] ?? "").padEnd(6, "0"));
}
