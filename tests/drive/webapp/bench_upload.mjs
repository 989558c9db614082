// For bench/bench_webapp.py: sign in to the web app in Chromium, open a folder, upload one
// file through the page's "Choose files to upload" button and time it until the page
// shows it done. Prints {seconds} as one JSON line.
import { basename } from "node:path";
import { launch, report } from "./browser.mjs";

const config = JSON.parse(process.argv[2]);
const browser = await launch(config);
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(3_600_000);
  await page.goto(`${config.url}/_anywhere/drive/app/`);
  await page.getByLabel("User name").fill(config.user);
  await page.getByLabel("Password").fill(config.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("button", { name: config.folder, exact: true }).click();
  await page.locator("#folder-title", { hasText: config.folder }).waitFor();
  const choosing = page.waitForEvent("filechooser");
  await page.evaluate(() => 0); // the browser intercepts file choosers from here on
  await page.getByRole("button", { name: "Choose files to upload" }).click();
  const chooser = await choosing;
  const started = performance.now();
  await chooser.setFiles(config.file);
  const name = basename(config.file);
  await page.locator(`#uploads li[data-name="${name}"][data-state]`).waitFor();
  const seconds = (performance.now() - started) / 1000;
  const state = await page.locator(`#uploads li[data-name="${name}"]`).getAttribute("data-state");
  report({ seconds, state, error: await page.locator("#error").innerText() });
} finally {
  await browser.close();
}
