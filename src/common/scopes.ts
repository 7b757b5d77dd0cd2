/** A scope or boundary string: `[a-z0-9_.:-]{1,64}`, optionally ending in `*` (`files:*`). */
export const SCOPE_PATTERN = /^[a-z0-9_.:-]{1,64}\*?$/;

/** Does one boundary allow this scope? `files:*` allows `files:delete` and `files:*`. */
export function boundaryAllows(boundary: string, scope: string): boolean {
  if (boundary === scope) return true;
  if (!boundary.endsWith('*')) return false;
  const prefix = boundary.slice(0, -1);
  return scope.startsWith(prefix) && scope.length > prefix.length;
}

export function withinBoundaries(boundaries: readonly string[], scope: string): boolean {
  return SCOPE_PATTERN.test(scope) && boundaries.some((b) => boundaryAllows(b, scope));
}

/** Parses a space-separated scope parameter (RFC 6749 §3.3); duplicates collapse. */
export function parseScope(scope: string): string[] {
  return [...new Set(scope.split(' ').filter((s) => s.length > 0))];
}
