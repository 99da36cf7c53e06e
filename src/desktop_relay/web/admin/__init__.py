"""The admin API under /api/admin/: one Klein class per group (desktops, engine, reload, ...)."""
