"""The drive's web app: a page served by the bridge (``/_anywhere/drive/app/``), standalone
(the homeserver's own login) or as an Element widget (an OpenID token exchanged for a
short-lived drive session), on the drive's HTTP API.

The page's source is ``src/`` (plain JavaScript modules, bundled with esbuild); the built
files in ``static/`` are committed and shipped in the wheel, so installing Anywhere needs
no node. Rebuild them with ``npm run build`` in this folder after changing ``src/``."""
