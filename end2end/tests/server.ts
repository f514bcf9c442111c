import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A server of the test's own, for tests that restart it or count what it serves: the same debug binary and site
 * that `cargo leptos end-to-end` just built, on its own port and data directory (the one cargo-leptos runs is shared
 * by every other test and cannot be restarted from here).
 */
const root = path.resolve(__dirname, "../..");

export interface Server {
  child: ChildProcess;
  base: string;
  dataDir: string;
  /** Behind nginx (`startCluster`): each replica's own address, for its /metrics. */
  replicas?: string[];
  /** Behind nginx: what `scripts/cluster.sh` printed (where each part listens). */
  log?: string;
}

/** Starts a server on `addr` (a free port by default) with `args` added to its flags. */
export function startServer(options: { dataDir?: string; addr?: string; args?: string[] } = {}): Promise<Server> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), "broadcasting-e2e-"));
  const child = spawn(
    path.join(root, "target/debug/broadcasting"),
    ["--addr", options.addr ?? "127.0.0.1:0", "--data-dir", dataDir, "--config", "/dev/null", "--log-level", "warn", ...(options.args ?? [])],
    {
      env: { ...process.env, LEPTOS_SITE_ROOT: path.join(root, "target/site"), BROADCASTING_SEND_RATE: "0", BROADCASTING_ADDRESS_RATE: "0" },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.stdout!.once("data", (line: Buffer) => {
      const match = /listening on (http:\/\/\S+)/.exec(line.toString());
      if (match) resolve({ child, base: match[1], dataDir });
      else reject(new Error(`unexpected first line: ${line}`));
    });
  });
}

/** Stops the server (SIGTERM) and waits for it to exit. */
export function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    server.child.once("exit", () => resolve());
    server.child.kill("SIGTERM");
  });
}

/** Stops the server and removes its data directory. */
export async function dropServer(server: Server): Promise<void> {
  await stopServer(server);
  rmSync(server.dataDir, { recursive: true, force: true });
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Several replicas on one Redis behind nginx, started by the project's own `scripts/cluster.sh` (with this debug
 * build): `base` is nginx, the one origin. `stopServer`/`dropServer` stop it all (the script stops its parts).
 */
export async function startCluster(options: { replicas?: number; args?: string[] } = {}): Promise<Server> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "broadcasting-cluster-e2e-"));
  const port = await freePort();
  const child = spawn(
    "bash",
    [
      path.join(root, "scripts/cluster.sh"),
      "--replicas", String(options.replicas ?? 2),
      "--port", String(port),
      "--dir", dataDir,
      "--binary", path.join(root, "target/debug/broadcasting"),
      "--site", path.join(root, "target/site"),
      "--", "--log-level", "warn", ...(options.args ?? []),
    ],
    { env: { ...process.env, BROADCASTING_SEND_RATE: "0", BROADCASTING_ADDRESS_RATE: "0" }, stdio: ["ignore", "pipe", "inherit"] },
  );
  const replicas: string[] = [];
  return new Promise((resolve, reject) => {
    let seen = "";
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`scripts/cluster.sh exited (${code}) before it was ready:\n${seen}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      seen += chunk.toString();
      for (const match of seen.matchAll(/^replica \d+: (http:\/\/\S+)/gm)) if (!replicas.includes(match[1])) replicas.push(match[1]);
      const origin = /^origin: (http:\/\/\S+)/m.exec(seen);
      if (origin) resolve({ child, base: origin[1], dataDir, replicas, log: seen });
    });
  });
}

/** One series of the server's `/metrics`, e.g. `broadcasting_open_streams`; 0 when it has not been recorded yet. */
export async function metric(server: Server, series: string): Promise<number> {
  let total = 0;
  // Behind nginx: the sum over the replicas (nginx would answer from one of them).
  for (const base of server.replicas ?? [server.base]) {
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const line of text.split("\n")) {
      const [name, value] = line.split(" ");
      if (name === series) total += Number(value);
    }
  }
  return total;
}
