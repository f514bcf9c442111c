import { test, expect, unique, join, send, row, said, openLive } from "./fixtures";
import { startServer, stopServer, dropServer } from "./server";

test("a log made anew (a new epoch) replaces the rows a tab holds, without a reload", async ({ browser }) => {
  test.setTimeout(60_000);
  // A memory store: each start is a new log, with ids from 1 and a new epoch, as when Redis comes back empty.
  let server = await startServer({ args: ["--store", "memory"] });
  const addr = server.base.replace("http://", "");
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const tabs = [await openLive(context), await openLive(context)];
    const reader = unique("Reader");
    await join(tabs[1], reader);
    const old = [];
    for (let i = 0; i < 4; i++) {
      old.push(unique(`old ${i}`));
      await send(tabs[1], old[i]);
      await expect(row(tabs[1], reader, old[i])).toHaveCount(1);
    }
    for (const tab of tabs) await expect(row(tab, reader, old[3])).toHaveCount(1);

    await stopServer(server);
    server = await startServer({ dataDir: server.dataDir, addr, args: ["--store", "memory"] });
    for (const tab of tabs) await expect(tab.getByRole("status")).toHaveText("Live", { timeout: 15_000 });

    // Id 1 of the new log, below every id the tabs hold: they must not wait for ids above theirs.
    const fresh = unique("new log");
    const other = context.request;
    const ticket = (await (await other.post("/api/join", { form: { username: "Writer" } })).json()).ticket;
    const answer = await (await other.post("/api/send", { form: { ticket, text: fresh } })).json();
    expect(answer.id).toBe(1);
    for (const tab of tabs) {
      await expect(row(tab, "Writer", fresh)).toHaveCount(1);
      expect(await said(tab.locator(".log p[data-key]"))).toEqual([`Writer: ${fresh}`]);
    }
    // The tab is still joined (the ticket secret outlives the log) and goes on in the new log.
    const after = unique("after");
    await send(tabs[1], after);
    for (const tab of tabs) {
      await expect(row(tab, reader, after)).toHaveCount(1);
      expect(await said(tab.locator(".log p[data-key]"))).toEqual([`Writer: ${fresh}`, `${reader}: ${after}`]);
    }
    await context.close();
  } finally {
    await dropServer(server);
  }
});

test("a send whose answer was lost keeps its text, and sending it again stores it once", async ({ browser }) => {
  test.setTimeout(60_000);
  const server = await startServer();
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const tab = await openLive(context);
    const name = unique("Sender");
    await join(tab, name);
    const text = unique("only once");
    // The request reaches the server (which stores the message), but its answer never reaches the tab.
    await tab.route("**/api/send", async (route) => {
      const response = await route.fetch();
      expect(response.status()).toBe(200);
      await route.abort("connectionreset");
    });
    await send(tab, text);
    await expect(tab.getByRole("alert")).toContainText("Could not reach the server");
    await expect(tab.getByLabel("Message", { exact: true })).toHaveValue(text);
    await tab.unroute("**/api/send");

    // The retry carries the same key: the server answers the stored message and appends nothing.
    await tab.getByRole("button", { name: "Send" }).click();
    await expect(tab.getByLabel("Message", { exact: true })).toHaveValue("");
    await expect(row(tab, name, text)).toHaveCount(1);
    const log = await (await context.request.get("/api/messages")).json();
    expect(log.filter((m: { text: string }) => m.text === text)).toHaveLength(1);

    // A new message after it gets a new key, so the same text sent again on purpose is a second message.
    await send(tab, text);
    await expect(row(tab, name, text)).toHaveCount(2);
    await context.close();
  } finally {
    await dropServer(server);
  }
});

test("a send refused while the server is down keeps its text and is stored once when it returns", async ({ browser }) => {
  test.setTimeout(60_000);
  let server = await startServer();
  const addr = server.base.replace("http://", "");
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const tab = await openLive(context);
    const name = unique("Sender");
    await join(tab, name);
    await stopServer(server);
    const text = unique("while down");
    await send(tab, text);
    await expect(tab.getByRole("alert").filter({ hasText: "Could not reach the server" })).toHaveCount(1);
    await expect(tab.getByLabel("Message", { exact: true })).toHaveValue(text);

    server = await startServer({ dataDir: server.dataDir, addr });
    await expect(tab.getByRole("status")).toHaveText("Live", { timeout: 15_000 });
    await tab.getByRole("button", { name: "Send" }).click();
    await expect(row(tab, name, text)).toHaveCount(1);
    await expect(tab.getByLabel("Message", { exact: true })).toHaveValue("");
    const log = await (await context.request.get("/api/messages")).json();
    expect(log.filter((m: { text: string }) => m.text === text)).toHaveLength(1);
    await context.close();
  } finally {
    await dropServer(server);
  }
});
