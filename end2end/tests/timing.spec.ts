import { test, expect } from "./fixtures";

// A measurement, reported and not asserted against a time: from navigation start to the page being hydrated and
// its event stream live, in a fresh browser context each (no cache), median of five. `scripts/bench.sh live` runs
// it against a release build; in the test run it only proves the page gets there.
test("reports the time from navigation to live", async ({ browser, baseURL }) => {
  const runs: { hydrated: number; live: number }[] = [];
  for (let i = 0; i < 5; i++) {
    const context = await browser.newContext({ baseURL });
    const page = await context.newPage();
    await page.goto("/");
    const hydrated = await page.waitForFunction(() => document.querySelector("main[data-hydrated]") && performance.now(), null, { polling: "raf" });
    const live = await page.waitForFunction(() => document.querySelector('[data-status="live"]') && performance.now(), null, { polling: "raf" });
    runs.push({ hydrated: Number(await hydrated.jsonValue()), live: Number(await live.jsonValue()) });
    await context.close();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const hydrated = median(runs.map((r) => r.hydrated));
  const live = median(runs.map((r) => r.live));
  for (const r of runs) expect(r.live).toBeGreaterThanOrEqual(r.hydrated);
  const report = `navigation to hydrated ${hydrated.toFixed(0)} ms, to live ${live.toFixed(0)} ms (median of ${runs.length})`;
  test.info().annotations.push({ type: "timing", description: report });
  console.log(`timing: ${report}`);
});
