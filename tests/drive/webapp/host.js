// A widget host, as Element is one: it embeds the drive's "Files" widget in an iframe
// and answers it through matrix-widget-api's ClientWidgetApi, getting the OpenID token
// from the homeserver with a real matrix-js-sdk client. ?openid=forged or =foreign hands
// the widget a changed token instead, to see it refused.
import { createClient } from "matrix-js-sdk";
import { ClientWidgetApi, OpenIDRequestState, Widget, WidgetDriver } from "matrix-widget-api";

const params = new URLSearchParams(location.search);
const client = createClient({
  baseUrl: params.get("homeserver"),
  accessToken: params.get("token"),
  userId: params.get("user"),
});
const tamper = params.get("openid");
window.openidAsked = 0;

class Driver extends WidgetDriver {
  async validateCapabilities(requested) {
    return new Set();
  }

  askOpenID(observer) {
    window.openidAsked += 1;
    client.getOpenIdToken().then((token) => {
      if (tamper === "forged") token.access_token = `forged${token.access_token}`;
      if (tamper === "foreign") token.matrix_server_name = "elsewhere.example";
      observer.update({ state: OpenIDRequestState.Allowed, token });
    }, (error) => {
      window.hostError = String(error);
      observer.update({ state: OpenIDRequestState.Blocked });
    });
  }
}

const widgetId = "anywhere_drive_files";
const url = new URL(params.get("widget"));
url.searchParams.set("widgetId", widgetId);
url.searchParams.set("parentUrl", location.href);
const iframe = document.createElement("iframe");
iframe.title = "Files";
iframe.width = "360";
iframe.height = "640";
iframe.src = url.toString();
const widget = new Widget({
  id: widgetId,
  creatorUserId: params.get("user"),
  type: "m.custom",
  url: url.toString(),
  waitForIframeLoad: true,
});
document.body.append(iframe); // the API talks to its window: in the page first
const api = new ClientWidgetApi(widget, iframe, new Driver());
api.on("ready", () => { window.widgetReady = true; });
