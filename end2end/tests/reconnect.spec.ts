import { test, expect, unique, join, send, row, said, expectOnceInOrder } from "./fixtures";
import { startServer, stopServer, dropServer } from "./server";

test("tabs whose server restarts show every message sent meanwhile, once, in order, without a reload", async ({ browser }) => {
  test.setTimeout(60_000);
  let server = await startServer();
  const addr = server.base.replace("http://", "");
  try {
    const context = await browser.newContext({ baseURL: server.base });
    // Three tabs of one browser: the first holds the shared stream, the others hear of it through the first.
    const tabs = [];
    for (let i = 0; i < 3; i++) {
      const tab = await context.newPage();
      await tab.goto("/");
      await tab.locator("main[data-hydrated]").waitFor();
      await expect(tab.getByRole("status")).toHaveText("Live");
      tabs.push(tab);
    }
    const tab = tabs[2];
    const reader = unique("Reader");
    await join(tab, reader);
    await send(tab, "before the restart");
    await expect(row(tab, reader, "before the restart")).toHaveCount(1);

    // A second client of the same browser (so of the tab's session group: it is notified of these) sends through
    // the API before and after the restart.
    const other = context.request;
    const ticket = (await (await other.post("/api/join", { form: { username: "Writer" } })).json()).ticket;
    const sent: string[] = [];
    const sendFromOther = async (text: string) => {
      const response = await other.post("/api/send", { form: { ticket, text } });
      expect(response.status()).toBe(200);
      sent.push(text);
    };
    await sendFromOther(unique("just before"));

    await stopServer(server);
    for (const tab of tabs) await expect(tab.getByRole("status")).toHaveText("Reconnecting…");
    server = await startServer({ dataDir: server.dataDir, addr });
    // Sent while the tab is still disconnected: it learns of these only by catching up on reconnect.
    for (let i = 0; i < 5; i++) await sendFromOther(unique(`while away ${i}`));

    for (const tab of tabs) await expect(tab.getByRole("status")).toHaveText("Live", { timeout: 15_000 });
    await sendFromOther(unique("after the reconnect"));
    for (const tab of tabs) {
      for (const text of sent) await expect(row(tab, "Writer", text)).toHaveCount(1);
      // Once each, in id order, and the tab's own earlier message is still there.
      await expectOnceInOrder(tab);
      const texts = await said(tab.locator(".log p[data-key]"));
      expect(texts).toEqual([`${reader}: before the restart`, ...sent.map((text) => `Writer: ${text}`)]);
    }
    await context.close();
  } finally {
    await dropServer(server);
  }
});
