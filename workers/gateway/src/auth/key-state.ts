// How stale the gateway's copy of an account's keys and limits may be when a change is written
// to D1 behind its back (the operator CLI); changes made through the gateway apply at once.
// Shared by the gateway (auth/live-keys.ts) and the CLI, which waits this long after such a
// change so that it is in force when the command returns.
export const KEY_STATE_MAX_AGE_MS = 1_000;
