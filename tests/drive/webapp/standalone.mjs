// The standalone web app in Chromium at phone size (360×640), as a person uses it: sign
// in with the homeserver's password, accept an invitation, upload by drag and drop
// (watching the progress bar), download, restore a version, rename, delete, restore
// from the trash and upload by keyboard alone, be refused an mp3 in a shared folder.
// Prints its findings as one JSON line; tests/drive/test_webapp_browser.py checks them.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { axeProblems, horizontalOverflow, inlineScriptRuns, launch, report } from "./browser.mjs";

const config = JSON.parse(process.argv[2]);
const found = { steps: [] };
const step = (name) => { found.steps.push(name); };

// The file chooser an action opens: waiting for it starts intercepting file choosers,
// which the browser is told before the action (a round trip in between).
async function chooseFiles(page, action) {
  const chooser = page.waitForEvent("filechooser");
  await page.evaluate(() => 0);
  await action();
  return chooser;
}

const browser = await launch(config);
try {
  const context = await browser.newContext({ viewport: { width: 360, height: 640 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  const requests = new Set();
  page.on("request", (request) => requests.add(new URL(request.url()).origin));

  await page.goto(`${config.url}/_anywhere/drive/app/`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  found.axeLogin = await axeProblems(page);
  await page.getByLabel("User name").fill(config.user);
  await page.getByLabel("Password").fill(config.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.locator("#who", { hasText: config.userId }).waitFor();
  step("signed in");

  // An invitation: accept it.
  await page.getByRole("button", { name: `Accept ${config.invited}` }).click();
  await page.locator("#status", { hasText: `You accepted ${config.invited}` }).waitFor();
  step("accepted");

  // Drag and drop a file larger than one piece into "Mine", watching the progress bar.
  await page.getByRole("button", { name: config.mine, exact: true }).click();
  await page.locator("#folder-title", { hasText: config.mine }).waitFor();
  await page.getByRole("row").filter({ hasText: "notes.txt" }).waitFor();
  found.dropped = await page.evaluate(async (size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    const seen = [];
    const observer = new MutationObserver(() => {
      const bar = document.querySelector('#uploads li[data-name="big.bin"] progress');
      if (bar) seen.push(Number(bar.value));
    });
    observer.observe(document.getElementById("uploads"), { subtree: true, attributes: true, childList: true });
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], "big.bin", { type: "application/octet-stream" }));
    const drop = document.getElementById("drop");
    drop.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    drop.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    window.__progressSeen = seen;
    return { sha256: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""), size };
  }, config.dropSize);
  await page.locator('#uploads li[data-name="big.bin"][data-state="done"]').waitFor({ timeout: 300_000 });
  found.progress = await page.evaluate(() => window.__progressSeen);
  found.progressMax = await page.evaluate(() => Number(document.querySelector('#uploads li[data-name="big.bin"] progress').max));
  found.progressText = await page.locator('#uploads li[data-name="big.bin"]').innerText();
  step("dropped");

  // Download it again and compare.
  await page.getByRole("row").filter({ hasText: "big.bin" }).waitFor();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download big.bin" }).click(),
  ]);
  const saved = join(config.artifacts, "downloaded-big.bin");
  await download.saveAs(saved);
  found.downloaded = { sha256: createHash("sha256").update(readFileSync(saved)).digest("hex"), name: download.suggestedFilename() };
  step("downloaded");

  // Versions: restore version 1 of notes.txt.
  await page.getByRole("button", { name: "Versions of notes.txt" }).click();
  await page.getByRole("button", { name: "Restore version 1" }).click();
  await page.locator("#status", { hasText: "Restored version 1 of notes.txt" }).waitFor();
  step("version restored");

  // By keyboard alone: rename notes.txt, move it to the trash, and upload a file.
  async function tabTo(label) {
    for (let i = 0; i < 300; i += 1) {
      await page.keyboard.press("Tab");
      const name = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") || document.activeElement?.textContent);
      if (name === label) return;
    }
    throw new Error(`Tab never reached ${label}`);
  }
  await page.locator("body").focus();
  await tabTo("Rename notes.txt");
  await page.keyboard.press("Enter");
  await page.keyboard.press("Control+A");
  await page.keyboard.type("renamed.txt");
  await page.keyboard.press("Enter");
  await page.locator("#status", { hasText: "Renamed notes.txt to renamed.txt" }).waitFor();
  await page.locator('tr[data-name="renamed.txt"]').waitFor();
  await tabTo("Delete renamed.txt");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Move renamed.txt to the trash?" }).waitFor();
  await page.keyboard.press("Enter"); // the focused "Move to trash"
  await page.locator("#status", { hasText: "renamed.txt is in the trash" }).waitFor();
  await page.locator('tr[data-name="renamed.txt"]').waitFor({ state: "detached" });
  await tabTo("Choose files to upload");
  const chooser = await chooseFiles(page, () => page.keyboard.press("Enter"));
  await chooser.setFiles(config.keyboardFile);
  await page.locator('#uploads li[data-name="typed.txt"][data-state="done"]').waitFor();
  step("keyboard");

  // Restore from the trash.
  await page.locator("#trash-box summary").click();
  await page.getByRole("button", { name: "Restore renamed.txt" }).click();
  await page.locator('tr[data-name="renamed.txt"]').waitFor();
  step("restored from trash");

  // Invite a person as viewer, then revoke them; share a file into a room.
  await page.locator("#people-box summary").click();
  await page.getByLabel("Invite (Matrix ID)").fill(config.invitee);
  await page.getByLabel("Role").selectOption("viewer");
  await page.getByRole("button", { name: "Invite", exact: true }).click();
  await page.locator("#status", { hasText: `Invited ${config.invitee} as viewer` }).waitFor();
  await page.locator("#members li", { hasText: `${config.invitee} — viewer (not accepted yet)` }).waitFor();
  await page.getByRole("button", { name: `Revoke ${config.invitee}` }).click();
  await page.locator("#status", { hasText: `${config.invitee} no longer has ${config.mine}` }).waitFor();
  await page.locator("#members li", { hasText: config.invitee }).waitFor({ state: "detached" });
  step("invited and revoked");
  await page.getByRole("button", { name: "Share typed.txt" }).click();
  await page.getByLabel("Room (#alias:server or !id:server)").fill(config.chat);
  await page.keyboard.press("Enter");
  await page.locator("#status", { hasText: `Shared typed.txt into ${config.chat}` }).waitFor();
  step("shared");

  // Phone size: nothing scrolls sideways; a screenshot is kept.
  found.overflowFolder = await horizontalOverflow(page);
  await page.screenshot({ path: join(config.artifacts, "drive-webapp-phone.png"), fullPage: true });
  found.axeFolder = await axeProblems(page);
  found.inlineScript = await inlineScriptRuns(page);

  // An mp3 into a folder shared with others: refused, with the reason on screen.
  await page.getByRole("button", { name: config.shared, exact: true }).click();
  await page.locator("#folder-title", { hasText: config.shared }).waitFor();
  const picker = await chooseFiles(page, () => page.getByRole("button", { name: "Choose files to upload" }).click());
  await picker.setFiles(config.mp3);
  await page.locator('#uploads li[data-name="song.mp3"][data-state="failed"]').waitFor();
  found.mp3Error = await page.locator("#error").innerText();
  found.overflowError = await horizontalOverflow(page);
  await page.screenshot({ path: join(config.artifacts, "drive-webapp-phone-refused.png") });
  step("mp3 refused");

  found.origins = [...requests];
  found.consoleErrors = consoleErrors;
} catch (error) {
  const [page] = browser.contexts()[0]?.pages() || [];
  if (page) await page.screenshot({ path: join(config.artifacts, "failure.png"), fullPage: true });
  process.stderr.write(`steps done: ${found.steps.join(", ")}\n`);
  throw error;
} finally {
  await browser.close();
}
report(found);
