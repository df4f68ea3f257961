/**
 * A throwaway npm registry for the release test: verdaccio on 127.0.0.1 with its storage,
 * password file and config in a temp dir, no uplinks (it never reaches the network), one
 * user created through its htpasswd auth, stopped by `stop()` (or when the test process
 * exits). Third-party runtime dependencies of the packages are seeded into it from the
 * workspace's own node_modules, so `npm install` against it alone can succeed.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export interface Registry {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  /** A publish token of the registry's one user. */
  readonly token: string;
  /** An npmrc naming this registry and no other, with the token. */
  npmrc(): string;
  stop(): Promise<void>;
}

const here = new URL(".", import.meta.url).pathname;

/** Starts verdaccio in `dir`; rejects after `timeoutMs` if it does not answer. */
export async function startRegistry(dir: string, timeoutMs = 30_000): Promise<Registry> {
  mkdirSync(join(dir, "storage"), { recursive: true });
  const config = join(dir, "config.yaml");
  writeFileSync(
    config,
    [
      `storage: ${join(dir, "storage")}`,
      "auth:",
      "  htpasswd:",
      `    file: ${join(dir, "htpasswd")}`,
      "    max_users: 1",
      // No uplinks: a package it does not hold is a 404, never a fetch from elsewhere.
      "uplinks: {}",
      "packages:",
      '  "@iommu-kit/*":',
      "    access: $all",
      "    publish: $authenticated",
      // The seeded third-party dependencies (ajv, commander, yaml and theirs).
      '  "**":',
      "    access: $all",
      "    publish: $authenticated",
      "web:",
      "  enable: false",
      "server:",
      "  keepAliveTimeout: 60",
      "log: { type: stdout, format: json, level: error }",
      "",
    ].join("\n"),
  );
  const child = spawn(process.execPath, [join(here, "registry-server.mjs"), config], {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`verdaccio did not start in ${timeoutMs} ms:\n${log}`)),
      timeoutMs,
    );
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`verdaccio exited (${code}) before listening:\n${out}${log}`));
    });
  });
  const url = `http://127.0.0.1:${port}/`;
  try {
    // What `npm adduser` does: PUT the user document, get a token back.
    const res = await fetch(`${url}-/user/org.couchdb.user:release`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "release", password: "release-test-only" }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { token?: string };
    if (res.status !== 201 || body.token === undefined)
      throw new Error(`adduser: ${res.status} ${JSON.stringify(body)}`);
    const token = body.token;
    const hostPath = url.replace(/^http:/, "");
    return {
      url,
      token,
      npmrc: () => `registry=${url}\n${hostPath}:_authToken=${token}\n`,
      stop: () => stop(child, killOnExit),
    };
  } catch (e) {
    await stop(child, killOnExit);
    throw e;
  }
}

async function stop(child: ChildProcess, killOnExit: () => void): Promise<void> {
  process.off("exit", killOnExit);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

/** The directory of package `name` as Node would resolve it from `fromDir` (pnpm layout included). */
function packageDir(name: string, fromDir: string): string {
  for (let d = fromDir; ; d = dirname(d)) {
    const candidate = join(d, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate);
    if (dirname(d) === d) throw new Error(`cannot find ${name} from ${fromDir}`);
  }
}

/**
 * Publishes to `registry` the installed copy of every non-`@iommu-kit` runtime dependency
 * of the packages in `pkgDirs`, transitively, as npm's publish request does (one PUT of
 * the packument with the tarball attached). Returns the `name@version`s seeded.
 */
export async function seedDependencies(
  registry: Registry,
  pkgDirs: string[],
  work: string,
): Promise<string[]> {
  const todo: [string, string][] = [];
  for (const dir of pkgDirs) {
    const deps = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).dependencies ?? {};
    for (const name of Object.keys(deps)) if (!name.startsWith("@iommu-kit/")) todo.push([name, dir]);
  }
  const seen = new Map<string, string>();
  while (todo.length > 0) {
    const [name, from] = todo.pop()!;
    const dir = packageDir(name, from);
    if (seen.has(dir)) continue;
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    seen.set(dir, `${manifest.name}@${manifest.version}`);
    for (const dep of Object.keys(manifest.dependencies ?? {})) todo.push([dep, dir]);
  }
  mkdirSync(work, { recursive: true });
  await Promise.all(
    [...seen].map(async ([dir, id]) => {
      const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
      const file = join(work, `${id.replace(/[@/]/g, "_")}.tgz`);
      // The installed directory holds exactly the published files: tar it as `package/`.
      const tar = spawnSync("tar", ["-czf", file, "--transform", "s,^\\.,package,", "-C", dir, "."]);
      if (tar.status !== 0) throw new Error(`tar ${dir}: ${tar.stderr}`);
      const data = readFileSync(file);
      const tarballName = `${manifest.name.replace(/^@[^/]+\//, "")}-${manifest.version}.tgz`;
      const doc = {
        _id: manifest.name,
        name: manifest.name,
        "dist-tags": { latest: manifest.version },
        versions: {
          [manifest.version]: {
            ...manifest,
            _id: id,
            dist: {
              shasum: createHash("sha1").update(data).digest("hex"),
              integrity: `sha512-${createHash("sha512").update(data).digest("base64")}`,
              tarball: `${registry.url}${manifest.name}/-/${tarballName}`,
            },
          },
        },
        _attachments: {
          [tarballName]: {
            content_type: "application/octet-stream",
            data: data.toString("base64"),
            length: data.length,
          },
        },
      };
      const res = await fetch(`${registry.url}${manifest.name.replace("/", "%2f")}`, {
        method: "PUT",
        headers: { "content-type": "application/json", authorization: `Bearer ${registry.token}` },
        body: JSON.stringify(doc),
        signal: AbortSignal.timeout(30_000),
      });
      if (res.status !== 201) throw new Error(`seeding ${id}: ${res.status} ${await res.text()}`);
    }),
  );
  return [...seen.values()].sort();
}
