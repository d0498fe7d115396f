"""The staff web app and HTTP API (aiohttp): announcements, forwarding, live delivery tracking, chat health,
roster import, the audit log; and the parents' «Ознакомлен» and unsubscribe pages.

    app.py      the application factory: typed app keys, middlewares, the route table with each route's access
    auth.py     staff passwords (argon2id), browser sessions, CSRF, API tokens, roles
    api.py      the JSON API (/api/...), described by openapi.py (/api/openapi.json)
    pages.py    the server-rendered pages (Russian, jinja2 with autoescape)
    parents.py  the pages parents reach from a letter, without login (signed, expiring links: links.py)
    views.py    what the API and the pages show of announcements, previews and reports
"""
