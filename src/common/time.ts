/** Epoch milliseconds as an RFC 3339 timestamp (what every `/v1` time field is). */
export const iso = (ms: number): string => new Date(ms).toISOString();

/** The same, passing null through. */
export const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));
