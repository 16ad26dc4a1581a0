"""The BI export: flat tables over HTTP (streaming CSV, cursor-paged JSON) and as SQL views."""
