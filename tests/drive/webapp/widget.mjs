// The web app as an Element widget: a host page (host.js) embeds it; the widget asks
// for an OpenID token through the widget API, gets a drive session from the bridge and
// shows the folder of its room. With a forged or foreign token, the refusal is shown.
import { axeProblems, launch, report } from "./browser.mjs";

const config = JSON.parse(process.argv[2]);
const found = {};
const browser = await launch(config);
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
  page.setDefaultTimeout(60_000);
  const logs = [];
  page.on("console", (message) => logs.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => logs.push(`pageerror: ${error.message}`));
  process.on("exit", (code) => { if (code) process.stderr.write(`page log:\n${logs.join("\n")}\n`); });
  const hostUrl = (mode) => {
    const query = new URLSearchParams({
      homeserver: config.homeserver, token: config.token, user: config.userId,
      widget: config.widgetUrl, openid: mode,
    });
    return `${config.hostOrigin}/host.html?${query}`;
  };

  await page.goto(hostUrl(""));
  const frame = page.frameLocator("iframe[title=Files]");
  await frame.locator("#who").filter({ hasText: /\S/ }).waitFor().catch(async (error) => {
    logs.push(`widget error: ${await frame.locator("#error").innerText({ timeout: 5000 })}`);
    logs.push(`widget status: ${await frame.locator("#status").innerText({ timeout: 5000 })}`);
    throw error;
  });
  await frame.locator("#folder-title", { hasText: config.folder }).waitFor();
  await frame.getByRole("row").filter({ hasText: config.file }).waitFor();
  found.who = await frame.locator("#who").innerText();
  found.openidAsked = await page.evaluate(() => window.openidAsked);
  found.signOutHidden = await frame.locator("#signout").isHidden();
  const inner = page.frames().find((f) => f.url().includes("/_anywhere/drive/app/"));
  found.session = await inner.evaluate(() => sessionStorage.getItem("anywhere-drive-session"));
  found.axe = await axeProblems(page, inner);

  // The session is short (webapp_session_seconds): the widget renews it with new OpenID
  // tokens; after the first session has ended (the second renewal), it still works.
  await page.waitForFunction(() => window.openidAsked >= 3, null, { timeout: 120_000 });
  const [listed] = await Promise.all([
    page.waitForResponse((response) => response.url().includes("/list?")),
    frame.getByLabel("Folders").getByRole("button", { name: config.folder, exact: true }).click(),
  ]);
  found.listedAfterRenewal = listed.status();
  await frame.getByRole("row").filter({ hasText: config.file }).waitFor();
  found.afterRenewal = await frame.locator("#error").innerText();

  for (const mode of ["forged", "foreign"]) {
    await page.goto(hostUrl(mode));
    const refused = page.frameLocator("iframe[title=Files]").locator("#error");
    await refused.filter({ hasText: /\S/ }).waitFor();
    found[mode] = await refused.innerText();
  }
} finally {
  await browser.close();
}
report(found);
