import { describe, expect, it } from 'vitest';
import { boundaryAllows, parseScope, withinBoundaries } from './scopes.js';

describe('scopes', () => {
  it('allows an exact boundary', () => {
    expect(boundaryAllows('research:read', 'research:read')).toBe(true);
    expect(boundaryAllows('research:read', 'research:write')).toBe(false);
  });

  it('expands a wildcard boundary to its prefix only', () => {
    expect(boundaryAllows('files:*', 'files:delete')).toBe(true);
    expect(boundaryAllows('files:*', 'files:*')).toBe(true);
    expect(boundaryAllows('files:*', 'filesystem:delete')).toBe(false);
    expect(boundaryAllows('files:*', 'files:')).toBe(false);
  });

  it('refuses scopes outside the pattern even when a wildcard would match', () => {
    expect(withinBoundaries(['files:*'], 'files:DELETE')).toBe(false);
    expect(withinBoundaries(['files:*'], 'files:a b')).toBe(false);
  });

  it('parses space-separated scopes without duplicates', () => {
    expect(parseScope(' a  b a ')).toEqual(['a', 'b']);
  });
});
