import { test, expect, unique, join, send, type Page, TOKEN_SECRET, signToken } from "./fixtures";
import { startCluster, dropServer, type Server } from "./server";

/**
 * A moderator takes a message down (issue 26): two replicas on Redis behind nginx, three tabs of two browsers (two
 * through nginx, one straight to the second replica). A moderator's token (`role = "moderator"`, signed as the
 * deployer's backend would) removes the message through the first replica's admin API; every tab shows "message
 * removed" in its place and none shows its text any more, without a reload.
 */
const SECRET = TOKEN_SECRET;
const sign = signToken;

let cluster: Server;
test.afterEach(async () => {
  if (cluster) await dropServer(cluster);
});

async function live(page: Page, url: string) {
  await page.goto(url);
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.getByRole("status")).toHaveText("Live");
}

test("a removal shows as 'message removed' in every tab of two browsers, behind nginx and on another replica", async ({ browser }) => {
  test.setTimeout(120_000);
  cluster = await startCluster({ args: ["--join", "both", "--token-secret", SECRET] });
  const [first, second] = cluster.replicas!;
  const feed = unique("mod");
  const spam = unique("cheap pills");

  const viaNginx = await browser.newContext({ baseURL: cluster.base });
  const [writer, reader] = [await viaNginx.newPage(), await viaNginx.newPage()];
  await live(writer, `/f/${feed}`);
  await join(writer, unique("Ada"));
  await send(writer, "a fine message");
  await send(writer, spam);
  await live(reader, `/f/${feed}`);
  const direct = await browser.newContext({ baseURL: second });
  const elsewhere = await direct.newPage();
  await live(elsewhere, `/f/${feed}`);
  const tabs = [writer, reader, elsewhere];
  for (const tab of tabs) await expect(tab.locator(".log p[data-key]").filter({ hasText: spam })).toHaveCount(1);

  const moderator = sign({ sub: "mod-1", name: "Mo", role: "moderator", exp: Math.floor(Date.now() / 1000) + 600 });
  const listed = await (await viaNginx.request.get(`${first}/api/v1/admin/feeds/${feed}/messages`, {
    headers: { Authorization: `Bearer ${moderator}` },
  })).json();
  const id = listed.find((m: { text: string }) => m.text === spam).id;
  const started = Date.now();
  const removed = await viaNginx.request.delete(`${first}/api/v1/admin/feeds/${feed}/messages/${id}`, {
    headers: { Authorization: `Bearer ${moderator}` },
  });
  expect(removed.status()).toBe(200);
  for (const tab of tabs) {
    await expect(tab.locator(`.log p[data-key="${id}"].removed`)).toHaveText(/message removed/);
    await expect(tab.locator(".log")).not.toContainText(spam);
    await expect(tab.locator(".log p[data-key]").filter({ hasText: "a fine message" })).toHaveCount(1);
  }
  console.log(`every tab showed the removal ${Date.now() - started} ms after it was asked`);
  await reader.screenshot({ path: "test-results/moderation-removed.png" });
  // The page rendered anew shows it removed too.
  await reader.reload();
  await reader.locator("main[data-hydrated]").waitFor();
  await expect(reader.locator(`.log p[data-key="${id}"].removed`)).toHaveText(/message removed/);
  await viaNginx.close();
  await direct.close();
});
