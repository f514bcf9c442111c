import { execFileSync } from "node:child_process";
import { test, expect, unique, openLive, join, send, row, said, expectOnceInOrder } from "./fixtures";
import { startCluster, dropServer, type Server } from "./server";

/**
 * Two replicas on one Redis behind nginx, as `scripts/cluster.sh` runs them: one origin, one log, one fan-out.
 * (The eight-tab test of tabs.spec.ts runs through this cluster too.)
 */

let cluster: Server;
test.afterEach(async () => {
  if (cluster) await dropServer(cluster);
});

/** The Redis the cluster script started (it prints `redis: redis://127.0.0.1:PORT`). */
function redisCli(server: Server, ...args: string[]): string {
  const port = /redis:\/\/127\.0\.0\.1:(\d+)/.exec(server.log ?? "")?.[1];
  expect(port, "the cluster printed its Redis").toBeTruthy();
  return execFileSync("redis-cli", ["-p", port!, ...args]).toString().trim();
}

test("two browsers through nginx, scope everyone: both live, each sees the other's messages", async ({ browser }) => {
  test.setTimeout(90_000);
  cluster = await startCluster({ args: ["--scope", "everyone"] });
  const [one, two] = [await browser.newContext({ baseURL: cluster.base }), await browser.newContext({ baseURL: cluster.base })];
  const [a, b] = [await openLive(one), await openLive(two)];
  const [ada, bob] = [unique("Ada"), unique("Bob")];
  await join(a, ada);
  await join(b, bob);
  const sent: string[] = [];
  for (let i = 0; i < 6; i++) {
    const [from, name] = i % 2 ? [b, bob] : [a, ada];
    const text = unique(`hello ${i}`);
    await send(from, text);
    sent.push(`${name}: ${text}`);
  }
  for (const tab of [a, b]) {
    for (const line of sent) await expect(tab.locator(".log p[data-key]").filter({ hasText: line })).toHaveCount(1);
    await expectOnceInOrder(tab);
    expect(await said(tab.locator(".log p[data-key]"))).toEqual(sent);
  }
  await one.close();
  await two.close();
});

test("Redis comes back empty: a new epoch, and the tab shows the new log without a reload", async ({ browser }) => {
  test.setTimeout(90_000);
  cluster = await startCluster();
  const context = await browser.newContext({ baseURL: cluster.base });
  const tab = await openLive(context);
  const name = unique("Ada");
  await join(tab, name);
  const old = unique("before the flush");
  await send(tab, old);
  await expect(row(tab, name, old)).toHaveCount(1);
  const epoch = (await context.request.get("/api/messages")).headers()["broadcasting-epoch"];

  expect(redisCli(cluster, "FLUSHALL")).toBe("OK");
  // Another client of this browser writes the first message of the new log.
  const other = context.request;
  const join2 = await other.post("/api/join", { form: { username: "Writer" } });
  expect(join2.status()).toBe(200);
  const fresh = unique("in the new log");
  const answer = await other.post("/api/send", { form: { ticket: (await join2.json()).ticket, text: fresh } });
  expect(answer.status()).toBe(200);
  expect((await answer.json()).id).toBe(1);
  expect((await context.request.get("/api/messages")).headers()["broadcasting-epoch"]).not.toBe(epoch);

  await expect(row(tab, "Writer", fresh)).toHaveCount(1, { timeout: 15_000 });
  expect(await said(tab.locator(".log p[data-key]"))).toEqual([`Writer: ${fresh}`]);
  await context.close();
});
