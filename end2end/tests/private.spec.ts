import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test, expect, send, type Page, TOKEN_SECRET, signToken } from "./fixtures";
import { startCluster, dropServer, type Server } from "./server";

/**
 * A private feed behind nginx, as a deployer runs it: `team-*` is for signed-in members only (settings file). Two
 * members' tabs of one browser, each opened with its own token, read the feed and get each other's messages live
 * (the browser's one stream carries the feed with their read pass); a second browser without a token sees that the
 * feed is for members and none of its messages, and every page URL the members' tabs fetched answers it 403
 * through nginx's cache.
 */
const SECRET = TOKEN_SECRET;
const sign = signToken;

const member = (sub: string, name: string) =>
  sign({ sub, name, exp: Math.floor(Date.now() / 1000) + 600, feeds: { read: ["team-*"], write: ["team-*"] } });

let cluster: Server;
test.afterEach(async () => {
  if (cluster) await dropServer(cluster);
});

async function opened(page: Page, url: string) {
  await page.goto(url);
  await page.locator("main[data-hydrated]").waitFor();
}

test("a private feed through nginx: members read and post live, a browser without a token gets nothing", async ({ browser }) => {
  test.setTimeout(120_000);
  const dir = mkdtempSync(path.join(tmpdir(), "broadcasting-private-e2e-"));
  const config = path.join(dir, "settings.toml");
  writeFileSync(config, '[broadcasting.feed-access."team-*"]\nread = "token"\nwrite = "token"\n');
  cluster = await startCluster({ args: ["--config", config, "--join", "both", "--token-secret", SECRET] });
  const feed = "team-ops";

  const members = await browser.newContext({ baseURL: cluster.base });
  // The members' tabs make no request that fails (a locked tab asks nothing of the feed before it joins).
  const errors: string[] = [];
  members.on("page", (page) => page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text())));
  const pages: string[] = [];
  members.on("request", (request) => {
    if (request.url().includes(`/api/feeds/${feed}/messages`)) pages.push(request.url());
  });
  const ada = await members.newPage();
  await opened(ada, `/f/${feed}#token=${member("user-1", "Ada")}`);
  await expect(ada.locator(".posting-as")).toContainText("Posting as Ada");
  await expect(ada.getByRole("status")).toHaveText("Live");
  await send(ada, "the launch is on friday");

  const bob = await members.newPage();
  await opened(bob, `/f/${feed}#token=${member("user-2", "Bob")}`);
  await expect(bob.locator(".posting-as")).toContainText("Posting as Bob");
  await expect(bob.locator(".log p[data-key]").filter({ hasText: "the launch is on friday" })).toHaveCount(1);
  await send(bob, "noted");
  // Live in Ada's tab: the browser's one stream carries the private feed.
  await expect(ada.locator(".log p[data-key]").filter({ hasText: "noted" })).toHaveCount(1);
  await expect(ada.locator(".members-only")).toHaveCount(0);

  const stranger = await browser.newContext({ baseURL: cluster.base });
  const outside = await stranger.newPage();
  await opened(outside, `/f/${feed}`);
  await expect(outside.locator(".members-only")).toContainText("signed-in members");
  await expect(outside.getByRole("status")).toHaveText("Members only");
  await expect(outside.locator(".log p[data-key]")).toHaveCount(0);
  await expect(outside.locator(".empty")).toHaveCount(0);
  expect(await outside.content()).not.toContain("the launch is on friday");
  // A typed name may not join it.
  await outside.getByLabel("Username").fill("Mallory");
  await outside.getByRole("button", { name: "Join" }).click();
  await expect(outside.getByRole("alert")).toContainText("signed-in members");
  await expect(outside.locator(".posting-as")).toHaveCount(0);
  await outside.screenshot({ path: "test-results/private-outside.png" });
  await ada.screenshot({ path: "test-results/private-member.png" });

  // Every page the members' tabs fetched, asked again through nginx by the browser without a token: refused, and
  // never from the cache.
  expect(pages.length).toBeGreaterThan(0);
  for (const url of new Set(pages)) {
    for (let i = 0; i < 2; i++) {
      const answer = await stranger.request.get(url);
      expect(answer.status(), url).toBe(403);
      expect(answer.headers()["x-cache-status"] ?? "", url).not.toBe("HIT");
      expect(await answer.text()).not.toContain("friday");
    }
  }
  expect(errors, "errors in the members' tabs").toEqual([]);
  await members.close();
  await stranger.close();
});
