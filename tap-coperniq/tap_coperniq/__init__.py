"""tap-coperniq: Singer tap for the Coperniq REST API (projects, phases, invoices, payments, ...)."""
