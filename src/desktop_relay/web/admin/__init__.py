"""The admin API under /api/admin/ (AdminAPI and the shared pieces come from helper A1)."""
