import AxeBuilder from "@axe-core/playwright";
import { test, expect, unique, openLive, join, type Page } from "./fixtures";
import { startServer, stopServer, dropServer, type Server } from "./server";

/**
 * Who is here (src/client/presence.rs, src/server/presence/): each joined tab beats for itself, leaves with a
 * beacon, and drops out when its lease runs out; the browser's one stream carries `PresenceChanged` to every tab.
 */

const here = (page: Page) => page.getByRole("region", { name: "Who is here" });

/** Milliseconds until `page` shows `text` as who is here (fails after `within`). */
async function timeUntil(page: Page, text: string | RegExp, within: number, from = Date.now()): Promise<number> {
  await expect(here(page)).toHaveText(text, { timeout: within });
  return Date.now() - from;
}

function note(what: string, ms: number) {
  test.info().annotations.push({ type: "presence", description: `${what}: ${ms} ms` });
  console.log(`presence: ${what}: ${ms} ms`);
}

test("a tab that joins shows in another tab of the browser within 1 s, once per name, and is gone within 5 s of closing", async ({ browser, baseURL }) => {
  const context = await browser.newContext({ baseURL });
  // The first tab leads the browser's stream; the ones that join and close follow it.
  const watcher = await openLive(context);
  await expect(here(watcher)).toHaveText("No one has joined yet.");
  const visitor = await openLive(context);
  const [ada, grace] = [unique("Ada"), unique("Grace")];

  await join(visitor, ada);
  note("joined → shown in another tab", await timeUntil(watcher, `1 here: ${ada}`, 1_000));
  await expect(here(visitor)).toHaveText(`1 here: ${ada}`);

  // The same name from a second tab counts once; another name counts.
  const twin = await openLive(context);
  await join(twin, ada);
  await join(watcher, grace);
  await timeUntil(visitor, `2 here: ${ada}, ${grace}`, 1_000);
  await expect(here(twin)).toHaveText(`2 here: ${ada}, ${grace}`);

  // Closing one of Ada's tabs leaves Ada here; closing the other takes her off the list.
  await twin.close();
  await watcher.waitForTimeout(1_000);
  await expect(here(watcher)).toHaveText(`2 here: ${ada}, ${grace}`);
  const closed = Date.now();
  await visitor.close();
  note("closed → gone from another tab", await timeUntil(watcher, `1 here: ${grace}`, 5_000, closed));
  await context.close();
});

test("a long list folds to two names and a count, and opens on the whole list from the keyboard", async ({ browser, baseURL }) => {
  const context = await browser.newContext({ baseURL });
  const watcher = await openLive(context);
  const names = ["Ada", "Barbara", "Claude", "Dennis", "Edsger"].map((n) => `${n}-${unique("x").slice(2)}`);
  // Four of them beat through the API (as tabs would), the fifth joins in the page.
  for (const [i, name] of names.slice(0, 4).entries()) {
    const ticket = (await (await context.request.post("/api/join", { form: { username: name } })).json()).ticket;
    expect((await context.request.post("/api/presence", { form: { ticket, tab: `api-tab-${i}` } })).status()).toBe(200);
  }
  await join(watcher, names[4]);
  const summary = here(watcher).locator("summary");
  await expect(summary).toHaveText(`5 here: ${names[0]}, ${names[1]} and 3 others`);
  await expect(here(watcher).getByRole("list")).toBeHidden();
  await summary.focus();
  await watcher.keyboard.press("Enter");
  await expect(here(watcher).getByRole("listitem")).toHaveText(names);
  await context.close();
});

for (const colorScheme of ["light", "dark"] as const) {
  test(`who is here, folded and opened, has no accessibility violations (${colorScheme})`, async ({ browser, baseURL }) => {
    const context = await browser.newContext({ baseURL, colorScheme });
    const page = await openLive(context);
    for (const [i, name] of ["Ada", "Barbara", "Claude", "Dennis"].entries()) {
      const ticket = (await (await context.request.post("/api/join", { form: { username: name } })).json()).ticket;
      await context.request.post("/api/presence", { form: { ticket, tab: `axe-${i}` } });
    }
    const summary = here(page).locator("summary");
    await expect(summary).toHaveText("4 here: Ada, Barbara and 2 others");
    await summary.click();
    await expect(here(page).getByRole("listitem")).toHaveCount(4);
    const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
    expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)).toEqual([]);
    await context.close();
  });
}

test("a forged, foreign or malformed heartbeat is refused and changes nothing", async ({ browser, baseURL }) => {
  const context = await browser.newContext({ baseURL });
  const watcher = await openLive(context);
  const ada = unique("Ada");
  await join(watcher, ada);
  await expect(here(watcher)).toHaveText(`1 here: ${ada}`);

  const elsewhere = await browser.newContext({ baseURL });
  const foreign = (await (await elsewhere.request.post("/api/join", { form: { username: "Mallory" } })).json()).ticket;
  const own = (await (await context.request.post("/api/join", { form: { username: "Eve" } })).json()).ticket;
  const forged = own.replace(/\.[^.]+$/, ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  for (const [ticket, tab, status, kind] of [
    [forged, "mallory", 403, "bad_ticket"],
    [foreign, "mallory", 403, "bad_ticket"],
    ["", "mallory", 403, "bad_ticket"],
    [own, "", 400, "bad_request"],
    [own, "not a tab id", 400, "bad_request"],
  ] as const) {
    for (const path of ["/api/presence", "/api/presence/leave"]) {
      const response = await context.request.post(path, { form: { ticket, tab } });
      expect(response.status(), `${path} ${tab}`).toBe(status);
      const body = await response.json();
      expect(body.kind).toBe(kind);
      expect(body.message.length).toBeGreaterThan(10);
    }
  }
  expect(await (await context.request.get("/api/presence")).json()).toEqual({ names: [ada] });
  expect(await (await elsewhere.request.get("/api/presence")).json()).toEqual({ names: [] });
  await watcher.waitForTimeout(1_500);
  await expect(here(watcher)).toHaveText(`1 here: ${ada}`);
  await elsewhere.close();
  await context.close();
});

test.describe("with a 3 s lease", () => {
  let server: Server;
  test.afterEach(async () => {
    if (server) await dropServer(server);
  });

  // Headless Chromium keeps a page's timers running under `Page.setWebLifecycleState` frozen (seen here: the tab
  // went on beating), so the tab's network is cut too, as for a tab whose machine went offline or to sleep.
  test("a frozen tab cut off from the network drops out within the lease and comes back when it wakes", async ({ browser }) => {
    test.setTimeout(60_000);
    server = await startServer({ args: ["--presence-lease", "3s"] });
    const context = await browser.newContext({ baseURL: server.base });
    const watcher = await openLive(context);
    const sleeper = await openLive(context);
    const ada = unique("Ada");
    await join(sleeper, ada);
    await timeUntil(watcher, `1 here: ${ada}`, 1_000);

    const cdp = await context.newCDPSession(sleeper);
    await cdp.send("Network.enable");
    const frozen = Date.now();
    await cdp.send("Network.emulateNetworkConditions", { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
    const gone = await timeUntil(watcher, "No one has joined yet.", 6_000, frozen);
    note("frozen → gone (3 s lease)", gone);
    expect(gone, "not before the lease ran out").toBeGreaterThan(1_000);

    const woken = Date.now();
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.send("Page.setWebLifecycleState", { state: "active" });
    note("woken → back", await timeUntil(watcher, `1 here: ${ada}`, 7_000, woken));
    await context.close();
  });

  test("after a server restart the list holds who is still here and no one who left meanwhile", async ({ browser }) => {
    test.setTimeout(60_000);
    server = await startServer({ args: ["--presence-lease", "3s"] });
    const addr = server.base.replace("http://", "");
    const context = await browser.newContext({ baseURL: server.base });
    const watcher = await openLive(context);
    const leaver = await openLive(context);
    const [ada, bob] = [unique("Ada"), unique("Bob")];
    await join(watcher, ada);
    await join(leaver, bob);
    await timeUntil(watcher, `2 here: ${ada}, ${bob}`, 1_000);

    await stopServer(server);
    await expect(watcher.getByRole("status")).toHaveText("Reconnecting…");
    await leaver.close(); // its beacon finds no server
    server = await startServer({ dataDir: server.dataDir, addr, args: ["--presence-lease", "3s"] });
    await expect(watcher.getByRole("status")).toHaveText("Live", { timeout: 15_000 });
    await timeUntil(watcher, `1 here: ${ada}`, 3_000);
    await watcher.waitForTimeout(4_000);
    await expect(here(watcher)).toHaveText(`1 here: ${ada}`);
    await context.close();
  });
});
