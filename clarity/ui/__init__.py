"""`clarity ui`: a local web page over this project's store, for people.

One more Clarity client: every read and write goes through a `Coordinator` like a CLI command or an
MCP tool (forwarded to the owner when a session holds the store), so it works while agent sessions
run. Modules: `security` (the guard: Host, token cookie, Origin and CSRF on writes, CSP and other
headers), `backend` (the calls the page makes), `overview` (totals by tag and origin, memories over
time), `routes` (the JSON API and the static page), `app` (binding 127.0.0.1, printing the URL, uvicorn);
`static/` holds the page (HTML, one script, one stylesheet: package data, shipped in the wheel).
"""
