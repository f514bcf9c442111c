// cargo-leptos starts the server and the tests at once: wait until the page answers.
export default async function globalSetup() {
  const url = `${process.env.BASE_URL ?? "http://127.0.0.1:3000"}/`;
  const deadline = Date.now() + 120_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`server at ${url} did not come up within 120 s: ${last}`);
}
