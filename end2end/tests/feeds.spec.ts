import type { Browser, BrowserContext, Request } from "@playwright/test";
import { test, expect, unique, join, send, row, said, expectOnceInOrder, type Page } from "./fixtures";
import { startServer, dropServer, metric, type Server } from "./server";

/**
 * Feeds (issue 24): the page of feed `name` at `/f/{name}`, each tab live on its own feed only, and still ONE event
 * stream per browser whatever feeds its tabs show (src/client/relay/). Each test runs a server of its own, so the
 * stream gauge in its /metrics counts this test's browsers and nothing else.
 */

const OPEN_STREAMS = "broadcasting_open_streams";
/** Longer than a tab waits for a shared page before it fetches by itself: a message that would show has by then. */
const SETTLE_MS = 2_500;
/** What the 404 page says (FEED_NAME_RULE in src/shared/domain.rs). */
const NAME_RULE = "A feed name is 1 to 64 characters of a-z, 0-9 and '-'";

let server: Server;
test.afterEach(async () => {
  if (server) await dropServer(server);
});

/** A browser (its own cookie jar, Web Locks and BroadcastChannel) whose `/events` requests are recorded. */
async function newBrowser(
  browser: Browser,
): Promise<{ context: BrowserContext; streams: Request[]; open: () => Request[]; most: () => number }> {
  const context = await browser.newContext({ baseURL: server.base });
  const streams: Request[] = [];
  const ended = new Set<Request>();
  const open = () => streams.filter((request) => !ended.has(request));
  // The most `/events` requests open at once: make-before-break allows two for a moment, never more.
  let most = 0;
  context.on("request", (request) => {
    if (new URL(request.url()).pathname !== "/events") return;
    streams.push(request);
    most = Math.max(most, open().length);
  });
  context.on("requestfinished", (request) => ended.add(request));
  context.on("requestfailed", (request) => ended.add(request));
  return { context, streams, open, most: () => most };
}

/** Opens feed `feed`'s page (`main`: `/`) and waits until it is hydrated and live. */
async function openFeed(context: BrowserContext, feed: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(feed === "main" ? "/" : `/f/${feed}`);
  await page.locator("main[data-hydrated]").waitFor();
  await expect(page.getByRole("status")).toHaveText("Live");
  return page;
}

const streamsSettleAt = (expected: number) =>
  expect.poll(() => metric(server, OPEN_STREAMS), { message: "open event streams", timeout: 10_000 }).toBe(expected);

/** The feeds the newest `/events` request of a browser names, in order. */
const feedsOf = (request: Request) => new URL(request.url()).searchParams.getAll("feed");

test("tabs on three feeds hold one stream, each tab sees exactly its feed's messages, a second browser sees its feed's", async ({ browser }) => {
  test.setTimeout(120_000);
  // One session group for all visitors, so the second browser is told of the first one's messages too.
  server = await startServer({ args: ["--scope", "everyone"] });
  const [alpha, beta, gamma] = [unique("alpha"), unique("beta"), unique("gamma")];
  const first = await newBrowser(browser);
  const a1 = await openFeed(first.context, alpha);
  const a2 = await openFeed(first.context, alpha);
  const b = await openFeed(first.context, beta);
  const g = await openFeed(first.context, gamma);
  const tabs = [a1, a2, b, g];

  // Each page is its feed's: heading and title.
  for (const [tab, feed] of [[a1, alpha], [a2, alpha], [b, beta], [g, gamma]] as const) {
    await expect(tab.getByRole("heading", { level: 1 })).toHaveText(feed);
    await expect(tab).toHaveTitle(`${feed} · Broadcasting`);
  }

  // Steady state: one stream for the browser, naming every shown feed once, sorted.
  await streamsSettleAt(1);
  await expect.poll(() => first.open().length, { message: "/events requests open in the browser" }).toBe(1);
  expect(feedsOf(first.open()[0])).toEqual([alpha, beta, gamma].sort());
  const leaders = await Promise.all(tabs.map((tab) => tab.locator("[data-leads]").count()));
  expect(leaders.reduce((x, y) => x + y), "exactly one tab leads").toBe(1);

  // A second browser on one of the feeds.
  const second = await newBrowser(browser);
  const other = await openFeed(second.context, beta);
  await streamsSettleAt(2);

  const [ada, bob, cy, dee] = [unique("Ada"), unique("Bob"), unique("Cy"), unique("Dee")];
  await join(a1, ada);
  await join(b, bob);
  await join(g, cy);
  await join(other, dee);

  // Who is here is per feed too.
  await expect(b.getByRole("region", { name: "Who is here" })).toHaveText(new RegExp(`^2 here: (${bob}, ${dee}|${dee}, ${bob})$`));
  await expect(other.getByRole("region", { name: "Who is here" })).toContainText("2 here");
  await expect(a2.getByRole("region", { name: "Who is here" })).toHaveText(`1 here: ${ada}`);
  await expect(g.getByRole("region", { name: "Who is here" })).toHaveText(`1 here: ${cy}`);

  const toAlpha = unique("to alpha");
  await send(a1, toAlpha);
  const toBeta = unique("to beta");
  await send(b, toBeta);
  const toGamma = unique("to gamma");
  await send(g, toGamma);
  const fromOther = unique("from the other browser");
  await send(other, fromOther);

  await expect(row(a1, ada, toAlpha)).toHaveCount(1);
  await expect(row(a2, ada, toAlpha)).toHaveCount(1);
  await expect(row(b, bob, toBeta)).toHaveCount(1);
  await expect(row(b, dee, fromOther)).toHaveCount(1);
  await expect(row(g, cy, toGamma)).toHaveCount(1);
  await expect(row(other, bob, toBeta)).toHaveCount(1);
  await expect(row(other, dee, fromOther)).toHaveCount(1);
  await a1.waitForTimeout(SETTLE_MS);
  // Exactly its feed's messages, nothing of another feed's.
  const rows = (page: Page) => said(page.locator(".log p[data-key]"));
  expect(await rows(a1)).toEqual([`${ada}: ${toAlpha}`]);
  expect(await rows(a2)).toEqual([`${ada}: ${toAlpha}`]);
  expect((await rows(b)).sort()).toEqual([`${bob}: ${toBeta}`, `${dee}: ${fromOther}`].sort());
  expect((await rows(other)).sort()).toEqual([`${bob}: ${toBeta}`, `${dee}: ${fromOther}`].sort());
  expect(await rows(g)).toEqual([`${cy}: ${toGamma}`]);
  for (const tab of [...tabs, other]) await expectOnceInOrder(tab);

  // The last tab of a feed closes: the stream drops that feed; a tab on a new feed opens: the stream adds it, and
  // a message sent to it right away arrives. Still one stream per browser once settled.
  await g.close();
  await expect.poll(() => feedsOf(first.streams[first.streams.length - 1]), { timeout: 10_000 }).toEqual([alpha, beta].sort());
  const delta = unique("delta");
  const d = await openFeed(first.context, delta);
  const eve = unique("Eve");
  await join(d, eve);
  const toDelta = unique("to delta");
  await send(d, toDelta);
  await expect(row(d, eve, toDelta)).toHaveCount(1);
  await expect.poll(() => feedsOf(first.streams[first.streams.length - 1]), { timeout: 10_000 }).toEqual([alpha, beta, delta].sort());
  const late = unique("to alpha after the change");
  await send(a1, late);
  await expect(row(a2, ada, late)).toHaveCount(1);
  await streamsSettleAt(2);
  await expect.poll(() => first.open().length, { message: "/events requests open in the browser" }).toBe(1);
  expect(await rows(d)).toEqual([`${eve}: ${toDelta}`]);
  expect(first.most(), "streams open at once while the feeds changed").toBeLessThanOrEqual(2);
  // {alpha}, +beta, +gamma, -gamma, +delta: one stream per change of the set, none for a tab on a feed already carried.
  expect(first.streams.length, "a new stream only when the set of feeds changed").toBeLessThanOrEqual(5);
  await first.context.close();
  await second.context.close();
});

test("a feed's page is rendered on the server with that feed's log, and only that feed's", async ({ browser }) => {
  server = await startServer();
  const context = await browser.newContext({ baseURL: server.base });
  const feed = unique("news");
  const writer = unique("Writer");
  const ticket = (await (await context.request.post("/api/join", { form: { username: writer, feed } })).json()).ticket;
  const text = unique("in the feed");
  const sent = await context.request.post("/api/send", { form: { ticket, text, feed } });
  expect(sent.status(), await sent.text()).toBe(200);

  const html = await (await context.request.get(`/f/${feed}`)).text();
  expect(html).toContain(text);
  expect(html).toContain(`<h1>${feed}</h1>`);
  expect(html).toContain(`<title>${feed} · Broadcasting</title>`);
  for (const elsewhere of ["/", `/f/${unique("other")}`]) {
    expect(await (await context.request.get(elsewhere)).text(), elsewhere).not.toContain(text);
  }
  // And a reload shows it before anything else happens.
  const page = await context.newPage();
  await page.goto(`/f/${feed}`);
  await expect(row(page, writer, text)).toHaveCount(1);
  await context.close();
});

test("a name with capitals redirects to its lowercase page; a name that is no feed name is a 404 that says what one is", async ({ browser }) => {
  server = await startServer();
  const context = await browser.newContext({ baseURL: server.base });
  const redirect = await context.request.get("/f/Team-News", { maxRedirects: 0 });
  expect(redirect.status()).toBe(308);
  expect(redirect.headers()["location"]).toBe("/f/team-news");
  const page = await context.newPage();
  await page.goto("/f/Team");
  expect(new URL(page.url()).pathname).toBe("/f/team");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("team");

  for (const bad of ["/f/bad_name", "/f/-dash", `/f/${"a".repeat(65)}`]) {
    const answer = await context.request.get(bad);
    expect(answer.status(), bad).toBe(404);
    expect(await answer.text(), bad).toContain(NAME_RULE);
  }
  await context.close();
});

test("a bad feed field is a 400 JSON error and stores nothing", async ({ browser }) => {
  server = await startServer();
  const context = await browser.newContext({ baseURL: server.base });
  const joined = await context.request.post("/api/join", { form: { username: unique("Ada"), feed: "Bad Name" } });
  expect(joined.status()).toBe(400);
  expect((await joined.json()).kind).toBe("bad_request");
  const ticket = (await (await context.request.post("/api/join", { form: { username: unique("Ada") } })).json()).ticket;
  const text = unique("nowhere");
  const sent = await context.request.post("/api/send", { form: { ticket, text, feed: "bad_name" } });
  expect(sent.status()).toBe(400);
  expect(await sent.json()).toMatchObject({ kind: "bad_request" });
  expect(await (await context.request.get("/api/messages")).text()).not.toContain(text);
  await context.close();
});

test("a stream over the feed cap is refused, and the tabs say why", async ({ browser, expectRefusal }) => {
  test.setTimeout(60_000);
  expectRefusal(400);
  server = await startServer();
  const { context } = await newBrowser(browser);
  const tab = await openFeed(context, unique("cap"));
  // 64 more tabs' worth of feeds, said on the tabs' channel as tabs say them (src/client/codec: `t`, id, feed).
  await tab.evaluate(() => {
    const channel = new BroadcastChannel("broadcasting-feeds");
    for (let i = 0; i < 64; i++) channel.postMessage(`t\nfake${i}\nfeed-${i}`);
  });
  await expect(tab.locator(".stream-problem")).toBeVisible({ timeout: 10_000 });
  await expect(tab.getByRole("status")).not.toHaveText("Live");
  await context.close();
});
