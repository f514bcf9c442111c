// Screenshots of the running app for the README and for looking at the UI:
//   node end2end/scripts/screenshot.mjs [base-url] [out-dir]
// Two tabs of one browser (same session group) joined as two people, side by side, in light and dark, each showing
// who is here and the messages' times, and a phone-sized view.
import { chromium } from "@playwright/test";

const base = process.argv[2] ?? "http://127.0.0.1:3000";
const out = process.argv[3] ?? "docs";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

async function live(page) {
  await page.goto(base + "/");
  await page.locator("main[data-hydrated]").waitFor();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
}
async function join(page, name) {
  await page.getByLabel("Username").fill(name);
  await page.getByRole("button", { name: "Join" }).click();
  await page.getByText("Posting as").waitFor();
}
async function send(page, text) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator(".log p[data-key]").filter({ hasText: text }).first().waitFor();
}

for (const scheme of ["light", "dark"]) {
  const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 560, height: 640 } });
  const [ada, bob] = [await context.newPage(), await context.newPage()];
  await live(ada);
  await live(bob);
  await join(ada, "Ada");
  await join(bob, "Grace");
  if (scheme === "light") {
    await send(ada, "Hi Grace, can you see this?");
    await send(bob, "Instantly. No reload needed.");
    await send(ada, "Same browser, two tabs, two names.");
  }
  await bob.locator(".log p[data-key]").last().waitFor();
  for (const tab of [ada, bob]) await tab.locator(".presence").filter({ hasText: "2 here: Ada, Grace" }).waitFor();
  await ada.waitForTimeout(300);
  // Both tabs side by side in one picture. The app refuses to be framed (frame-ancestors 'none'), so the picture
  // is made of the two tabs' own screenshots.
  const shots = [await ada.screenshot(), await bob.screenshot()];
  const sheet = await context.newPage();
  await sheet.setViewportSize({ width: 1150, height: 660 });
  const images = shots.map((png) => `<img src="data:image/png;base64,${png.toString("base64")}" style="border-radius:8px">`);
  await sheet.setContent(`<body style="margin:0;display:flex;gap:10px;padding:10px;background:#888">${images.join("")}</body>`);
  await sheet.screenshot({ path: `${out}/two-tabs-${scheme}.png` });
  await context.close();
}

const phone = await browser.newContext({ viewport: { width: 390, height: 760 }, deviceScaleFactor: 1, isMobile: true });
const page = await phone.newPage();
await live(page);
await join(page, "Linus");
await page.locator(".presence").filter({ hasText: "Linus" }).waitFor();
await page.screenshot({ path: `${out}/phone.png` });
await browser.close();
console.log(`screenshots written to ${out}/`);
