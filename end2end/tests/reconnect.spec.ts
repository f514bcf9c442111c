import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test, expect, unique, join, send, row } from "./fixtures";

/**
 * The server cargo-leptos runs for the other tests cannot be restarted from here, so this test runs its own: the
 * same debug binary and site that `cargo leptos end-to-end` just built, on its own port and data directory.
 */
const root = path.resolve(__dirname, "../..");

function startServer(dataDir: string, addr: string): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(
    path.join(root, "target/debug/broadcasting"),
    ["--addr", addr, "--data-dir", dataDir, "--config", "/dev/null", "--log-level", "warn"],
    {
      env: { ...process.env, LEPTOS_SITE_ROOT: path.join(root, "target/site"), BROADCASTING_SEND_RATE: "0" },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.stdout!.once("data", (line: Buffer) => {
      const match = /listening on (http:\/\/\S+)/.exec(line.toString());
      if (match) resolve({ child, base: match[1] });
      else reject(new Error(`unexpected first line: ${line}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

test("a tab whose server restarts shows every message sent meanwhile, once, in order, without a reload", async ({ browser }) => {
  test.setTimeout(60_000);
  const dataDir = mkdtempSync(path.join(tmpdir(), "broadcasting-restart-"));
  let server = await startServer(dataDir, "127.0.0.1:0");
  const addr = server.base.replace("http://", "");
  try {
    const context = await browser.newContext({ baseURL: server.base });
    const tab = await context.newPage();
    await tab.goto("/");
    await tab.locator("main[data-hydrated]").waitFor();
    await expect(tab.getByRole("status")).toHaveText("Live");
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

    await stop(server.child);
    await expect(tab.getByRole("status")).toHaveText("Reconnecting…");
    server = await startServer(dataDir, addr);
    // Sent while the tab is still disconnected: it learns of these only by catching up on reconnect.
    for (let i = 0; i < 5; i++) await sendFromOther(unique(`while away ${i}`));

    await expect(tab.getByRole("status")).toHaveText("Live", { timeout: 15_000 });
    await sendFromOther(unique("after the reconnect"));
    for (const text of sent) await expect(row(tab, "Writer", text)).toHaveCount(1);

    // Once each, in id order, and the tab's own earlier message is still there.
    const keys = await tab.locator(".log p[data-key]").evaluateAll((ps) => ps.map((p) => Number(p.getAttribute("data-key"))));
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort((a, b) => a - b)).toEqual(keys);
    const texts = await tab.locator(".log p[data-key]").allTextContents();
    expect(texts).toEqual([`${reader}: before the restart`, ...sent.map((text) => `Writer: ${text}`)]);
    await context.close();
  } finally {
    await stop(server.child);
    rmSync(dataDir, { recursive: true, force: true });
  }
});
