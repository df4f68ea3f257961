import { FailNth } from "@iommu-kit/core";
import { describe, expect, it } from "vitest";
import type { HostObject } from "../src/context.ts";
import { ObjectTable } from "../src/context.ts";
import type { FaultRecord } from "../src/fault.ts";
import { FAULT_QUEUE_DEPTH, FaultQueue } from "../src/fault.ts";
import { expectErrno } from "./helpers.ts";

describe("ObjectTable", () => {
  it("numbers from 1, never reuses ids, wrong kind is ENOENT, reserve is an allocation point", () => {
    const f = new FailNth();
    const t = new ObjectTable(f);
    const mk = (kind: HostObject["kind"]): HostObject => ({ id: t.nextId, kind });
    expect(t.insert(mk("ioas")).id).toBe(1);
    expect(t.insert(mk("device")).id).toBe(2);
    expect(t.get(1, "ioas").kind).toBe("ioas");
    expectErrno(() => t.get(1, "device"), "ENOENT");
    expectErrno(() => t.get(3), "ENOENT");
    t.remove(1);
    expect(t.insert(mk("fault")).id).toBe(3);
    expect(t.values().map((o) => o.id)).toEqual([2, 3]);
    f.arm(1);
    expectErrno(() => t.reserve("ioas"), "ENOMEM");
    expect(t.nextId).toBe(4);
    expect(() => t.insert({ id: 9, kind: "ioas" })).toThrow();
  });
});

describe("FaultQueue", () => {
  const rec = (device: number, iova: number): FaultRecord => ({
    device,
    pasid: null,
    iova,
    access: "read",
    priv: false,
    class: "translation",
    recorded: true,
    vendor: { vendor: "mock", code: 1, name: "MOCK_TRANSLATION", fields: {} },
  });

  it("drains per device in order, keeps the rest", () => {
    const q = new FaultQueue();
    q.push(rec(1, 10));
    q.push(rec(2, 20));
    q.push(rec(1, 11));
    expect(q.drain(1).map((r) => r.iova)).toEqual([10, 11]);
    expect(q.size).toBe(1);
    expect(q.drain().map((r) => r.iova)).toEqual([20]);
    expect(q.size).toBe(0);
  });

  it("drops the oldest beyond its depth and counts them", () => {
    const q = new FaultQueue();
    for (let i = 0; i < FAULT_QUEUE_DEPTH + 3; i++) q.push(rec(1, i));
    expect(q.size).toBe(FAULT_QUEUE_DEPTH);
    expect(q.lost).toBe(3);
    expect(q.peek()[0]!.iova).toBe(3);
  });
});
