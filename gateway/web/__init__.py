"""The web console: accounts and sessions, the pages and JSON API over the services, its
HTTPS server (started by the daemon when ``[web] enabled``)."""
