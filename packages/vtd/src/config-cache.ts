/**
 * The configuration caches of one VT-d unit (Intel VT-d spec 6.2.1 context cache,
 * 6.2.2 PASID cache, 6.5.2.1 / 6.5.2.2 their invalidation): context entries by
 * source-id (legacy entries also tagged by DID), PASID table entries by (source-id,
 * PASID) tagged by DID, and the resolved configurations built from those two, per
 * source-id for requests without PASID and per (source-id, PASID) otherwise. A
 * resolved configuration is dropped whenever either source entry is invalidated, so it
 * is never fresher or staler than the caches it summarises. Level names: none here
 * (tables are read by internal/config.ts; the walk's levels follow
 * generic_pt/fmt/vtdss.h: PTE = 0 ... PML5E = 4).
 */

import type { CtxInfo, PasidInfo } from "./internal/config.ts";
import { microKey, PASID_SPAN } from "./iotlb.ts";
import type { Cfg } from "./walk.ts";
import { Kind } from "./walk.ts";

/** A copy of every configuration cache (explain runs with empty caches and puts these back). */
export interface SavedConfigs {
  readonly ctx: Map<number, CtxInfo>;
  readonly pasid: Map<number, PasidInfo>;
  readonly rid: Array<Cfg | null>;
  readonly pc: Map<number, Cfg>;
}

/** The context cache, the PASID cache and the resolved configurations of one unit. */
export class ConfigCaches {
  /** Context cache: source-id -> entry. */
  readonly contextCache: Map<number, CtxInfo> = new Map();
  /** PASID cache: source-id * 2^20 + PASID -> entry. */
  readonly pasidCache: Map<number, PasidInfo> = new Map();
  /** Resolved configurations for requests without PASID, by source-id. */
  readonly ridCfg: Array<Cfg | null> = new Array<Cfg | null>(65536).fill(null);
  /**
   * The hot part of ridCfg: the micro-TLB key of each source-id (its IOTLB tag with
   * RID_PRIV folded in, see microKey), or -1 to take the general path (nothing cached,
   * pass-through, a request SRE would block, or translation disabled).
   */
  readonly ridKey: Float64Array = new Float64Array(65536).fill(-1);
  /** Resolved configurations for requests with PASID, by source-id * 2^20 + PASID. */
  readonly pasidCfg: Map<number, Cfg> = new Map();
  /** Non-null entries of ridCfg (a drop with none to drop skips the 65,536-entry scan). */
  #ridCount = 0;
  /** True while translation is enabled (GSTS.TES): ridKey holds keys only then (see setLane). */
  #lane = false;

  /**
   * Turns the fast lane on or off with GSTS.TES: off, every ridKey is -1; on, each is
   * derived from ridCfg again. So the lane serves only while translation is enabled
   * and its hit path needs no test of TES.
   */
  setLane(on: boolean): void {
    if (on === this.#lane) return;
    this.#lane = on;
    this.ridKey.fill(-1);
    if (on) for (let i = 0; i < 65536 && this.#ridCount > 0; i++) this.#setKey(i, this.ridCfg[i] ?? null);
  }

  /** Remembers the resolved configuration of (sid, pasid); NO_PASID requests pass `rid` true. */
  remember(sid: number, pasid: number, rid: boolean, cfg: Cfg): void {
    if (rid) this.setRid(sid, cfg);
    else this.pasidCfg.set(sid * PASID_SPAN + pasid, cfg);
  }

  /** Sets (or with null drops) the resolved configuration of requests without PASID from `sid`. */
  setRid(sid: number, cfg: Cfg | null): void {
    const had = this.ridCfg[sid] !== null && this.ridCfg[sid] !== undefined;
    this.#ridCount += (cfg !== null ? 1 : 0) - (had ? 1 : 0);
    this.ridCfg[sid] = cfg;
    this.#setKey(sid, cfg);
  }

  #setKey(sid: number, cfg: Cfg | null): void {
    const fast =
      this.#lane &&
      cfg !== null &&
      cfg.kind !== Kind.PASS_THROUGH &&
      !(cfg.ridPriv && !cfg.sre && !cfg.legacy);
    this.ridKey[sid] = fast ? microKey(cfg.tag, cfg.ridPriv) : -1;
  }

  #clearRids(): void {
    this.#ridCount = 0;
    this.ridCfg.fill(null);
    this.ridKey.fill(-1);
  }

  /** Drops every resolved configuration `match` accepts (both request kinds). */
  dropDerivedFor(match: (cfg: Cfg) => boolean): void {
    for (let i = 0; i < 65536 && this.#ridCount > 0; i++) {
      const c = this.ridCfg[i];
      if (c !== null && c !== undefined && match(c)) this.setRid(i, null);
    }
    for (const [k, c] of this.pasidCfg) if (match(c)) this.pasidCfg.delete(k);
  }

  /**
   * Context-cache invalidation (spec 6.5.2.1): global, by legacy DID, or by source-id
   * under a function mask. `scalable`: a domain-selective one drops everything (in
   * scalable mode context entries carry no DID).
   */
  invalidateContext(
    g: "global" | "domain" | "device",
    scalable: boolean,
    did: number,
    sid: number,
    fm: number,
  ): void {
    if (g === "global" || (g === "domain" && scalable)) {
      this.contextCache.clear();
      this.#clearRids();
      this.pasidCfg.clear();
      return;
    }
    if (g === "domain") {
      for (const [k, c] of this.contextCache) if (c.legacy && c.did === did) this.contextCache.delete(k);
      this.dropDerivedFor((c) => c.legacy && c.did === did);
      return;
    }
    // FM (spec 6.5.2.1): 0 none, 1 masks function bit 2, 2 bits 2:1, 3 bits 2:0.
    const mask = ~[0, 4, 6, 7][fm & 3]! & 0xffff;
    for (const k of this.contextCache.keys()) if ((k & mask) === (sid & mask)) this.contextCache.delete(k);
    this.dropDerivedFor((c) => (c.sid & mask) === (sid & mask));
  }

  /** PASID-cache invalidation (spec 6.5.2.2): all of a DID, one PASID of a DID, or everything. */
  invalidatePasidCache(g: "domain" | "pasid" | "global", did: number, pasid: number): void {
    if (g === "global") {
      this.pasidCache.clear();
      this.dropDerivedFor((c) => !c.legacy);
      return;
    }
    const hit = (d: number, p: number): boolean => d === did && (g === "domain" || p === pasid);
    for (const [k, e] of this.pasidCache) if (hit(e.did, e.pasid)) this.pasidCache.delete(k);
    this.dropDerivedFor((c) => !c.legacy && hit(c.did, c.pasid));
  }

  /** Drops everything. */
  clear(): void {
    this.contextCache.clear();
    this.pasidCache.clear();
    this.#clearRids();
    this.pasidCfg.clear();
  }

  /** A copy of every cache. */
  save(): SavedConfigs {
    return {
      ctx: new Map(this.contextCache),
      pasid: new Map(this.pasidCache),
      rid: [...this.ridCfg],
      pc: new Map(this.pasidCfg),
    };
  }

  /** Puts a {@link ConfigCaches.save} copy back. */
  restore(s: SavedConfigs): void {
    this.contextCache.clear();
    for (const [k, v] of s.ctx) this.contextCache.set(k, v);
    this.pasidCache.clear();
    for (const [k, v] of s.pasid) this.pasidCache.set(k, v);
    for (let i = 0; i < 65536; i++) this.setRid(i, s.rid[i] ?? null);
    this.pasidCfg.clear();
    for (const [k, v] of s.pc) this.pasidCfg.set(k, v);
  }
}
