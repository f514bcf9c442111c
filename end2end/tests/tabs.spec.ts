import type { Browser, BrowserContext } from "@playwright/test";
import { test, expect, unique, openLive, join, send, row, said, expectOnceInOrder, type Page } from "./fixtures";
import { startServer, startCluster, dropServer, metric, type Server } from "./server";

/**
 * One event stream per browser, shared by its tabs (src/client/relay.rs). Each test runs a server of its own, so
 * the stream gauge and the request counter in its /metrics count this test's browsers and nothing else.
 */

const OPEN_STREAMS = "broadcasting_open_streams";
const PAGE_REQUESTS = "broadcasting_page_requests_total";
/** Longer than a follower waits for the leader's shared page before it fetches by itself (SHARE_GRACE). */
const SETTLE_MS = 2_500;

let server: Server;
test.afterEach(async () => {
  if (server) await dropServer(server);
});

async function newBrowser(browser: Browser, init?: () => void): Promise<BrowserContext> {
  const context = await browser.newContext({ baseURL: server.base });
  if (init) await context.addInitScript(init);
  return context;
}

async function openTabs(context: BrowserContext, count: number): Promise<Page[]> {
  const tabs: Page[] = [];
  for (let i = 0; i < count; i++) tabs.push(await openLive(context));
  return tabs;
}

const streamsSettleAt = (expected: number) =>
  expect.poll(() => metric(server, OPEN_STREAMS), { message: "open event streams", timeout: 10_000 }).toBe(expected);

for (const [where, start] of [
  ["", () => startServer()],
  [", through nginx to two replicas on Redis", () => startCluster()],
] as const) test(`eight tabs of one browser: all live on one stream, and one message costs one fetch${where}`, async ({ browser }) => {
  test.setTimeout(90_000);
  server = await start();
  const context = await newBrowser(browser);
  const tabs = await openTabs(context, 8);
  for (const tab of tabs) await expect(tab.getByRole("status")).toHaveText("Live");
  await streamsSettleAt(1);
  const leaders = await Promise.all(tabs.map((tab) => tab.locator("[data-leads]").count()));
  expect(leaders.reduce((a, b) => a + b), "exactly one tab leads").toBe(1);

  const [ada, bob] = [unique("Ada"), unique("Bob")];
  await join(tabs[0], ada);
  await join(tabs[7], bob);
  for (const [author, from] of [[ada, tabs[0]], [bob, tabs[7]]] as const) {
    const before = await metric(server, PAGE_REQUESTS);
    const text = unique(`from ${author}`);
    await send(from, text);
    for (const tab of tabs) await expect(row(tab, author, text)).toHaveCount(1);
    // Long enough for any tab that did not get the shared page to have fetched by itself.
    await tabs[0].waitForTimeout(SETTLE_MS);
    expect(await metric(server, PAGE_REQUESTS) - before, "GET /api/messages for one message, 8 tabs").toBe(1);
  }
  expect(await metric(server, OPEN_STREAMS)).toBe(1);
  for (const tab of tabs) await expectOnceInOrder(tab);
  await context.close();
});

test("the leading tab closed, crashed, closed: another leads within 2 s each time and nothing sent meanwhile is lost", async ({ browser }) => {
  test.setTimeout(90_000);
  server = await startServer();
  const context = await newBrowser(browser);
  // The first tab asks for the lock first, and gets it.
  let tabs = await openTabs(context, 5);
  await streamsSettleAt(1);
  await expect(tabs[0].locator("[data-leads]")).toHaveCount(1);
  for (const tab of tabs.slice(1)) await expect(tab.locator("[data-leads]")).toHaveCount(0);

  // The same browser sends through the API (so this group is told), right as each leader goes away.
  const writer = unique("Writer");
  const ticket = (await (await context.request.post("/api/join", { form: { username: writer } })).json()).ticket;
  const sent: string[] = [];
  const sendNow = async (text: string) => {
    expect((await context.request.post("/api/send", { form: { ticket, text } })).status()).toBe(200);
    sent.push(text);
  };
  const times: number[] = [];
  for (let round = 1; round <= 3; round++) {
    const leads = await Promise.all(tabs.map((tab) => tab.locator("[data-leads]").count()));
    expect(leads.reduce((a, b) => a + b), "exactly one tab leads").toBe(1);
    const leader = tabs[leads.indexOf(1)];
    tabs = tabs.filter((tab) => tab !== leader);

    const during = unique(`during hand-over ${round}`);
    const closedAt = Date.now();
    if (round === 2) {
      // This one crashes instead: its renderer dies without running any of the page's code.
      const crashed = leader.waitForEvent("crash");
      void (await context.newCDPSession(leader)).send("Page.crash").catch(() => {});
      await crashed;
    } else {
      await leader.close();
    }
    await sendNow(during);
    await Promise.all(tabs.map((tab) => expect(row(tab, writer, during)).toHaveCount(1, { timeout: 2_000 })));
    times.push(Date.now() - closedAt);
    for (const tab of tabs) await expect(tab.getByRole("status")).toHaveText("Live", { timeout: 2_000 });

    // The new leader's stream carries what comes next, and the old one is gone.
    const after = unique(`after hand-over ${round}`);
    await sendNow(after);
    for (const tab of tabs) await expect(row(tab, writer, after)).toHaveCount(1);
    await streamsSettleAt(1);
  }
  for (const tab of tabs) {
    expect((await said(tab.locator(".log p[data-key]"))).slice(-sent.length)).toEqual(sent.map((text) => `${writer}: ${text}`));
    await expectOnceInOrder(tab);
  }
  const report = `${times.join(", ")} ms from closing the leader to the message in every remaining tab`;
  test.info().annotations.push({ type: "hand-over", description: report });
  console.log(`hand-over: ${report}`);
  await context.close();
});

test("two browsers hold a stream each, and one group's notices stay in it", async ({ browser }) => {
  test.setTimeout(60_000);
  server = await startServer();
  const [first, second] = [await newBrowser(browser), await newBrowser(browser)];
  const tabsA = await openTabs(first, 3);
  const tabsB = await openTabs(second, 3);
  await streamsSettleAt(2);

  const ada = unique("Ada");
  await join(tabsA[2], ada);
  const text = unique("for this browser");
  await send(tabsA[2], text);
  for (const tab of tabsA) await expect(row(tab, ada, text)).toHaveCount(1);
  await tabsB[0].waitForTimeout(SETTLE_MS);
  for (const tab of tabsB) await expect(row(tab, ada, text), "another group was not told").toHaveCount(0);
  await first.close();
  await second.close();
});

/** Run in every page of a browser before its own scripts: a browser without Web Locks. */
function withoutWebLocks() {
  Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined, configurable: true });
}

test("without Web Locks each tab opens its own stream and still gets every message", async ({ browser }) => {
  test.setTimeout(60_000);
  server = await startServer();
  const context = await newBrowser(browser, withoutWebLocks);
  const tabs = await openTabs(context, 3);
  await streamsSettleAt(3);
  const name = unique("Solo");
  await join(tabs[1], name);
  // The feed's first message makes its log and epoch (nothing is stored before it), so the tabs can only name the
  // epoch in their URL from the second message on: the first one each tab fetches itself.
  const first = unique("the log's first");
  await send(tabs[1], first);
  for (const tab of tabs) await expect(row(tab, name, first)).toHaveCount(1);
  await tabs[0].waitForTimeout(SETTLE_MS);
  const before = await metric(server, PAGE_REQUESTS);
  const text = unique("to every tab");
  await send(tabs[1], text);
  for (const tab of tabs) await expect(row(tab, name, text)).toHaveCount(1);
  // Every tab fetches the message itself, but all three ask the same URL (`since=A&until=B&epoch=E`), whose answer
  // is immutable: the browser's HTTP cache sends one request to the server and answers the other two tabs from it.
  await tabs[0].waitForTimeout(SETTLE_MS);
  expect(await metric(server, PAGE_REQUESTS) - before, "GET /api/messages for one message, 3 tabs on their own").toBe(1);
  await context.close();
});

test("a refused stream says why in the page", async ({ browser, expectRefusal }) => {
  test.setTimeout(60_000);
  expectRefusal(429);
  server = await startServer({ args: ["--max-streams-per-browser", "2"] });
  // Without Web Locks every tab asks for a stream of its own, so the third is over this browser's cap.
  const context = await newBrowser(browser, withoutWebLocks);
  await openTabs(context, 2);
  const third = await context.newPage();
  await third.goto("/");
  await expect(third.getByRole("alert")).toContainText("already has 2 live streams");
  await expect(third.getByRole("status")).not.toHaveText("Live");
  await context.close();
});

test("a frozen tab catches up when it wakes", async ({ browser }) => {
  test.setTimeout(60_000);
  server = await startServer();
  const context = await newBrowser(browser);
  const [writerTab, sleeper] = await openTabs(context, 2);
  const writer = unique("Writer");
  await join(writerTab, writer);
  const cdp = await context.newCDPSession(sleeper);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  const missed = [unique("while frozen 1"), unique("while frozen 2")];
  for (const text of missed) {
    await send(writerTab, text);
    await expect(row(writerTab, writer, text)).toHaveCount(1);
  }
  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  for (const text of missed) await expect(row(sleeper, writer, text)).toHaveCount(1);
  await expectOnceInOrder(sleeper);
  await context.close();
});
