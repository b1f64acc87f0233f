// Drives Debian's chromium (headless, through puppeteer-core) through Herald's web console:
// log in with the API key, wait for the overview's charts, look up a client and find the
// message the test pushed to it and its sessions and queue per slot, push a test message from
// the page and wait until the page says the client acknowledged it; open that push's receipts
// on the Pushes page, then look up args.mixed_push and recall it (accepting the confirmation).
// Takes a screenshot of each page into args.screenshots.
// Prints one JSON line with what the page showed, and what the browser logged as errors.
//
// args: {api, key, client, marker, mixed_push, chromium, screenshots}
const path = require("path");
const puppeteer = require("puppeteer-core");

const args = JSON.parse(process.argv[2]);
const WAIT = { timeout: 20000, polling: 50 };

// The cells of a table's body, row by row.
function rows(page, table) {
  return page.$$eval(table + " tbody tr", (rs) => rs.map((r) => [...r.children].map((td) => td.textContent)));
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const errors = [];
  const out = { errors };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 760 });
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${args.api}/console`);
    await page.waitForSelector("#login:not([hidden])", WAIT);
    out.login_visible = true;

    // A wrong key is refused and keeps the login form.
    await page.type("#key", "not-the-key");
    await page.click("#login-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("login-error").textContent !== "", WAIT);
    out.wrong_key = await page.$eval("#login-error", (e) => e.textContent);
    // The refused /apis answer is logged by the browser; it is expected.
    errors.length = 0;

    await page.type("#key", args.key);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#overview:not([hidden])", WAIT);
    out.key_in_session_storage = await page.evaluate(() => sessionStorage.getItem("herald.apiKey"));
    // Two samples make the rates: wait until every chart shows a figure.
    await page.waitForFunction(() => {
      const v = [...document.querySelectorAll("#charts .chart .value")];
      return v.length > 0 && v.every((e) => e.textContent !== "-");
    }, WAIT);
    out.charts = await page.$$eval("#charts .chart", (cs) =>
      cs.map((c) => [c.querySelector(".name").textContent, c.querySelector(".value").textContent]));
    out.nodes = await page.$$eval("#nodes tbody tr", (rs) =>
      rs.map((r) => [...r.children].map((td) => td.textContent)));
    await page.screenshot({ path: path.join(args.screenshots, "console-overview.png") });

    await page.click("nav button[data-page=client]");
    await page.waitForSelector("#client:not([hidden])", WAIT);
    await page.type("#client-id", args.client);
    await page.click("#lookup-form button[type=submit]");
    await page.waitForFunction((marker) =>
      document.getElementById("messages").textContent.includes(marker), WAIT, args.marker);
    out.messages = await page.$eval("#messages", (e) => e.textContent);
    out.sessions_before = await rows(page, "#sessions");
    out.slots_before = await rows(page, "#slots");
    out.oldest = await page.$eval("#oldest", (e) => e.textContent);

    await page.click("#push-test");
    await page.waitForFunction(() =>
      document.getElementById("push-status").textContent.includes("acknowledged by slot"), WAIT);
    out.push_status = await page.$eval("#push-status", (e) => e.textContent);
    out.slots_after = await rows(page, "#slots");
    await page.screenshot({ path: path.join(args.screenshots, "console-client.png"), fullPage: true });

    await page.click("#push-open");
    await page.waitForSelector("#pushes:not([hidden])", WAIT);
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#push-entries tbody td")].some((td) => td.textContent === "acked"), WAIT);
    out.test_push = { summary: await rows(page, "#push-summary"), entries: await rows(page, "#push-entries") };

    page.on("dialog", (d) => d.accept());
    await page.$eval("#push-id", (e) => { e.value = ""; });
    await page.type("#push-id", args.mixed_push);
    await page.click("#push-form button[type=submit]");
    await page.waitForFunction((id) =>
      document.getElementById("push-meta").textContent.includes(id), WAIT, args.mixed_push);
    out.mixed_before = await rows(page, "#push-entries");
    await page.click("#push-recall");
    await page.waitForFunction(() =>
      document.getElementById("push-meta").textContent.includes("Recalled:"), WAIT);
    out.recall_meta = await page.$eval("#push-meta", (e) => e.textContent);
    out.mixed_after = await rows(page, "#push-entries");
    await page.screenshot({ path: path.join(args.screenshots, "console-pushes.png"), fullPage: true });
  } catch (e) {
    out.error = String((e && e.stack) || e);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})();
