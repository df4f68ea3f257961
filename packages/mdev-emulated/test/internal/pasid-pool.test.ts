import { describe, expect, it } from "vitest";
import { lowestFreePasid } from "../../src/internal/pasid-pool.ts";

describe("lowestFreePasid", () => {
  it("starts at 1 and skips held and busy PASIDs", () => {
    expect(lowestFreePasid(new Set(), 16, () => false)).toBe(1);
    expect(lowestFreePasid(new Set([1, 2]), 16, (p) => p === 3)).toBe(4);
  });

  it("answers -1 when [1, limit) is exhausted", () => {
    expect(lowestFreePasid(new Set([1]), 2, () => false)).toBe(-1);
    expect(lowestFreePasid(new Set(), 1, () => false)).toBe(-1);
    expect(lowestFreePasid(new Set(), 4, () => true)).toBe(-1);
  });
});
