"""Self-contained HTML views (no CDN: JavaScript comes from files in `views/static/`)."""
