"""Streamlit-only helpers: the admin guard and shared widgets. Everything else is in lib/."""
